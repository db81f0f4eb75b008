using System.Text.Json.Serialization;

namespace PyroMcp;

/// <summary>How a command was executed. Serialized as <c>guest_virtio_serial</c> or <c>host_compat</c>.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ExecutionMode>))]
public enum ExecutionMode
{
    /// <summary>In a guest VM, through the guest agent over virtio-serial.</summary>
    [JsonStringEnumMemberName("guest_virtio_serial")]
    Guest,
    /// <summary>On the host itself, without isolation. Only with an explicit opt-in.</summary>
    [JsonStringEnumMemberName("host_compat")]
    HostCompat,
}

/// <summary>
/// The outcome of a one-shot run (<see cref="Pyro.RunAsync"/>): the shared <see cref="ExecResult"/>
/// fields, plus the environment, the VM and what became of it.
/// </summary>
public sealed record RunResult : ExecResult
{
    /// <summary>Environment the command ran in, e.g. <c>debian:12</c>.</summary>
    [JsonPropertyOrder(-4)]
    public required string Environment { get; init; }
    /// <summary>In a guest, or on the host when host compatibility was allowed and needed.</summary>
    [JsonPropertyOrder(-3)]
    public required override ExecutionMode ExecutionMode { get; init; }
    /// <summary>The VM that ran it (already deleted when a one-shot run returns).</summary>
    [JsonPropertyOrder(-2)]
    public string? VmId { get; init; }
    /// <summary>The command as given.</summary>
    [JsonPropertyOrder(-1)]
    public required override string Command { get; init; }
    /// <summary>Guest kernel release (<c>uname -r</c>), when a guest ran the command.</summary>
    [JsonPropertyOrder(1)]
    public string? GuestKernel { get; init; }
    /// <summary>What became of the VM afterwards.</summary>
    [JsonPropertyOrder(2)]
    public CleanupInfo? Cleanup { get; init; }
    /// <summary>Where the cold path spent its time, in ms, when a guest was booted to run the command.</summary>
    [JsonPropertyOrder(3)]
    public BootPhases? BootPhasesMs { get; init; }
    /// <summary><c>warm</c> (restored from the environment's template) or <c>cold</c> (booted), when a guest ran the command.</summary>
    [JsonPropertyOrder(4)]
    public string? StartMode { get; init; }
    /// <summary>Milliseconds from QEMU's start until the guest agent answered: a restore when warm, a boot when cold.</summary>
    [JsonPropertyOrder(5)]
    public long? StartMs { get; init; }
    /// <summary>Why the guest was booted although a warm start was wanted (no template could be built or restored), or that a cold boot was asked for.</summary>
    [JsonPropertyOrder(6)]
    public string? ColdStartReason { get; init; }
}

/// <summary>
/// The phases of a cold run, in milliseconds, back to back: together they span QEMU's spawn to
/// the first command's result. Guest times come from the guest's /proc at 10 ms granularity and
/// are placed on the host's clock through the guest's uptime, so each phase may be off by some
/// 10 ms; a phase that would come out negative is 0.
/// </summary>
/// <param name="QemuStart">QEMU's spawn to the guest kernel's start (QEMU and firmware set-up).</param>
/// <param name="Kernel">The kernel's start to the start of PID 1 (the init).</param>
/// <param name="Init">PID 1's start to the guest agent process's start (initramfs, mounts, network).</param>
/// <param name="Agent">The agent process's start to its answer to hello (the agent is ready).</param>
/// <param name="FirstExec">Hello to the first command's result, on the host.</param>
public sealed record BootPhases(long QemuStart, long Kernel, long Init, long Agent, long FirstExec);

/// <summary>What happened to a VM after its command.</summary>
/// <param name="Deleted">Whether the VM and its files are gone.</param>
/// <param name="Reason">Why it was deleted, e.g. <c>post_exec_cleanup</c>.</param>
/// <param name="VmId">The VM.</param>
public sealed record CleanupInfo(bool Deleted, string Reason, string VmId);

/// <summary>Thrown by <see cref="ExecResultExtensions.ThrowOnFailure{T}"/>.</summary>
public sealed class CommandFailedException : Exception
{
    internal CommandFailedException(ExecResult result)
        : base($"command '{result.Command}' exited with {result.ExitCode}{(result.TimedOut ? " (timed out)" : "")}")
    {
        Result = result;
    }

    /// <summary>The full result, output included (a <see cref="RunResult"/>, <see cref="WorkspaceExecResult"/> or <see cref="VmExecResult"/>).</summary>
    public ExecResult Result { get; }
}

/// <summary>A step of a long operation, for progress displays.</summary>
/// <param name="Operation">What is running: <c>run</c>, <c>pull</c>, <c>runtime</c>.</param>
/// <param name="Phase">The step, e.g. <c>create</c>, <c>bootstrap</c>, <c>ready</c>.</param>
/// <param name="Fields">Ordered key/value details (environment, vm_id, ...).</param>
public sealed record PyroProgress(string Operation, string Phase, IReadOnlyList<KeyValuePair<string, string>> Fields)
{
    /// <summary>The <c>[operation] phase=... key=value</c> line the CLI prints.</summary>
    public override string ToString()
        => $"[{Operation}] phase={Phase}" + string.Concat(Fields.Select(f => $" {f.Key}={Quote(f.Value)}"));

    private static string Quote(string value)
        => value.Length > 0 && !value.Any(c => char.IsWhiteSpace(c) || c == '"') ? value : "\"" + value.Replace("\"", "\\\"") + "\"";
}

/// <summary>Where an environment is and what it holds.</summary>
public sealed record EnvironmentInfo
{
    /// <summary>Catalog name, e.g. <c>debian:12</c>.</summary>
    public required string Name { get; init; }
    /// <summary>Version of this environment's recipe.</summary>
    public required string Version { get; init; }
    /// <summary>One line for humans.</summary>
    public required string Description { get; init; }
    /// <summary>Distribution and release, e.g. <c>debian 12</c>.</summary>
    public required string Distribution { get; init; }
    /// <summary>Packages installed on top of the minimal base.</summary>
    public required IReadOnlyList<string> Packages { get; init; }
    /// <summary>Whether a verified copy is in the cache.</summary>
    public bool Installed { get; init; }
    /// <summary><c>installed</c>, <c>not_installed</c>, <c>incomplete</c> or <c>corrupt</c>.</summary>
    public required string State { get; init; }
    /// <summary>The cache root.</summary>
    public required string CacheDir { get; init; }
    /// <summary>This environment's directory in the cache.</summary>
    public required string InstallDir { get; init; }
    /// <summary>The ext4 root disk.</summary>
    public required string RootfsImage { get; init; }
    /// <summary>The manifest recording sizes and checksums.</summary>
    public required string InstallManifest { get; init; }
    /// <summary>sha256 of the root disk, when installed.</summary>
    public string? RootfsSha256 { get; init; }
    /// <summary>Size of the root disk in bytes, when installed.</summary>
    public long? RootfsBytes { get; init; }
    /// <summary>Where it came from: <c>mmdebstrap</c> from a Debian mirror.</summary>
    public string? Source { get; init; }
    /// <summary>When it was built (UTC).</summary>
    public DateTimeOffset? BuiltAt { get; init; }
    /// <summary><c>catalog</c> (built by pyro from its recipe) or <c>imported</c> (from an OCI image with <c>pyro env import</c>).</summary>
    public string Kind { get; init; } = "catalog";
    /// <summary>For an imported environment: the image it came from and the exec defaults it keeps.</summary>
    public ImportedImage? Image { get; init; }
    /// <summary>
    /// The OCI reference a pull installs this environment from (<see cref="PyroOptions.EnvironmentRegistry"/>
    /// or the catalog file), or null when it is built locally.
    /// </summary>
    public string? OciSource { get; init; }
    /// <summary>sha256 of the OCI manifest the installed copy came from, when it was pulled from a registry.</summary>
    public string? OciManifestDigest { get; init; }
    /// <summary>sha256 of the compressed root disk layer the installed copy came from, when it was pulled from a registry.</summary>
    public string? OciLayerDigest { get; init; }
}

/// <summary>The OCI image an imported environment came from, and what its config says processes start with.</summary>
public sealed record ImportedImage
{
    /// <summary>The reference as given to <c>pyro env import</c>: a registry reference, <c>oci:DIR[:TAG]</c> or an OCI archive.</summary>
    public required string Reference { get; init; }
    /// <summary>sha256 digest of the linux/amd64 image manifest.</summary>
    public required string ManifestDigest { get; init; }
    /// <summary>Media type of that manifest (OCI image manifest or Docker schema 2).</summary>
    public required string ManifestMediaType { get; init; }
    /// <summary>sha256 digest of the image config.</summary>
    public required string ConfigDigest { get; init; }
    /// <summary>sha256 digests of the layers, bottom first.</summary>
    public required IReadOnlyList<string> LayerDigests { get; init; }
    /// <summary>The image's <c>Env</c> as every command gets it (<c>KEY=VALUE</c>; PATH added when the image had none).</summary>
    public required IReadOnlyList<string> Env { get; init; }
    /// <summary>The image's <c>WorkingDir</c>: the cwd of <c>pyro run</c> when none is given (workspaces keep <c>/workspace</c>).</summary>
    public string? WorkingDir { get; init; }
    /// <summary>The image's <c>User</c>: who commands run as when the request does not say; root when unset.</summary>
    public string? User { get; init; }
    /// <summary>Tar entries the flattening refused (traversal, links out of the root, bad headers); they are not in the disk.</summary>
    public long SkippedEntries { get; init; }
}

/// <summary>The result of <c>env publish</c>: what was pushed where.</summary>
public sealed record EnvironmentPublishResult
{
    /// <summary>The environment published, e.g. <c>debian:12</c>.</summary>
    public required string Environment { get; init; }
    /// <summary>The reference it was pushed to, with its tag.</summary>
    public required string Reference { get; init; }
    /// <summary>sha256 of the OCI image manifest pushed.</summary>
    public required string ManifestDigest { get; init; }
    /// <summary>sha256 of the config blob (<c>application/vnd.pyro.environment.config.v1+json</c>).</summary>
    public required string ConfigDigest { get; init; }
    /// <summary>sha256 of the layer: the root disk, zstd-compressed.</summary>
    public required string LayerDigest { get; init; }
    /// <summary>Size of the compressed layer in bytes.</summary>
    public required long LayerBytes { get; init; }
    /// <summary>sha256 of the uncompressed root disk, which a pull verifies.</summary>
    public required string RootfsSha256 { get; init; }
    /// <summary>Size of the uncompressed root disk in bytes.</summary>
    public required long RootfsBytes { get; init; }
    /// <summary>Blobs sent.</summary>
    public required int BlobsUploaded { get; init; }
    /// <summary>Blobs the registry already had, not sent again.</summary>
    public required int BlobsSkipped { get; init; }
}

/// <summary>The result of <c>env prune</c>.</summary>
/// <param name="Removed">Directories removed from the cache.</param>
/// <param name="FreedBytes">Bytes they held.</param>
public sealed record PruneResult(IReadOnlyList<string> Removed, long FreedBytes);

/// <summary>What <see cref="Pyro.RemoveEnvironmentAsync"/> removed: the environment (false when it was not installed), the bytes freed and the warm-start templates made from it.</summary>
public sealed record EnvironmentRemoveResult(string Environment, bool Removed, long FreedBytes, int Templates);

/// <summary>Which virtualization engine runs guests. Serialized as <c>auto</c>, <c>kvm</c> or <c>tcg</c>, the words <c>PYRO_ACCEL</c> takes.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<Accelerator>))]
public enum Accelerator
{
    /// <summary>KVM where the host really supports it, TCG otherwise.</summary>
    [JsonStringEnumMemberName("auto")]
    Auto,
    /// <summary>Hardware virtualization through /dev/kvm.</summary>
    [JsonStringEnumMemberName("kvm")]
    Kvm,
    /// <summary>QEMU's software emulation: slower, and not a security boundary.</summary>
    [JsonStringEnumMemberName("tcg")]
    Tcg,
}

/// <summary>
/// A list that pyro may have cut at a limit (<see cref="PyroOptions.MaxListEntries"/>): it holds at
/// most that many items, and says whether more existed and how many.
/// </summary>
/// <typeparam name="T">The item type.</typeparam>
public sealed class CappedList<T> : IReadOnlyList<T>
{
    private readonly IReadOnlyList<T> _items;

    internal CappedList(IReadOnlyList<T> items, long totalCount)
    {
        _items = items;
        TotalCount = Math.Max(totalCount, items.Count);
    }

    /// <summary>How many items there were before the cut.</summary>
    public long TotalCount { get; }

    /// <summary>Whether items were left out: <see cref="TotalCount"/> is larger than <see cref="Count"/>.</summary>
    public bool Truncated => TotalCount > _items.Count;

    /// <summary>Items returned.</summary>
    public int Count => _items.Count;

    /// <summary>The item at <paramref name="index"/>.</summary>
    public T this[int index] => _items[index];

    /// <inheritdoc/>
    public IEnumerator<T> GetEnumerator() => _items.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>The first <paramref name="max"/> items of <paramref name="source"/>, counting the rest without keeping them.</summary>
    internal static CappedList<T> Take(IEnumerable<T> source, int max)
    {
        var kept = new List<T>();
        long total = 0;
        foreach (var item in source)
        {
            if (total < max)
            {
                kept.Add(item);
            }

            total++;
        }

        return new CappedList<T>(kept, total);
    }
}
