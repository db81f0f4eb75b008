using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using PyroMcp.Host;
using PyroMcp.Protocol;
using PyroMcp.Vmm;

namespace PyroMcp.Workspaces;

/// <summary>
/// Starts, watches and ends workspace supervisors (the <c>pyro-supervisor</c> process that owns a
/// workspace's QEMU). A supervisor lives while it holds its workspace's supervisor lock
/// (<see cref="WorkspaceLocks"/>); it is signalled only through a pidfd and only while its
/// process provably is the one that registered.
/// </summary>
internal sealed partial class SupervisorLauncher(PyroOptions options, WorkspaceStore store)
{
    /// <summary>How long a stop waits for the guest to flush and power off before QEMU is killed: TCG boots and syncs slowly.</summary>
    internal static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(90);

    /// <summary>Whether the workspace has a live supervisor (one holds its lock).</summary>
    internal bool IsAlive(string id) => WorkspaceLocks.SupervisorHeld(store.StateDir, id);

    /// <summary>
    /// Launches a supervisor for a workspace in a launching state and waits until its VM is up
    /// (registered, booted, listening). The caller holds the operation lock. On failure the
    /// supervisor is gone when this throws.
    /// </summary>
    internal async Task LaunchAsync(string id, CancellationToken cancellationToken, string mode = WorkspaceSupervisor.StartCold)
    {
        if (!File.Exists(options.SupervisorPath))
        {
            throw new HostRequirementException("supervisor_missing", $"the workspace supervisor is missing at {options.SupervisorPath}: build the checkout, reinstall the tool, or set PYRO_SUPERVISOR_PATH");
        }

        // One supervisor at a time: a previous one (its launcher died, say) is ended first.
        await KillAsync(id, cancellationToken).ConfigureAwait(false);
        store.ClearSupervisor(id);
        var directory = store.WorkspaceDir(id);
        var start = new ProcessStartInfo("/bin/sh") { UseShellExecute = false, WorkingDirectory = directory, RedirectStandardOutput = true };
        // setsid: a session of its own, so the supervisor outlives this process and its terminal;
        // stdio goes to the workspace's log, never to our pipes (a caller reading our output to
        // the end would otherwise wait for the supervisor). $! is the supervisor's pid: a
        // background job of a non-interactive shell leads no group, so setsid does not fork.
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add("setsid \"$0\" \"$@\" </dev/null >>supervisor.log 2>&1 & echo $!");
        foreach (var arg in Command(options.SupervisorPath))
        {
            start.ArgumentList.Add(arg);
        }

        start.ArgumentList.Add("--state-dir");
        start.ArgumentList.Add(options.StateDir);
        start.ArgumentList.Add("--workspace");
        start.ArgumentList.Add(id);
        start.ArgumentList.Add("--start");
        start.ArgumentList.Add(mode);
        foreach (var (key, value) in OptionsAsEnvironment())
        {
            start.Environment[key] = value;
        }

        int launched;
        using (var shell = Process.Start(start)!)
        {
            var output = await shell.StandardOutput.ReadToEndAsync(cancellationToken).ConfigureAwait(false);
            await shell.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
            launched = int.Parse(output.Trim(), NumberStyles.None, CultureInfo.InvariantCulture);
        }

        try
        {
            await WaitBootedAsync(id, launched, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await KillAsync(id, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    private async Task WaitBootedAsync(string id, int launched, CancellationToken cancellationToken)
    {
        var directory = store.WorkspaceDir(id);
        var deadline = DateTime.UtcNow + (options.BootTimeout ?? TimeSpan.FromSeconds(120)) + TimeSpan.FromSeconds(60);
        while (true)
        {
            // A warm start is ready in well under a second: a coarse poll would be most of it.
            await Task.Delay(25, cancellationToken).ConfigureAwait(false);
            var record = store.Find(id) ?? throw new WorkspaceStateException("workspace_gone", $"workspace {id} was deleted while its VM was starting");
            var registered = record.SupervisorPid;
            if (record.Booted && registered is not null && IsAlive(id))
            {
                return;
            }

            if (record.SupervisorError is { } error && registered is not null)
            {
                throw new VmBootException("workspace_start_failed", error, "", "");
            }

            var launchedGone = ProcessIdentity.Of(launched) is null;
            if (launchedGone && (registered is null || registered == launched || ProcessIdentity.Of(registered.Value) is null))
            {
                throw new VmBootException("supervisor_died", $"the workspace supervisor exited during start; its log:\n{Tail(Path.Combine(directory, "supervisor.log"))}", "", "");
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new VmBootException("workspace_start_timeout", $"the workspace did not start in time; supervisor log:\n{Tail(Path.Combine(directory, "supervisor.log"))}", "", "");
            }
        }
    }

    /// <summary>
    /// Ends the supervisor cleanly: it flushes the guest's file systems and powers the guest off,
    /// for up to <see cref="StopGrace"/>; one that does not finish in time is killed.
    /// </summary>
    internal async Task StopAsync(string id, CancellationToken cancellationToken)
    {
        if (!IsAlive(id))
        {
            return;
        }

        try
        {
            var socket = Path.Combine(store.WorkspaceDir(id), WorkspaceSupervisor.SocketName);
            var agent = await GuestAgentClient.ConnectAsync(socket, cancellationToken).ConfigureAwait(false);
            await using var agentScope = agent.ConfigureAwait(false);
            using var quick = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            quick.CancelAfter(TimeSpan.FromSeconds(5));
            await agent.CallAsync(new AgentRequest { Op = WorkspaceSupervisor.StopOp }, null, null, quick.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is PyroException or IOException or SocketException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            // An unresponsive supervisor is killed below; QEMU dies with it.
        }

        var deadline = DateTime.UtcNow + StopGrace;
        while (IsAlive(id) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }

        await KillAsync(id, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// SIGKILL to the workspace's supervisor (QEMU dies with it), and waits until its lock is free.
    /// A supervisor that has taken its lock but not yet registered is waited for.
    /// </summary>
    internal async Task KillAsync(string id, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (IsAlive(id))
        {
            if (store.Find(id) is { } record)
            {
                Kill(record);
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new WorkspaceStateException("supervisor_unkillable", $"the supervisor of workspace {id} holds its lock but could not be identified or killed; its pid is in the supervisor log");
            }

            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Whether the record's registered supervisor still runs as the process that registered: the
    /// pid must belong to a live process with the start time and owner recorded then (pids get
    /// reused; a command line can be faked with exec -a), owned by us, whose command line names
    /// this workspace. A record without that identity proves nothing and is not believed.
    /// </summary>
    internal static bool IsProven(WorkspaceRecord record)
    {
        if (record is not { SupervisorPid: { } pid, SupervisorStartTicks: { } ticks, SupervisorUid: { } uid } || uid != OwnUid.Value)
        {
            return false;
        }

        if (ProcessIdentity.Of(pid) is not { } identity || identity.StartTicks != ticks || identity.Uid != uid)
        {
            return false;
        }

        try
        {
            var args = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0');
            var named = Array.IndexOf(args, "--workspace") is var at && at >= 0 && at + 1 < args.Length && args[at + 1] == record.Id;
            return named && args.Any(a => a.Contains("pyro-supervisor", StringComparison.Ordinal));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static readonly Lazy<int> OwnUid = new(() => ProcessIdentity.Of(Environment.ProcessId)?.Uid ?? -1);

    /// <summary>
    /// SIGKILL, only while the process provably is the supervisor: a pidfd pins the process, the
    /// identity is checked again through it, and the signal goes to the pidfd, so a pid reused
    /// between the check and the signal cannot be hit.
    /// </summary>
    private static bool Kill(WorkspaceRecord record)
    {
        if (record.SupervisorPid is not { } pid || !IsProven(record))
        {
            return false;
        }

        var fd = (int)Pidfd.Syscall(Pidfd.PidfdOpen, pid, 0);
        if (fd < 0)
        {
            return false;
        }

        try
        {
            return IsProven(record) && Pidfd.Syscall(Pidfd.PidfdSendSignal, fd, Pidfd.SigKill, 0, 0) == 0;
        }
        finally
        {
            Pidfd.Close(fd);
        }
    }

    private static partial class Pidfd
    {
        // Same numbers on x86-64 and arm64 (the unified syscall table from 424 on).
        internal const long PidfdSendSignal = 424;
        internal const long PidfdOpen = 434;
        internal const long SigKill = 9;

        [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
        internal static partial long Syscall(long number, long arg1, long arg2);

        [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
        internal static partial long Syscall(long number, long arg1, long arg2, long arg3, long arg4);

        [LibraryImport("libc", EntryPoint = "close")]
        internal static partial int Close(int fd);
    }

    private IEnumerable<KeyValuePair<string, string>> OptionsAsEnvironment()
    {
        yield return new("PYRO_ENVIRONMENT_CACHE_DIR", options.EnvironmentCacheDir);
        yield return new("PYRO_RUNTIME_CACHE_DIR", options.RuntimeCacheDir);
        yield return new("PYRO_TEMPLATE_CACHE_DIR", options.TemplateCacheDir);
        yield return new("PYRO_RUN_DIR", options.RunDir);
        yield return new("PYRO_AGENT_PATH", options.AgentPath);
        yield return new("PYRO_ACCEL", options.Accelerator.ToString().ToLowerInvariant());
        if (options.BootTimeout is { } boot)
        {
            yield return new("PYRO_BOOT_TIMEOUT_SECONDS", ((int)boot.TotalSeconds).ToString(CultureInfo.InvariantCulture));
        }
    }

    /// <summary>How to start the supervisor at <paramref name="path"/>: a native build directly, a managed one with dotnet.</summary>
    internal static string[] Command(string path)
        => path.EndsWith(".dll", StringComparison.OrdinalIgnoreCase) ? [DotnetHost(), path] : [path];

    private static string DotnetHost()
    {
        var self = Environment.ProcessPath;
        if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            return self;
        }

        return Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
    }

    internal static string Tail(string path)
    {
        try
        {
            var lines = File.ReadAllLines(path);
            return string.Join('\n', lines.Skip(Math.Max(0, lines.Length - 30)).Select(l => GuestAgentClient.Sanitize(l, 500)));
        }
        catch (IOException)
        {
            return "(no log)";
        }
    }
}
