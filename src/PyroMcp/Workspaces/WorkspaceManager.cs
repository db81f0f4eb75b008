using System.Diagnostics;
using System.Globalization;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Protocol;
using PyroMcp.Runtime;
using PyroMcp.Vmm;

namespace PyroMcp.Workspaces;

/// <summary>Everything the SDK does with workspaces. Each call is independent: state lives in the store and the supervisors.</summary>
internal sealed partial class WorkspaceManager(PyroOptions options, EnvironmentStore environments)
{
    internal const string GuestRoot = "/workspace";
    private const string BaselineFile = "baseline.tar";
    private const string SnapshotsDir = "snapshots";

    private WorkspaceStore? _store;

    internal WorkspaceStore Store => _store ??= new WorkspaceStore(options.StateDir);

    // ---- lifecycle -------------------------------------------------------------------------

    internal async Task<WorkspaceInfo> CreateAsync(WorkspaceCreateRequest request, CancellationToken cancellationToken)
    {
        var spec = EnvironmentCatalog.Resolve(request.Environment);
        Validate(request, HostCapacity.Current);
        // Checked here too, before an environment is pulled or built, so a full host says so at once.
        EnsureWorkspaceRoom(Store.List().Count);
        var progress = request.Progress;
        void Report(string phase, params KeyValuePair<string, string>[] fields)
            => progress?.Report(new PyroProgress("workspace-create", phase, [.. fields]));

        foreach (var tool in new[] { HostTools.Qemu, HostTools.QemuImg, HostTools.Setpriv })
        {
            tool.Require();
        }

        Report("prepare", new KeyValuePair<string, string>("environment", spec.Name));
        var environment = await environments.PullAsync(spec, Pyro.CachedPullQuiet(progress), cancellationToken);
        await RuntimeBundle.EnsureAsync(options, progress, cancellationToken);

        var id = QemuVm.NewId();
        var directory = Store.WorkspaceDir(id);
        Directory.CreateDirectory(Path.Combine(directory, SnapshotsDir));
        File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var now = DateTimeOffset.UtcNow;
        await InsertWithinLimitAsync(new WorkspaceRecord
        {
            Id = id,
            Name = request.Name,
            Environment = spec.Name,
            VcpuCount = request.VcpuCount,
            MemMib = request.MemMib,
            TtlSeconds = request.TtlSeconds,
            CreatedAt = now,
            ExpiresAt = now.AddSeconds(request.TtlSeconds),
            State = WorkspaceStates.Creating,
            Labels = request.Labels ?? new Dictionary<string, string>(),
            SeedSource = request.SeedPath is null ? null : Path.GetFullPath(request.SeedPath),
        }, cancellationToken);
        try
        {
            await QemuVm.CreateOverlayAsync(environment.RootfsImage, Path.Combine(directory, "disk.qcow2"), cancellationToken);
            Report("start", new KeyValuePair<string, string>("workspace_id", id));
            await StartSupervisorAsync(id, cancellationToken);
            await using (var connection = await ConnectAsync(Store.Get(id), cancellationToken))
            {
                if (request.SeedPath is not null)
                {
                    Report("seed", new KeyValuePair<string, string>("workspace_id", id), new KeyValuePair<string, string>("source", request.SeedPath));
                    var seeded = await PushTreeAsync(connection, request.SeedPath, GuestRoot, clean: false, cancellationToken);
                    Report("seeded", new KeyValuePair<string, string>("entries", seeded.Entries.ToString(CultureInfo.InvariantCulture)),
                        new KeyValuePair<string, string>("bytes", seeded.Bytes.ToString(CultureInfo.InvariantCulture)),
                        new KeyValuePair<string, string>("skipped", seeded.Skipped.Count.ToString(CultureInfo.InvariantCulture)));
                }

                Report("baseline", new KeyValuePair<string, string>("workspace_id", id));
                await SaveTreeAsync(connection, Path.Combine(directory, BaselineFile), MaxTreeBytes, cancellationToken);
            }

            Report("ready", new KeyValuePair<string, string>("workspace_id", id));
            return await StatusAsync(id, cancellationToken);
        }
        catch
        {
            // Create is all or nothing: a half-made workspace is removed, not left to puzzle over.
            // Its supervisor may have removed it already (TTL); the first failure is the one to report.
            if (Store.Find(id) is not null)
            {
                await DeleteAsync(id, CancellationToken.None);
            }
            else if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }

            throw;
        }
    }

    internal Task<WorkspaceInfo> StatusAsync(string idOrName, CancellationToken cancellationToken)
        => Task.FromResult(ToInfo(Store.Get(idOrName)));

    internal Task<CappedList<WorkspaceInfo>> ListAsync(IReadOnlyDictionary<string, string>? labels, CancellationToken cancellationToken)
    {
        var matching = Store.List().Where(r => labels is null || labels.All(l => r.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).ToList();
        var kept = CappedList<WorkspaceRecord>.Take(matching, options.MaxListEntries);
        return Task.FromResult(new CappedList<WorkspaceInfo>(kept.Select(ToInfo).ToList(), kept.TotalCount));
    }

    /// <summary>
    /// Inserts a new workspace only while fewer than <see cref="PyroOptions.MaxWorkspaces"/> exist.
    /// Count and insert happen under one lock file in the state directory, so concurrent creates
    /// from several processes cannot all pass a limit that only one of them fits under.
    /// </summary>
    internal async Task InsertWithinLimitAsync(WorkspaceRecord record, CancellationToken cancellationToken)
    {
        using var guard = await FileLock.AcquireAsync(Path.Combine(Store.StateDir, "create.lock"), cancellationToken: cancellationToken);
        EnsureWorkspaceRoom(Store.List().Count);
        Store.Insert(record);
    }

    private void EnsureWorkspaceRoom(int existing)
    {
        if (existing >= options.MaxWorkspaces)
        {
            throw new PyroInputException("workspace_limit_reached",
                $"{existing} workspaces exist and this host allows {options.MaxWorkspaces}: delete some you no longer need (or reap expired ones) and create again. " +
                "The limit is PyroOptions.MaxWorkspaces, or PYRO_MAX_WORKSPACES.");
        }
    }

    internal async Task<bool> DeleteAsync(string idOrName, CancellationToken cancellationToken)
    {
        var record = Store.Find(idOrName);
        if (record is null)
        {
            throw new PyroInputException("workspace_not_found", $"no workspace '{idOrName}'. See 'pyro workspace list'.");
        }

        await StopSupervisorAsync(record, cancellationToken);
        var directory = Store.WorkspaceDir(record.Id);
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }

        Store.Delete(record.Id);
        return true;
    }

    internal async Task<WorkspaceInfo> StopAsync(string idOrName, CancellationToken cancellationToken)
    {
        var record = Store.Get(idOrName);
        await StopSupervisorAsync(record, cancellationToken);
        var after = Store.Get(record.Id);
        if (after.State is not WorkspaceStates.Stopped)
        {
            Store.SetState(record.Id, WorkspaceStates.Stopped, "stopped on request");
        }

        return ToInfo(Store.Get(record.Id));
    }

    internal async Task<WorkspaceInfo> StartAsync(string idOrName, CancellationToken cancellationToken)
    {
        var record = Store.Get(idOrName);
        var info = ToInfo(record);
        if (info.State == WorkspaceStates.Running)
        {
            return info;
        }

        if (info.State is not (WorkspaceStates.Stopped or WorkspaceStates.Crashed))
        {
            throw new WorkspaceStateException("workspace_not_startable", $"workspace {record.Id} is {info.State}: only a stopped or crashed workspace can be started. {info.StateReason}");
        }

        if (!File.Exists(Path.Combine(Store.WorkspaceDir(record.Id), "disk.qcow2")))
        {
            throw new WorkspaceStateException("workspace_disk_missing", $"workspace {record.Id} has no disk left; delete it with 'pyro workspace delete {record.Id}'");
        }

        Store.SetState(record.Id, WorkspaceStates.Creating, "starting from its disk");
        await StartSupervisorAsync(record.Id, cancellationToken);
        return ToInfo(Store.Get(record.Id));
    }

    /// <summary>Deletes every workspace past its TTL: those whose supervisor is gone included.</summary>
    internal async Task<IReadOnlyList<string>> ReapExpiredAsync(CancellationToken cancellationToken)
    {
        var reaped = new List<string>();
        foreach (var record in Store.List().Where(r => r.ExpiresAt <= DateTimeOffset.UtcNow))
        {
            await DeleteAsync(record.Id, cancellationToken);
            reaped.Add(record.Id);
        }

        return reaped;
    }

    // ---- commands --------------------------------------------------------------------------

    internal async Task<WorkspaceExecResult> ExecAsync(string idOrName, WorkspaceExecRequest request, CancellationToken cancellationToken)
    {
        var record = Store.Get(idOrName);
        // The command runs in the workspace's VM: sizes were checked when it was created.
        var plan = Execution.ExecPipeline.Plan(new RunRequest
        {
            Environment = record.Environment,
            Command = request.Command,
            TimeoutSeconds = request.TimeoutSeconds,
            Env = request.Env,
            OnStdout = request.OnStdout,
            OnStderr = request.OnStderr,
        }, host: null);
        var cwd = GuestPath(request.Cwd ?? GuestRoot);
        var started = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();
        await using var connection = await ConnectAsync(record, cancellationToken);
        var output = await Execution.ExecPipeline.ExecuteAsync(connection.Agent, plan, cwd, options.MaxOutputBytes, cancellationToken);
        var durationMs = clock.ElapsedMilliseconds;
        var sequence = Store.AppendCommand(record.Id, plan.CommandText, cwd, output.Exit.ExitCode, durationMs, started);
        return output.Complete(new WorkspaceExecResult { WorkspaceId = record.Id, Sequence = sequence, Command = plan.CommandText, Cwd = cwd }, durationMs);
    }

    internal Task<CappedList<CommandRecord>> LogsAsync(string idOrName, CancellationToken cancellationToken)
    {
        var id = Store.Get(idOrName).Id;
        // Count first: a command appended between the two reads makes the total one short, never the list wrong.
        var total = Store.CommandCount(id);
        return Task.FromResult(new CappedList<CommandRecord>(Store.Commands(id, options.MaxListEntries), total));
    }

    // ---- supervisor plumbing ---------------------------------------------------------------

    private async Task StartSupervisorAsync(string id, CancellationToken cancellationToken)
    {
        if (!File.Exists(options.SupervisorPath))
        {
            throw new HostRequirementException("supervisor_missing", $"the workspace supervisor is missing at {options.SupervisorPath}: build the checkout with ./pyro, reinstall the tool, or set PYRO_SUPERVISOR_PATH");
        }

        var directory = Store.WorkspaceDir(id);
        var start = new ProcessStartInfo("/bin/sh") { UseShellExecute = false, WorkingDirectory = directory };
        // setsid: a session of its own, so the supervisor outlives this process and its terminal;
        // stdio goes to the workspace's log, never to our pipes (a caller reading our output to
        // the end would otherwise wait for the supervisor).
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add("setsid \"$0\" \"$@\" </dev/null >>supervisor.log 2>&1 &");
        start.ArgumentList.Add(DotnetHost());
        start.ArgumentList.Add(options.SupervisorPath);
        start.ArgumentList.Add("--state-dir");
        start.ArgumentList.Add(options.StateDir);
        start.ArgumentList.Add("--workspace");
        start.ArgumentList.Add(id);
        foreach (var (key, value) in OptionsAsEnvironment())
        {
            start.Environment[key] = value;
        }

        using (var shell = Process.Start(start)!)
        {
            await shell.WaitForExitAsync(cancellationToken);
        }

        // The supervisor reports through the database: running, or failed with the evidence.
        var deadline = DateTime.UtcNow + (options.BootTimeout ?? TimeSpan.FromSeconds(120)) + TimeSpan.FromSeconds(60);
        var sawPid = false;
        while (true)
        {
            await Task.Delay(100, cancellationToken);
            // The only one who deletes a starting workspace is its own supervisor, when its TTL
            // ran out before the VM was up (a short TTL on a slow host): say that, not "not found".
            var record = Store.Find(id) ?? throw new WorkspaceStateException("workspace_expired_during_start",
                $"workspace {id} reached the end of its TTL before its VM finished starting, and was deleted; create it again with a longer TTL");
            if (record.State is WorkspaceStates.Running or WorkspaceStates.Resetting && record.SupervisorPid is not null && File.Exists(Path.Combine(directory, WorkspaceSupervisor.SocketName)))
            {
                return;
            }

            if (record.State == WorkspaceStates.Failed)
            {
                throw new VmBootException("workspace_start_failed", record.StateReason ?? "the workspace VM did not start", "", "");
            }

            sawPid |= record.SupervisorPid is not null;
            if (sawPid && record.SupervisorPid is not null && !IsSupervisorAlive(record))
            {
                throw new VmBootException("supervisor_died", $"the workspace supervisor exited during start; its log:\n{Tail(Path.Combine(directory, "supervisor.log"))}", "", "");
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new VmBootException("workspace_start_timeout", $"the workspace did not start in time; supervisor log:\n{Tail(Path.Combine(directory, "supervisor.log"))}", "", "");
            }
        }
    }

    private async Task StopSupervisorAsync(WorkspaceRecord record, CancellationToken cancellationToken)
    {
        if (!IsSupervisorAlive(record))
        {
            return;
        }

        try
        {
            await using var connection = await ConnectRawAsync(record, cancellationToken);
            using var quick = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            quick.CancelAfter(TimeSpan.FromSeconds(5));
            await connection.Agent.CallAsync(new AgentRequest { Op = WorkspaceSupervisor.StopOp }, null, null, quick.Token);
        }
        catch (Exception ex) when (ex is PyroException or IOException or SocketException or OperationCanceledException)
        {
            // An unresponsive supervisor is killed below; QEMU dies with it.
        }

        for (var i = 0; i < 100 && IsSupervisorAlive(record); i++)
        {
            await Task.Delay(100, cancellationToken);
        }

        if (KillSupervisor(record))
        {
            for (var i = 0; i < 50 && IsSupervisorAlive(record); i++)
            {
                await Task.Delay(100, cancellationToken);
            }
        }
    }

    /// <summary>
    /// Whether the record's supervisor still runs: the pid must belong to a live process with the
    /// start time and owner recorded when the supervisor registered (pids get reused; a command
    /// line can be faked with exec -a), owned by us, whose command line names this workspace.
    /// A record without that identity (written by an older pyro) proves nothing and is not believed.
    /// </summary>
    internal static bool IsSupervisorAlive(WorkspaceRecord record)
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
    /// SIGKILL to the supervisor, only while it provably is the supervisor: a pidfd pins the process,
    /// the identity is checked again through it, and the signal goes to the pidfd, so a pid reused
    /// between the check and the signal cannot be hit.
    /// </summary>
    private static bool KillSupervisor(WorkspaceRecord record)
    {
        if (record.SupervisorPid is not { } pid || !IsSupervisorAlive(record))
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
            return IsSupervisorAlive(record) && Pidfd.Syscall(Pidfd.PidfdSendSignal, fd, Pidfd.SigKill, 0, 0) == 0;
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

    /// <summary>A client connection to a running workspace's supervisor.</summary>
    internal sealed class Connection(GuestAgentClient agent) : IAsyncDisposable
    {
        internal GuestAgentClient Agent { get; } = agent;

        public ValueTask DisposeAsync() => Agent.DisposeAsync();
    }

    private async Task<Connection> ConnectAsync(WorkspaceRecord record, CancellationToken cancellationToken)
    {
        var info = ToInfo(record);
        if (info.State != WorkspaceStates.Running && !(info.State == WorkspaceStates.Creating && record.SupervisorPid is not null))
        {
            var hint = info.State switch
            {
                WorkspaceStates.Stopped or WorkspaceStates.Crashed => $"start it with 'pyro workspace start {record.Id}' or delete it",
                WorkspaceStates.Failed => $"reset it with 'pyro workspace reset {record.Id}' or delete it",
                _ => "wait for it, or check 'pyro workspace status'",
            };
            throw new WorkspaceStateException("workspace_not_running", $"workspace {record.Id} is {info.State}{(info.StateReason is null ? "" : $" ({info.StateReason})")}: {hint}");
        }

        return await ConnectRawAsync(record, cancellationToken);
    }

    private async Task<Connection> ConnectRawAsync(WorkspaceRecord record, CancellationToken cancellationToken)
    {
        var socket = Path.Combine(Store.WorkspaceDir(record.Id), WorkspaceSupervisor.SocketName);
        try
        {
            return new Connection(await GuestAgentClient.ConnectAsync(socket, cancellationToken));
        }
        catch (SocketException ex)
        {
            throw new GuestChannelException("supervisor_unreachable", $"cannot reach the supervisor of workspace {record.Id}: {ex.Message}. 'pyro workspace status {record.Id}' shows its state.");
        }
    }

    private WorkspaceInfo ToInfo(WorkspaceRecord record)
    {
        var state = record.State;
        var reason = record.StateReason;
        var live = IsSupervisorAlive(record);
        if (state is WorkspaceStates.Running or WorkspaceStates.Creating or WorkspaceStates.Resetting && record.SupervisorPid is not null && !live)
        {
            // The database says it runs, but its owner is gone (kill -9, host crash): say so.
            state = WorkspaceStates.Crashed;
            reason = $"its supervisor (pid {record.SupervisorPid}) is gone, and QEMU with it; the disk is kept: 'pyro workspace start {record.Id}' boots it again, 'pyro workspace delete {record.Id}' removes it";
        }

        return new WorkspaceInfo
        {
            WorkspaceId = record.Id,
            Name = record.Name,
            Environment = record.Environment,
            State = state,
            StateReason = reason,
            VcpuCount = record.VcpuCount,
            MemMib = record.MemMib,
            TtlSeconds = record.TtlSeconds,
            CreatedAt = record.CreatedAt,
            ExpiresAt = record.ExpiresAt,
            ResetCount = record.ResetCount,
            CommandCount = Store.CommandCount(record.Id),
            Labels = record.Labels,
            SeedSource = record.SeedSource,
            SupervisorPid = live ? record.SupervisorPid : null,
            Accelerator = record.Accelerator,
        };
    }

    private IEnumerable<KeyValuePair<string, string>> OptionsAsEnvironment()
    {
        yield return new("PYRO_ENVIRONMENT_CACHE_DIR", options.EnvironmentCacheDir);
        yield return new("PYRO_RUNTIME_CACHE_DIR", options.RuntimeCacheDir);
        yield return new("PYRO_RUN_DIR", options.RunDir);
        yield return new("PYRO_AGENT_PATH", options.AgentPath);
        yield return new("PYRO_ACCEL", options.Accelerator.ToString().ToLowerInvariant());
        if (options.BootTimeout is { } boot)
        {
            yield return new("PYRO_BOOT_TIMEOUT_SECONDS", ((int)boot.TotalSeconds).ToString(CultureInfo.InvariantCulture));
        }
    }

    private static string DotnetHost()
    {
        var self = Environment.ProcessPath;
        if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            return self;
        }

        return Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
    }

    private static string Tail(string path)
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

    // ---- helpers ---------------------------------------------------------------------------

    /// <summary>A guest path under /workspace from a user path (relative or absolute). Confinement itself is enforced by the agent.</summary>
    internal static string GuestPath(string path)
    {
        if (string.IsNullOrWhiteSpace(path) || path == ".")
        {
            return GuestRoot;
        }

        var joined = path.StartsWith('/') ? path : GuestRoot + "/" + path;
        return joined.TrimEnd('/') is { Length: > 0 } trimmed ? trimmed : "/";
    }

    internal static void Validate(WorkspaceCreateRequest request, HostCapacity host)
    {
        if (request.VcpuCount is < 1 or > 32)
        {
            throw new PyroInputException("invalid_vcpu_count", $"--vcpu-count must be between 1 and 32 (got {request.VcpuCount})");
        }

        if (request.MemMib is < 128 or > 65536)
        {
            throw new PyroInputException("invalid_mem_mib", $"--mem-mib must be between 128 and 65536 MiB (got {request.MemMib})");
        }

        host.Check(request.VcpuCount, request.MemMib);

        if (request.TtlSeconds is < 10 or > 604800)
        {
            throw new PyroInputException("invalid_ttl", $"--ttl-seconds must be between 10 and 604800 (got {request.TtlSeconds})");
        }

        if (request.Name is { } name && (!NamePattern().IsMatch(name) || IdPattern().IsMatch(name)))
        {
            throw new PyroInputException("invalid_name", $"invalid workspace name '{name}': use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit, and not 12 hex digits (that is an id)");
        }

        foreach (var (key, _) in request.Labels ?? new Dictionary<string, string>())
        {
            if (!NamePattern().IsMatch(key))
            {
                throw new PyroInputException("invalid_label", $"invalid label key '{key}': use letters, digits, '.', '_' or '-'");
            }
        }

        if (request.SeedPath is { } seed && !Directory.Exists(seed) && !File.Exists(seed))
        {
            throw new PyroInputException("seed_not_found", $"--seed-path {seed} does not exist: give a directory or a .tar, .tar.gz or .tgz archive");
        }
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[0-9a-f]{12}$")]
    private static partial Regex IdPattern();
}
