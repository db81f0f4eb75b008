using System.Diagnostics;
using PyroMcp.Environments;
using PyroMcp.Execution;
using PyroMcp.Host;
using PyroMcp.Protocol;
using PyroMcp.Runtime;
using PyroMcp.Templates;
using PyroMcp.Vmm;

namespace PyroMcp;

/// <summary>
/// The pyro runtime: environments, one-shot runs in disposable microVMs, and host diagnostics.
/// The CLI and the MCP server are thin layers over this class.
/// </summary>
/// <example>
/// <code>
/// var pyro = new Pyro();
/// var result = await pyro.RunAsync(new RunRequest { Environment = "debian:12", Command = ["git", "--version"] });
/// Console.Write(result.Stdout);
/// </code>
/// </example>
public sealed partial class Pyro
{
    private readonly EnvironmentStore _store;

    /// <summary>Creates a runtime with the given options (defaults and environment variables otherwise).</summary>
    public Pyro(PyroOptions? options = null)
    {
        Options = options ?? new PyroOptions();
        _store = new EnvironmentStore(Options);
    }

    /// <summary>The options in force.</summary>
    public PyroOptions Options { get; }

    /// <summary>Version of the catalog (and of pyro).</summary>
    public static string CatalogVersion => EnvironmentCatalog.Version;

    /// <summary>Checks the host: packages, KVM, accelerator, caches, capabilities.</summary>
    public async Task<DoctorReport> DoctorAsync(CancellationToken cancellationToken = default)
    {
        // passt is needed only for guests with a network; its absence is reported under Networking, not as a failure.
        var missing = HostTools.All.Where(t => t != HostTools.Passt && t.Find() is null).Select(t => new MissingPackage(t.Name, t.Package, t.Purpose)).ToList();
        if (HostTools.Busybox.Find() is { } busybox && !HostTools.IsStaticElf(busybox))
        {
            missing.Add(new MissingPackage("busybox (static)", "busybox-static", "the initramfs needs a statically linked busybox"));
        }

        var kvm = KvmProbe.Detect();
        AcceleratorChoice choice;
        try
        {
            var (chosen, why) = kvm.Choose(Options.Accelerator);
            choice = new AcceleratorChoice(Options.Accelerator, chosen, why);
        }
        catch (HostRequirementException ex)
        {
            choice = new AcceleratorChoice(Options.Accelerator, null, ex.Message);
        }

        QemuStatus? qemu = null;
        if (HostTools.Qemu.Find() is { } qemuPath)
        {
            var version = await ProcessRunner.RunAsync(qemuPath, ["--version"], cancellationToken: cancellationToken).ConfigureAwait(false);
            qemu = new QemuStatus(qemuPath, version.Stdout.Split('\n')[0].Trim());
        }

        var issues = new List<string>();
        if (missing.Count > 0)
        {
            issues.Add("missing host packages: " + string.Join(", ", missing.Select(m => m.Package).Distinct()) + ". Install with: " + HostTools.InstallCommand(missing.Select(m => m.Package)));
        }

        var agentPresent = File.Exists(Options.AgentPath);
        if (!agentPresent)
        {
            issues.Add($"guest agent missing at {Options.AgentPath}: build the checkout with ./pyro or reinstall the tool");
        }

        if (choice.Chosen is null)
        {
            issues.Add(choice.Reason);
        }

        var warnings = new List<string>();
        if (choice.Chosen == Accelerator.Tcg)
        {
            warnings.Add("guests run under QEMU TCG (software emulation): slower, and QEMU does not treat TCG as a security boundary, so isolation from a hostile guest is weaker than under KVM");
        }

        var dropTo = HostTools.QemuDropUser();
        var confinement = new QemuConfinement(dropTo is null ? Vmm.QemuCommandLine.SandboxUnprivileged : Vmm.QemuCommandLine.SandboxDropping,
            dropTo, dropTo == HostTools.DedicatedQemuUser, dropTo is not null);
        if (dropTo is not null && !confinement.DedicatedUser)
        {
            warnings.Add($"QEMU drops to '{dropTo}', which other daemons may share: create pyro's own user with 'useradd --system --no-create-home --shell /usr/sbin/nologin {HostTools.DedicatedQemuUser}' (scripts/host-setup.sh does this as root)");
        }

        var vmBoot = GuestBootBlocker(Options.Accelerator) is null;
        var networking = await Networking.NetworkCheck.RunAsync(Options, cancellationToken).ConfigureAwait(false);
        var (kernelPackage, kernelVersion) = RuntimeBundle.KernelPin();
        return new DoctorReport
        {
            Platform = $"{(OperatingSystem.IsLinux() ? "linux" : "unsupported")}-{System.Runtime.InteropServices.RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant().Replace("x64", "x86_64")}",
            Runtime = issues.Count == 0 ? "PASS" : "FAIL",
            RuntimeIssues = issues,
            Kvm = new KvmStatus(kvm.Exists, kvm.Readable, kvm.Writable, kvm.Usable, kvm.Reason),
            Accelerator = choice,
            Qemu = qemu,
            QemuConfinement = confinement,
            GuestKernel = $"{kernelPackage}={kernelVersion}",
            AgentPath = Options.AgentPath,
            AgentPresent = agentPresent,
            EnvironmentCacheDir = Options.EnvironmentCacheDir,
            RuntimeCacheDir = Options.RuntimeCacheDir,
            RunDir = Options.RunDir,
            Networking = networking,
            Capabilities = new Capabilities(vmBoot, vmBoot && agentPresent, vmBoot && networking.PasstStarts),
            MissingPackages = missing,
            InstallCommand = missing.Count > 0 ? HostTools.InstallCommand(missing.Select(m => m.Package)) : null,
            Warnings = warnings,
        };
    }

    /// <summary>
    /// Runs one command in a fresh VM and deletes the VM, whatever happens (success, failure,
    /// timeout, cancellation). Builds the environment and the runtime bundle on first use.
    /// Fails closed: nothing runs on the host unless <see cref="RunRequest.AllowHostCompat"/> is set
    /// <em>and</em> this host cannot boot any guest (doctor's verdict: QEMU, qemu-img or setpriv
    /// missing, no usable accelerator, or no guest agent). A guest that fails to boot, or a request
    /// too large for the host, is an error, never a reason to run on the host.
    /// </summary>
    /// <exception cref="PyroInputException">Bad request; nothing ran.</exception>
    /// <exception cref="HostRequirementException">The host cannot boot guests; the message names the fix.</exception>
    /// <exception cref="VmBootException">The guest did not boot; carries QEMU and console evidence.</exception>
    public async Task<RunResult> RunAsync(RunRequest request, CancellationToken cancellationToken = default)
    {
        var plan = ExecPipeline.Plan(request, HostCapacity.Current);
        var spec = EnvironmentCatalog.Resolve(request.Environment, Options);
        var clock = Stopwatch.StartNew();
        var progress = request.Progress;
        progress?.Report(new PyroProgress("run", "create", [new("environment", spec.Name)]));
        if (request.AllowHostCompat && GuestBootBlocker(Options.Accelerator) is { } blocker)
        {
            progress?.Report(new PyroProgress("run", "host_compat", [new("reason", blocker.Code), new("warning", "running on the host without isolation")]));
            return await HostCompat.RunAsync(request, spec.Name, Options.MaxOutputBytes, clock, cancellationToken).ConfigureAwait(false);
        }

        var vmId = QemuVm.NewId();
        RequireBootTools();
        if (request.Network)
        {
            HostTools.Passt.Require();
        }

        var accelerator = KvmProbe.Detect().Choose(request.Accelerator ?? Options.Accelerator).Chosen;
        var environment = await _store.PullAsync(spec, CachedPullQuiet(progress), cancellationToken).ConfigureAwait(false);
        var bundle = await RuntimeBundle.EnsureAsync(Options, progress, cancellationToken).ConfigureAwait(false);
        progress?.Report(new PyroProgress("run", "start", [new("vm_id", vmId), new("accelerator", accelerator.ToString().ToLowerInvariant())]));
        var (vm, start) = await VmStarter.StartAsync(vmId, new VmSpec(request.VcpuCount, request.MemMib, accelerator), environment, bundle, Options,
            request.Network ? NetworkPolicy.Egress : NetworkPolicy.Off, request.Cold, progress, "run", cancellationToken).ConfigureAwait(false);
        await using var vmScope = vm.ConfigureAwait(false);
        vm.DiscardOnDispose = true;
        progress?.Report(new PyroProgress("run", "execute", [new("vm_id", vmId)]));
        var output = await ExecPipeline.ExecuteAsync(vm.Agent, plan, request.Cwd, Options.MaxOutputBytes, cancellationToken).ConfigureAwait(false);
        // A restored guest's uptime and process starts are the template's boot, not this run's.
        var phases = vm.Restored ? null : vm.BootPhasesUntilNow();
        var kernel = GuestAgentClient.Sanitize(vm.Guest.KernelRelease, 200);
        await vm.DisposeAsync().ConfigureAwait(false);
        return output.Complete(new RunResult
        {
            Environment = spec.Name,
            ExecutionMode = ExecutionMode.Guest,
            VmId = vmId,
            Command = plan.CommandText,
            GuestKernel = kernel,
            Cleanup = new CleanupInfo(true, "post_exec_cleanup", vmId),
            BootPhasesMs = phases,
            StartMode = start.Mode,
            StartMs = vm.ReadyMs,
            ColdStartReason = start.ColdReason,
        }, clock.ElapsedMilliseconds);
    }

    /// <summary>
    /// Why this host cannot boot any guest at all, or null when it can. This, and nothing about a
    /// single request, is what may let a run fall back to the host.
    /// </summary>
    private HostRequirementException? GuestBootBlocker(Accelerator requested)
    {
        try
        {
            RequireBootTools();
            KvmProbe.Detect().Choose(requested);
        }
        catch (HostRequirementException ex)
        {
            return ex;
        }

        return File.Exists(Options.AgentPath)
            ? null
            : new HostRequirementException("agent_missing", $"guest agent missing at {Options.AgentPath}");
    }

    /// <summary>Passes pull progress through only when something is being built, so a cached start stays quiet.</summary>
    internal static IProgress<PyroProgress>? CachedPullQuiet(IProgress<PyroProgress>? inner)
        => inner is null ? null : new SyncProgress<PyroProgress>(p =>
        {
            if (!(p.Operation == "pull" && p.Phase == "ready" && p.Fields.Any(f => f.Key == "cached")))
            {
                inner.Report(p);
            }
        });

    private static void RequireBootTools()
    {
        foreach (var tool in new[] { HostTools.Qemu, HostTools.QemuImg, HostTools.Setpriv })
        {
            tool.Require();
        }
    }
}
