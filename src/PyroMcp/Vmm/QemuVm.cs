using System.Diagnostics;
using System.Globalization;
using PyroMcp.Host;
using PyroMcp.Protocol;
using PyroMcp.Runtime;

namespace PyroMcp.Vmm;

/// <summary>How to size and accelerate one VM.</summary>
internal sealed record VmSpec(int VcpuCount, int MemMib, Accelerator Accelerator);

/// <summary>Everything one QEMU command line is built from.</summary>
/// <param name="Id">The VM id (names the guest and its host name).</param>
/// <param name="Spec">Size and accelerator.</param>
/// <param name="KernelPath">Guest kernel.</param>
/// <param name="InitramfsPath">Guest initramfs.</param>
/// <param name="DiskPath">The VM's qcow2 disk.</param>
/// <param name="AgentSocketPath">Where QEMU listens for the agent channel.</param>
/// <param name="RunAsUser">The user QEMU drops to after opening its files (root only), or null to stay as the caller.</param>
/// <param name="Bare">
/// The benchmark floor (bench/PyroMcp.Bench): the same machine, but the initramfs hands the root
/// disk straight to a shell that powers off (<c>pyro.bare=1</c>); no agent starts.
/// </param>
/// <param name="NetworkSocketPath">passt's socket, for a guest with a network; null for none (no network device at all).</param>
/// <param name="TscKhz">The TSC rate a TCG guest is told; null for the host's (<see cref="HostTsc.Khz"/>).</param>
/// <param name="ControlSocketPath">Where QEMU listens for QMP (stop, cont, migration), or null for none.</param>
/// <param name="Incoming">Start paused, waiting for a memory image (QMP migrate-incoming) instead of booting.</param>
/// <param name="BareIdle">With <paramref name="Bare"/>: the shell sleeps instead of powering off (<c>pyro.bare=idle</c>), the bench's idle-memory floor.</param>
/// <param name="QemuGuestAgentSocketPath">
/// The bench's qemu-guest-agent peer: one more port, <c>org.qemu.guest_agent.0</c>, on a socket QEMU
/// listens on at this path; null (the runtime) for none.
/// </param>
internal sealed record QemuLaunch(string Id, VmSpec Spec, string KernelPath, string InitramfsPath, string DiskPath, string AgentSocketPath, string? RunAsUser, bool Bare = false, string? NetworkSocketPath = null,
    long? TscKhz = null, string? ControlSocketPath = null, bool Incoming = false, bool BareIdle = false, string? QemuGuestAgentSocketPath = null);

/// <summary>Builds QEMU's arguments. Pure but for the host's TSC rate (read once, and given in tests), so the escaping and the sandbox options are unit-tested.</summary>
internal static class QemuCommandLine
{
    internal const string AgentPortName = "org.pyro.agent.0";

    /// <summary>The port name qemu-ga looks for (the bench's peer only).</summary>
    internal const string QemuGuestAgentPortName = "org.qemu.guest_agent.0";

    /// <summary>
    /// seccomp filter for a QEMU that keeps its caller's user. elevateprivileges=deny stops any
    /// setuid/setgid call; spawn=deny stops fork and exec; resourcecontrol=deny stops affinity and
    /// scheduler changes; obsolete=deny stops old system calls nobody needs.
    /// </summary>
    internal const string SandboxUnprivileged = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

    /// <summary>
    /// The same for a root-started QEMU that drops with -runas: elevateprivileges=deny would kill it
    /// at the drop itself (QEMU 7.2 installs the filter first). Once dropped, real, effective and
    /// saved ids are all the unprivileged user's, so there is nothing left to elevate back to.
    /// </summary>
    internal const string SandboxDropping = "on,obsolete=deny,spawn=deny,resourcecontrol=deny";

    /// <summary>
    /// Escapes a value for QEMU's option syntax (<c>key=value,key=value</c>), where a comma ends a
    /// value: a path like <c>/x,readonly=off,file=/etc/shadow</c> would otherwise add options.
    /// Doubled commas are QEMU's literal comma. Refuses what cannot be expressed (NUL, newline).
    /// </summary>
    internal static string EscapeOptionValue(string value)
    {
        if (value.Contains('\0') || value.Contains('\n') || value.Contains('\r'))
        {
            throw new PyroInputException("unsupported_path", $"a path pyro gives QEMU contains a NUL or line break, which QEMU options cannot carry: {GuestAgentClient.Sanitize(value, 200)}. Choose a directory without such characters.");
        }

        return value.Replace(",", ",,", StringComparison.Ordinal);
    }

    /// <summary>The smallest TCG translation cache pyro gives a guest, in MiB.</summary>
    internal const int MinTcgTranslationCacheMib = 64;

    /// <summary>The largest TCG translation cache pyro gives a guest, in MiB.</summary>
    internal const int MaxTcgTranslationCacheMib = 512;

    /// <summary>
    /// The TCG translation cache (tb-size) for a guest of <paramref name="memMib"/> MiB: an eighth
    /// of it, within bounds. QEMU's default is 1 GiB, and every page of it a busy guest once
    /// filled stays in QEMU's RSS for the life of the VM: two gcc -O2 runs and a python3 left a
    /// 1 GiB guest's QEMU at 976 MiB, at 404 MiB with 128. A cache the compiler's translated code
    /// does not fit in is flushed and refilled over and over: on a shared 2-core host the same work
    /// took 45-85 s with the default, 37-77 s with 128 and 46-110 s with 64 (the host's load moved
    /// it more than the cache did), but 344 s with 32 and 540 s with 16.
    /// </summary>
    internal static int TcgTranslationCacheMib(int memMib) => Math.Clamp(memMib / 8, MinTcgTranslationCacheMib, MaxTcgTranslationCacheMib);

    internal static IReadOnlyList<string> Build(QemuLaunch launch)
    {
        var kvm = launch.Spec.Accelerator == Accelerator.Kvm;
        var append = "console=ttyS0 quiet panic=-1 reboot=t tsc=reliable no_timer_check rw pyro.hostname=pyro-" + launch.Id
            // The crypto self-tests are half a second of every boot under TCG and check the kernel's
            // algorithms against known answers (FIPS); they guard no boundary. The KDF's init is only
            // such a test, run even with notests.
            + " cryptomgr.notests initcall_blacklist=crypto_kdf108_init"
            // Under TCG the kernel cannot calibrate the TSC and hangs without this. The guest's TSC
            // is the host's own counter, so its rate is the host's: any other figure makes the
            // guest's clock and timers run fast or slow by the ratio (2000000 on a 2445 MHz host
            // made `sleep 10` last 8.2 s).
            + (kvm ? "" : " tsc_early_khz=" + (launch.TscKhz ?? HostTsc.Khz).ToString(CultureInfo.InvariantCulture))
            + (launch.Bare ? launch.BareIdle ? " pyro.bare=idle" : " pyro.bare=1" : "")
            + (launch.NetworkSocketPath is null ? "" : " pyro.net=dhcp");
        var args = new List<string>
        {
            "-name", "pyro-" + EscapeOptionValue(launch.Id),
            "-M", "microvm,x-option-roms=off,rtc=on",
            "-accel", kvm ? "kvm" : "tcg,thread=multi,tb-size=" + TcgTranslationCacheMib(launch.Spec.MemMib).ToString(CultureInfo.InvariantCulture),
            "-cpu", kvm ? "host" : "max",
            "-smp", launch.Spec.VcpuCount.ToString(CultureInfo.InvariantCulture),
            "-m", launch.Spec.MemMib.ToString(CultureInfo.InvariantCulture),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            // -kernel and -initrd take the whole argument as a file name: no option syntax, no escaping.
            "-kernel", launch.KernelPath,
            "-initrd", launch.InitramfsPath,
            "-append", append,
            "-chardev", "stdio,id=console,signal=off",
            "-serial", "chardev:console",
            "-drive", launch.RunAsUser is null
                ? $"id=root,file={EscapeOptionValue(Path.GetFullPath(launch.DiskPath))},format=qcow2,if=none,discard=unmap"
                // A QEMU that dropped to its own user cannot open the disk in the caller's private
                // directory by name, yet it reopens the disk (read-only, then read-write) whenever a
                // snapshot save or restore hands the disk over. So it gets the disk as an fdset of
                // two descriptors the root launcher opened (see ProcessRunner): fd 3 read-write, fd 4
                // read-only. QEMU's own image lock cannot work across the set's shared descriptions;
                // the private directory and one VM per disk are the lock.
                : "id=root,file=/dev/fdset/1,format=qcow2,if=none,discard=unmap,file.locking=off",

            "-device", "virtio-blk-device,drive=root",
            // One port (id 0 is kept for a console): the default 31 ports are 64 virtqueues the
            // guest's virtio_console sets up at every boot.
            "-device", launch.QemuGuestAgentSocketPath is null ? "virtio-serial-device,max_ports=2" : "virtio-serial-device,max_ports=3",
            "-chardev", $"socket,id=agent,path={EscapeOptionValue(Path.GetFullPath(launch.AgentSocketPath))},server=on,wait=off",
            "-device", $"virtserialport,chardev=agent,name={AgentPortName}",
            // The guest's virtio_balloon reports the pages it frees and QEMU discards them, so a
            // workspace that once touched most of its memory gives it back to the host. Never
            // inflated and not polled: the device only takes what the guest reports. On every VM,
            // so the device set of a shape never changes (a saved memory image restores into it).
            "-device", "virtio-balloon-device,free-page-reporting=on",
            "-sandbox", launch.RunAsUser is null ? SandboxUnprivileged : SandboxDropping,
        };
        if (launch.QemuGuestAgentSocketPath is { } qga)
        {
            args.AddRange(["-chardev", $"socket,id=qga,path={EscapeOptionValue(Path.GetFullPath(qga))},server=on,wait=off",
                "-device", $"virtserialport,chardev=qga,name={QemuGuestAgentPortName}"]);
        }

        if (launch.NetworkSocketPath is { } network)
        {
            // QEMU connects to passt once, at start-up (before any -runas drop): a stream netdev
            // over a unix socket, so the host needs no tap device, bridge or firewall rule.
            args.Add("-netdev");
            args.Add($"stream,id=net0,server=off,addr.type=unix,addr.path={EscapeOptionValue(Path.GetFullPath(network))}");
            args.Add("-device");
            args.Add("virtio-net-device,netdev=net0");
        }

        if (launch.ControlSocketPath is { } control)
        {
            // The VMM's control plane, on a socket in the VM's private directory made before any
            // drop: only the VM's owner reaches it. The guest has no path to it.
            args.Add("-qmp");
            args.Add($"unix:{EscapeOptionValue(Path.GetFullPath(control))},server=on,wait=off");
        }

        if (launch.Incoming)
        {
            // -S: stay paused once the image is in, so the host can check the image's digest
            // before the guest runs one instruction of it.
            args.Add("-incoming");
            args.Add("defer");
            args.Add("-S");
        }

        if (launch.RunAsUser is { } user)
        {
            args.Add("-add-fd");
            args.Add("fd=3,set=1,opaque=disk-rw");
            args.Add("-add-fd");
            args.Add("fd=4,set=1,opaque=disk-ro");
            // Disk, kernel, initramfs and the agent socket are opened before the drop; nothing is opened after.
            args.Add("-runas");
            args.Add(user);
        }

        return args;
    }
}

/// <summary>
/// One QEMU microvm guest and its agent channel. Owns the QEMU process (which the kernel kills
/// if this process dies), a copy-on-write disk over the environment image, and a scratch
/// directory; disposing it tears all of them down.
/// </summary>
internal sealed partial class QemuVm : IAsyncDisposable
{
    private readonly BoundedTail _qemuStderr = new(16 * 1024);
    private readonly BoundedTail _console = new(32 * 1024);
    private Process? _qemu;
    private Networking.PasstProcess? _passt;
    private Task? _pumps;
    private bool _disposed;
    private bool _persistent;
    private long _spawnedAt;
    private long _helloMs;

    private QemuVm(string id, string directory, Accelerator accelerator)
    {
        Id = id;
        Directory = directory;
        Accelerator = accelerator;
    }

    internal string Id { get; }
    internal string Directory { get; }
    internal Accelerator Accelerator { get; }
    internal GuestAgentClient Agent { get; private set; } = null!;
    internal HelloReply Guest { get; private set; } = null!;

    /// <summary>
    /// The boot phases up to now, taken as the first exec's result: call it right after that
    /// exec. Null when the agent did not report its boot times.
    /// </summary>
    internal BootPhases? BootPhasesUntilNow() =>
        BootClock.Phases(_helloMs, (long)System.Diagnostics.Stopwatch.GetElapsedTime(_spawnedAt).TotalMilliseconds,
            Guest.UptimeMs, Guest.InitStartMs, Guest.AgentStartMs);

    /// <summary>
    /// Skip the guest's clean power-off on dispose. Right for one-shot VMs, whose disk is thrown
    /// away: nothing needs flushing, and the power-off costs about a third of a second under TCG.
    /// </summary>
    internal bool DiscardOnDispose { get; set; }

    /// <summary>Whether QEMU is still running.</summary>
    internal bool IsRunning => _qemu is { HasExited: false };

    internal static string NewId() => Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));

    /// <summary>
    /// Boots a guest and waits for its agent. On any failure everything started is torn down
    /// before the exception leaves. With <paramref name="persistentDirectory"/> the VM lives in a
    /// workspace's directory: its disk (<c>disk.qcow2</c>, made if missing) is kept on dispose.
    /// </summary>
    internal static async Task<QemuVm> StartAsync(string id, VmSpec spec, string rootfsImage, RuntimeBundle bundle, PyroOptions options,
        CancellationToken cancellationToken, string? persistentDirectory = null, NetworkPolicy network = NetworkPolicy.Off, SavedVm? restore = null, string? qemuGuestAgentSocketPath = null)
    {
        string directory;
        if (persistentDirectory is null)
        {
            ReapStale(options);
            PrivateDirectory.Ensure(options.RunDir);
            var vms = PrivateDirectory.Ensure(Path.Combine(options.RunDir, "vms"));
            directory = PrivateDirectory.Ensure(Path.Combine(vms, id));
            await File.WriteAllTextAsync(Path.Combine(directory, "owner.pid"), Environment.ProcessId.ToString(CultureInfo.InvariantCulture), cancellationToken).ConfigureAwait(false);
        }
        else
        {
            directory = persistentDirectory;
        }

        var vm = new QemuVm(id, directory, spec.Accelerator) { _persistent = persistentDirectory is not null };
        try
        {
            await vm.BootAsync(spec, rootfsImage, bundle, options, network, restore, qemuGuestAgentSocketPath, cancellationToken).ConfigureAwait(false);
            return vm;
        }
        catch
        {
            await vm.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Starts QEMU for <paramref name="launch"/>, tied to this process. A QEMU that drops
    /// privileges runs in a PID namespace of its own (see ProcessRunner) whose root shell opens the
    /// disk as the fdset the command line names.
    /// </summary>
    internal static Task<Process> SpawnAsync(QemuLaunch launch, string directory)
    {
        var drops = launch.RunAsUser is not null;
        return ProcessRunner.StartTiedToOwnerAsync(HostTools.Qemu.Require(), QemuCommandLine.Build(launch), directory, ownPidNamespace: drops,
            inheritedFile: drops ? Path.GetFullPath(launch.DiskPath) : null);
    }

    /// <summary>Creates a copy-on-write disk over the environment image.</summary>
    internal static async Task CreateOverlayAsync(string rootfsImage, string disk, CancellationToken cancellationToken)
    {
        var overlay = await ProcessRunner.RunAsync(HostTools.QemuImg.Require(), ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", rootfsImage, disk], cancellationToken: cancellationToken).ConfigureAwait(false);
        if (overlay.ExitCode != 0)
        {
            throw new VmBootException("disk_failed", $"qemu-img could not create the VM disk: {overlay.StderrTail}", overlay.StderrTail, "");
        }
    }

    private async Task BootAsync(VmSpec spec, string rootfsImage, RuntimeBundle bundle, PyroOptions options, NetworkPolicy network, SavedVm? restore, string? qemuGuestAgentSocketPath,
        CancellationToken cancellationToken)
    {
        var disk = Path.Combine(Directory, "disk.qcow2");
        if (restore is not null)
        {
            // The memory image's page cache describes exactly this disk: it is copied, never shared.
            await CopyVerifiedAsync(restore.DiskPath, disk, restore.DiskSha256, cancellationToken).ConfigureAwait(false);
        }
        else if (!File.Exists(disk))
        {
            await CreateOverlayAsync(rootfsImage, disk, cancellationToken).ConfigureAwait(false);
        }

        var controlPath = Path.Combine(Directory, ControlSocketName);
        File.Delete(controlPath);

        var socketPath = Path.Combine(Directory, "agent.sock");
        File.Delete(socketPath);
        var kvm = spec.Accelerator == Accelerator.Kvm;
        var dropTo = HostTools.QemuDropUser();
        if (network.HasEgress())
        {
            _passt = await Networking.PasstProcess.StartAsync(Directory, cancellationToken).ConfigureAwait(false);
        }

        var launch = new QemuLaunch(Id, spec, bundle.KernelPath, bundle.InitramfsPath, disk, socketPath, dropTo, NetworkSocketPath: _passt?.SocketPath,
            ControlSocketPath: controlPath, Incoming: restore is not null, QemuGuestAgentSocketPath: qemuGuestAgentSocketPath);
        var bootTimeout = options.BootTimeout ?? (kvm ? TimeSpan.FromSeconds(30) : TimeSpan.FromSeconds(120));
        // A QEMU that drops to another user loses its parent-death signal (the kernel clears it
        // on a uid change), so it runs in a PID namespace whose root init keeps it: see ProcessRunner.
        _spawnedAt = System.Diagnostics.Stopwatch.GetTimestamp();
        _qemu = await SpawnAsync(launch, Directory).ConfigureAwait(false);
        _qemu.StandardInput.Close();
        _pumps = Task.WhenAll(Pump(_qemu.StandardOutput.BaseStream, _console), Pump(_qemu.StandardError.BaseStream, _qemuStderr));

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(bootTimeout);
        var exited = _qemu.WaitForExitAsync(CancellationToken.None);
        try
        {
            if (restore is not null)
            {
                await RestoreMemoryAsync(controlPath, restore, exited, deadline.Token).ConfigureAwait(false);
            }

            // QEMU creates the socket during start-up; poll until it accepts.
            while (Agent is null)
            {
                if (exited.IsCompleted)
                {
                    throw await BootFailureAsync("qemu_failed", "QEMU exited before the guest started").ConfigureAwait(false);
                }

                try
                {
                    Agent = await GuestAgentClient.ConnectAsync(socketPath, deadline.Token).ConfigureAwait(false);
                }
                catch (System.Net.Sockets.SocketException)
                {
                    await Task.Delay(10, deadline.Token).ConfigureAwait(false);
                }
            }

            var hello = Agent.HelloAsync(deadline.Token, restore is null ? null : NewIdentity(network));
            if (await Task.WhenAny(hello, exited).ConfigureAwait(false) != hello)
            {
                throw await BootFailureAsync("boot_failed", "the guest stopped before its agent answered").ConfigureAwait(false);
            }

            Guest = await hello.ConfigureAwait(false);
            _helloMs = (long)System.Diagnostics.Stopwatch.GetElapsedTime(_spawnedAt).TotalMilliseconds;
            if (restore is not null && !Guest.Resumed)
            {
                // An agent that ignored the resume would share its RNG state with every sibling.
                throw await BootFailureAsync("restore_failed", "the restored guest's agent did not take its new identity and entropy").ConfigureAwait(false);
            }

            Restored = restore is not null;
        }
        catch (GuestOperationException ex) when (restore is not null)
        {
            throw await BootFailureAsync("restore_failed", "the restored guest refused its new identity: " + ex.Message).ConfigureAwait(false);
        }
        catch (VmBootException ex) when (ex.Code is "qmp_error" or "restore_failed" && restore is not null)
        {
            throw await BootFailureAsync("restore_failed", "QEMU did not take the memory image: " + ex.Message).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw await BootFailureAsync("boot_timeout", $"the guest agent did not answer within {bootTimeout.TotalSeconds:0} s").ConfigureAwait(false);
        }
        catch (GuestChannelException ex)
        {
            throw await BootFailureAsync("boot_failed", "the guest channel closed during boot: " + ex.Message).ConfigureAwait(false);
        }
    }

    private async Task<VmBootException> BootFailureAsync(string code, string what)
    {
        if (_qemu is { HasExited: false })
        {
            _qemu.Kill();
        }

        if (_pumps is not null)
        {
            await Task.WhenAny(_pumps, Task.Delay(1000)).ConfigureAwait(false);
        }

        var stderr = _qemuStderr.Text();
        var console = _console.Text();
        var message = $"{what} (accelerator {Accelerator.ToString().ToLowerInvariant()}).";
        message += stderr.Length > 0 ? $"\n--- QEMU stderr (tail) ---\n{stderr}" : "\n--- QEMU stderr: empty ---";
        if (_passt?.StderrTail() is { Length: > 0 } passt)
        {
            message += $"\n--- passt stderr (tail) ---\n{passt}";
        }

        message += console.Length > 0 ? $"\n--- guest console (tail) ---\n{console}" : "\n--- guest console: empty ---";
        message += Accelerator == Accelerator.Kvm ? "\nIf KVM is the problem, retry with the TCG accelerator." : "\nThe doctor check (Pyro.DoctorAsync) looks the host over.";
        return new VmBootException(code, message, stderr, console);
    }

    private static async Task Pump(Stream source, BoundedTail tail)
    {
        var buffer = new byte[8192];
        try
        {
            int read;
            while ((read = await source.ReadAsync(buffer).ConfigureAwait(false)) > 0)
            {
                tail.Append(buffer.AsSpan(0, read));
            }
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Completes when QEMU exits, for whatever reason.</summary>
    internal Task Exited => _qemu?.WaitForExitAsync() ?? Task.CompletedTask;

    /// <summary>QEMU's exit code once it has exited.</summary>
    internal int? ExitCode => _qemu is { HasExited: true } ? _qemu.ExitCode : null;

    /// <summary>QEMU's process id (in the host's PID namespace), or its launcher's while QEMU is not found.</summary>
    internal int? QemuPid => _qemu is null ? null : ProcessRunner.Innermost(_qemu.Id);

    /// <summary>The last lines of the guest console, for diagnostics.</summary>
    internal string ConsoleTail() => _console.Text();

    /// <summary>Removes scratch directories of VMs whose owning process is gone (its QEMU died with it).</summary>
    internal static void ReapStale(PyroOptions options)
    {
        var root = Path.Combine(options.RunDir, "vms");
        if (UnixStat.LStat(root) is null)
        {
            return;
        }

        // Never enumerate, read pid files in, or delete under a directory someone else controls.
        PrivateDirectory.Verify(options.RunDir);
        PrivateDirectory.Verify(root);

        foreach (var dir in System.IO.Directory.GetDirectories(root))
        {
            var pidFile = Path.Combine(dir, "owner.pid");
            var alive = File.Exists(pidFile) && int.TryParse(File.ReadAllText(pidFile), out var pid) && System.IO.Directory.Exists($"/proc/{pid}");
            if (!alive)
            {
                try
                {
                    System.IO.Directory.Delete(dir, recursive: true);
                }
                catch (IOException)
                {
                }
            }
        }
    }

    /// <summary>
    /// A power-off that loses no write: the guest flushes its file systems through the agent, then
    /// powers off, and QEMU is waited for, all within <paramref name="deadline"/> (size it for TCG,
    /// where a sync of a busy disk takes seconds). Returns whether QEMU exited on its own; the
    /// caller's dispose kills it otherwise.
    /// </summary>
    internal async Task<bool> PowerOffAsync(TimeSpan deadline)
    {
        if (_qemu is not { HasExited: false } || Agent is null || Guest is null)
        {
            return _qemu?.HasExited ?? true;
        }

        using var limit = new CancellationTokenSource(deadline);
        try
        {
            await Agent.CallAsync(new AgentRequest { Op = AgentOps.Sync }, null, null, limit.Token).ConfigureAwait(false);
            await Agent.ShutdownAsync(limit.Token).ConfigureAwait(false);
            await _qemu.WaitForExitAsync(limit.Token).ConfigureAwait(false);
            return true;
        }
        catch (Exception ex) when (ex is OperationCanceledException or PyroException or IOException)
        {
            return _qemu.HasExited;
        }
    }

    /// <summary>Asks the guest to power off, then makes sure QEMU is gone and removes every file of this VM.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (!DiscardOnDispose && _qemu is { HasExited: false } && Agent is not null && Guest is not null)
        {
            try
            {
                using var quick = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await Agent.ShutdownAsync(quick.Token).ConfigureAwait(false);
                await _qemu.WaitForExitAsync(quick.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or PyroException)
            {
                // Not answering a shutdown is no reason to keep the VM: it is killed below.
            }
        }

        if (_qemu is not null)
        {
            if (!_qemu.HasExited)
            {
                _qemu.Kill();
            }

            await _qemu.WaitForExitAsync().ConfigureAwait(false);
            _qemu.Dispose();
        }

        if (Agent is not null)
        {
            await Agent.DisposeAsync().ConfigureAwait(false);
        }

        if (_control is not null)
        {
            await _control.DisposeAsync().ConfigureAwait(false);
        }

        if (_passt is not null)
        {
            await _passt.DisposeAsync().ConfigureAwait(false);
        }

        if (_pumps is not null)
        {
            await Task.WhenAny(_pumps, Task.Delay(1000)).ConfigureAwait(false);
        }

        if (_persistent)
        {
            // The workspace keeps its disk; only the channel endpoints go.
            File.Delete(Path.Combine(Directory, "agent.sock"));
            File.Delete(Path.Combine(Directory, ControlSocketName));
            return;
        }

        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
