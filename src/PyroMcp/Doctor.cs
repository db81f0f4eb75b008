namespace PyroMcp;

/// <summary>What <c>pyro doctor</c> finds about the host.</summary>
public sealed record DoctorReport
{
    /// <summary>OS and architecture, e.g. <c>linux-x86_64</c>.</summary>
    public required string Platform { get; init; }
    /// <summary><c>PASS</c> when a guest can be booted here, else <c>FAIL</c>.</summary>
    public required string Runtime { get; init; }
    /// <summary>Why the runtime fails, one line each, with the fix.</summary>
    public required IReadOnlyList<string> RuntimeIssues { get; init; }
    /// <summary>State of /dev/kvm.</summary>
    public required KvmStatus Kvm { get; init; }
    /// <summary>Accelerator guests get, and why.</summary>
    public required AcceleratorChoice Accelerator { get; init; }
    /// <summary>The QEMU found, if any.</summary>
    public QemuStatus? Qemu { get; init; }
    /// <summary>How QEMU is confined: its seccomp sandbox and the user it drops to.</summary>
    public required QemuConfinement QemuConfinement { get; init; }
    /// <summary>The pinned guest kernel package.</summary>
    public required string GuestKernel { get; init; }
    /// <summary>The guest agent binary and whether it is there.</summary>
    public required string AgentPath { get; init; }
    /// <summary>Whether <see cref="AgentPath"/> exists.</summary>
    public bool AgentPresent { get; init; }
    /// <summary>Environment cache root.</summary>
    public required string EnvironmentCacheDir { get; init; }
    /// <summary>Runtime bundle cache root.</summary>
    public required string RuntimeCacheDir { get; init; }
    /// <summary>Per-VM scratch root.</summary>
    public required string RunDir { get; init; }
    /// <summary>Guest networking: passt, and whether it starts here.</summary>
    public required NetworkingStatus Networking { get; init; }
    /// <summary>What pyro can do on this host.</summary>
    public required Capabilities Capabilities { get; init; }
    /// <summary>Host packages that are missing.</summary>
    public required IReadOnlyList<MissingPackage> MissingPackages { get; init; }
    /// <summary>The one command that installs all of <see cref="MissingPackages"/>, or null.</summary>
    public string? InstallCommand { get; init; }
    /// <summary>Things that work but that a user should know (weaker isolation under TCG...).</summary>
    public required IReadOnlyList<string> Warnings { get; init; }
}

/// <summary>/dev/kvm as pyro sees it.</summary>
/// <param name="Exists">The device node exists.</param>
/// <param name="Readable">It opens for reading.</param>
/// <param name="Writable">It opens for writing.</param>
/// <param name="Usable">A normal guest kernel can boot with it.</param>
/// <param name="Reason">Why it is or is not usable.</param>
public sealed record KvmStatus(bool Exists, bool Readable, bool Writable, bool Usable, string Reason);

/// <summary>Which accelerator runs guests.</summary>
/// <param name="Requested">What was asked for (flag or PYRO_ACCEL).</param>
/// <param name="Chosen">What will be used, or null when the request cannot be met.</param>
/// <param name="Reason">Why.</param>
public sealed record AcceleratorChoice(Accelerator Requested, Accelerator? Chosen, string Reason);

/// <summary>The QEMU binary.</summary>
/// <param name="Path">Where it is.</param>
/// <param name="Version">First line of <c>--version</c>.</param>
public sealed record QemuStatus(string Path, string Version);

/// <summary>How QEMU is confined on this host.</summary>
/// <param name="Sandbox">The <c>-sandbox</c> value QEMU gets (its seccomp filter).</param>
/// <param name="RunsAs">The user QEMU drops to after opening its files (<c>-runas</c>), or null when pyro is not root and QEMU keeps the caller's own user.</param>
/// <param name="DedicatedUser">Whether <see cref="RunsAs"/> is pyro's own system user (<c>pyro-qemu</c>) rather than the shared <c>nobody</c>.</param>
/// <param name="PidNamespace">Whether QEMU runs in its own PID namespace, which keeps it dying with its owner after the drop.</param>
public sealed record QemuConfinement(string Sandbox, string? RunsAs, bool DedicatedUser, bool PidNamespace);

/// <summary>Capabilities of this host.</summary>
/// <param name="VmBoot">Guests can boot.</param>
/// <param name="GuestExec">Commands can run in guests (agent present).</param>
/// <param name="GuestNetwork">Guests can be given a network: guests boot and passt started and served its socket in this check.</param>
public sealed record Capabilities(bool VmBoot, bool GuestExec, bool GuestNetwork);

/// <summary>A host package pyro needs and does not find.</summary>
/// <param name="Tool">The program looked for.</param>
/// <param name="Package">The Debian package that provides it.</param>
/// <param name="Purpose">What pyro uses it for.</param>
public sealed record MissingPackage(string Tool, string Package, string Purpose);

/// <summary>Guest networking on this host.</summary>
/// <param name="PasstPath">Where passt is, or null when it is not installed.</param>
/// <param name="PasstVersion">The Debian package version of passt, when known.</param>
/// <param name="PasstStarts">Whether passt started and opened its socket in this check.</param>
/// <param name="Detail">What the check found, in words (why it failed, when it failed).</param>
public sealed record NetworkingStatus(string? PasstPath, string? PasstVersion, bool PasstStarts, string Detail);
