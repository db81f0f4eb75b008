using System.Diagnostics;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Protocol;
using PyroMcp.Protocol.Secrets;
using PyroMcp.Secrets;
using PyroMcp.Vmm;

namespace PyroMcp.Workspaces;

/// <summary>
/// The SDK's door to workspaces: finds a workspace (repairing what a crash left, on the way) and
/// hands the work to the room that owns it: <see cref="WorkspaceLifecycle"/> for state changes,
/// the file and tree operations in WorkspaceManager.Files.cs, the exec pipeline for commands.
/// Each call is independent: state lives in the store and the supervisors.
/// </summary>
internal sealed partial class WorkspaceManager
{
    internal const string GuestRoot = "/workspace";
    internal const string BaselineFile = "baseline.tar";
    internal const string SnapshotsDir = "snapshots";

    private readonly PyroOptions options;
    private readonly EnvironmentStore environments;
    private WorkspaceStore? _store;
    private SupervisorLauncher? _supervisors;
    private WorkspaceLifecycle? _lifecycle;

    internal WorkspaceManager(PyroOptions options, EnvironmentStore environments)
    {
        this.options = options;
        this.environments = environments;
    }

    internal WorkspaceStore Store => _store ??= new WorkspaceStore(options.StateDir);

    internal SupervisorLauncher Supervisors => _supervisors ??= new(options, Store);

    internal WorkspaceLifecycle Lifecycle => _lifecycle ??= new WorkspaceLifecycle(options, environments, Store, Supervisors);

    /// <summary>The workspace by id or name, repaired first if a crashed process left its row wrong.</summary>
    internal async Task<WorkspaceRecord> GetAsync(string idOrName, CancellationToken cancellationToken)
    {
        var record = Store.Get(idOrName);
        return await Lifecycle.ReconcileAsync(record, cancellationToken).ConfigureAwait(false)
            ?? throw new PyroInputException("workspace_not_found", $"no workspace '{idOrName}': list the workspaces to see which exist");
    }

    // ---- lifecycle ---------------------------------------------------------------------------

    internal async Task<WorkspaceInfo> CreateAsync(WorkspaceCreateRequest request, CancellationToken cancellationToken)
    {
        EnvironmentCatalog.Resolve(request.Environment, options);
        Validate(request, HostCapacity.Current);
        // Checked here too, before an environment is pulled or built, so a full host says so at once.
        Lifecycle.EnsureRoom(Store.List().Count);
        try
        {
            return ToInfo(await Lifecycle.CreateAsync(request, cancellationToken).ConfigureAwait(false));
        }
        catch (PyroException ex) when (RedactCreateError(request, ex))
        {
            throw;
        }
    }

    /// <summary>A failed create quotes its guest (a seed error, a boot log): the request's own secrets are redacted from it.</summary>
    private static bool RedactCreateError(WorkspaceCreateRequest request, PyroException ex)
    {
        if (request.Secrets is { Count: > 0 } && ex.Code is not ("secret_name_invalid" or "secret_duplicate" or "secret_invalid" or "secret_value_invalid" or "secret_file_not_found" or "secret_limit"))
        {
            try
            {
                ex.RedactWith(new SecretRedactor(SecretStore.Resolve(request.Secrets)));
            }
            catch (PyroInputException)
            {
                // The secrets themselves were wrong: that error names no value.
            }
        }

        return false;
    }

    internal async Task<WorkspaceForkResult> ForkAsync(string idOrName, WorkspaceForkRequest request, CancellationToken cancellationToken)
    {
        WorkspaceLifecycle.ValidateFork(request);
        var source = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var copies = await Lifecycle.ForkAsync(source.Id, request, cancellationToken).ConfigureAwait(false);
        return new WorkspaceForkResult { SourceWorkspaceId = source.Id, Workspaces = [.. copies.Select(ToInfo)], DurationMs = clock.ElapsedMilliseconds };
    }

    internal async Task<WorkspaceInfo> StatusAsync(string idOrName, CancellationToken cancellationToken)
    {
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var info = ToInfo(record);
        // Only a running guest knows its services and shells; the list of workspaces does not ask each one.
        return info.State == WorkspaceState.Running && await SessionCountsAsync(record, cancellationToken).ConfigureAwait(false) is { } counts
            ? info with { ServiceCount = counts.Services, RunningServices = counts.Running, OpenShells = counts.Shells }
            : info;
    }

    internal async Task<CappedList<WorkspaceInfo>> ListAsync(IReadOnlyDictionary<string, string>? labels, CancellationToken cancellationToken)
    {
        var records = new List<WorkspaceRecord>();
        foreach (var stored in Store.List())
        {
            if (await Lifecycle.ReconcileAsync(stored, cancellationToken).ConfigureAwait(false) is { } record)
            {
                records.Add(record);
            }
        }

        // The rows that exist now are the ones just read and repaired; SweepOrphans checks each stray again under its lock.
        Lifecycle.SweepOrphans(records.Select(r => r.Id).ToHashSet(StringComparer.Ordinal));
        var matching = records.Where(r => labels is null || labels.All(l => r.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).ToList();
        var kept = CappedList<WorkspaceRecord>.Take(matching, options.MaxListEntries);
        return new CappedList<WorkspaceInfo>(kept.Select(ToInfo).ToList(), kept.TotalCount);
    }

    internal Task InsertWithinLimitAsync(WorkspaceRecord record, CancellationToken cancellationToken)
        => Lifecycle.InsertWithinLimitAsync(record, cancellationToken);

    internal async Task<bool> DeleteAsync(string idOrName, CancellationToken cancellationToken)
    {
        var record = Store.Get(idOrName);
        return await Lifecycle.DeleteAsync(record.Id, cancellationToken).ConfigureAwait(false);
    }

    internal async Task<WorkspaceInfo> StopAsync(string idOrName, CancellationToken cancellationToken)
        => ToInfo(await Lifecycle.StopAsync(Store.Get(idOrName).Id, cancellationToken).ConfigureAwait(false));

    internal async Task<WorkspaceInfo> StartAsync(string idOrName, CancellationToken cancellationToken)
        => ToInfo(await Lifecycle.StartAsync(Store.Get(idOrName).Id, cancellationToken).ConfigureAwait(false));

    internal async Task<WorkspaceInfo> ResetAsync(string idOrName, string? snapshot, CancellationToken cancellationToken)
    {
        var (record, restored) = await Lifecycle.ResetAsync(Store.Get(idOrName).Id, snapshot, cancellationToken).ConfigureAwait(false);
        return ToInfo(record) with { Reset = restored };
    }

    /// <summary>Deletes every workspace past its TTL: those whose supervisor is gone included.</summary>
    internal async Task<IReadOnlyList<string>> ReapExpiredAsync(CancellationToken cancellationToken)
    {
        var reaped = new List<string>();
        foreach (var record in Store.List().Where(r => r.ExpiresAt <= DateTimeOffset.UtcNow))
        {
            if (await Lifecycle.DeleteAsync(record.Id, cancellationToken).ConfigureAwait(false))
            {
                reaped.Add(record.Id);
            }
        }

        return reaped;
    }

    // ---- commands --------------------------------------------------------------------------

    internal async Task<WorkspaceExecResult> ExecAsync(string idOrName, WorkspaceExecRequest request, CancellationToken cancellationToken)
    {
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var secretEnv = SecretEnvFor(record, request.SecretEnv, request.Env, nameof(WorkspaceExecRequest.SecretEnv));
        var redactor = RedactorFor(record.Id);
        var (onStdout, flushStdout) = RedactedCallback(redactor, request.OnStdout);
        var (onStderr, flushStderr) = RedactedCallback(redactor, request.OnStderr);
        // The command runs in the workspace's VM: sizes were checked when it was created.
        var plan = Execution.ExecPipeline.Plan(new RunRequest
        {
            Environment = record.Environment,
            Command = request.Command,
            TimeoutSeconds = request.TimeoutSeconds,
            Env = request.Env,
            OnStdout = onStdout,
            OnStderr = onStderr,
        }, host: null);
        var cwd = GuestPath(request.Cwd ?? GuestRoot);
        var started = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();
        var connection = await ConnectAsync(record, cancellationToken).ConfigureAwait(false);
        await using var connectionScope = connection.ConfigureAwait(false);
        var output = await Execution.ExecPipeline.ExecuteAsync(connection.Agent, plan, cwd, options.MaxOutputBytes, cancellationToken, secretEnv).ConfigureAwait(false);
        await flushStdout().ConfigureAwait(false);
        await flushStderr().ConfigureAwait(false);
        var durationMs = clock.ElapsedMilliseconds;
        // The history is in the database: a value typed into a command line is stored redacted.
        var commandText = redactor.Redact(plan.CommandText);
        var sequence = Store.AppendCommand(record.Id, commandText, redactor.Redact(cwd), output.Exit.ExitCode, durationMs, started);
        return Redacted(redactor, output.Complete(new WorkspaceExecResult { WorkspaceId = record.Id, Sequence = sequence, Command = commandText, Cwd = cwd }, durationMs));
    }

    internal async Task<CappedList<CommandRecord>> LogsAsync(string idOrName, CancellationToken cancellationToken)
    {
        var id = (await GetAsync(idOrName, cancellationToken).ConfigureAwait(false)).Id;
        // Count first: a command appended between the two reads makes the total one short, never the list wrong.
        var total = Store.CommandCount(id);
        var redactor = RedactorFor(id);
        return new CappedList<CommandRecord>([.. Store.Commands(id, options.MaxListEntries).Select(c => Redacted(redactor, c))], total);
    }

    /// <summary>A client connection to a running workspace's supervisor.</summary>
    internal sealed class Connection(GuestAgentClient agent) : IAsyncDisposable
    {
        internal GuestAgentClient Agent { get; } = agent;

        public ValueTask DisposeAsync() => Agent.DisposeAsync();
    }

    /// <summary>A connection for clients: only to a running workspace whose supervisor lives.</summary>
    private async Task<Connection> ConnectAsync(WorkspaceRecord record, CancellationToken cancellationToken)
    {
        var info = ToInfo(record);
        if (info.State != WorkspaceState.Running)
        {
            var hint = info.State switch
            {
                WorkspaceState.Stopped or WorkspaceState.Crashed => "start it, or delete it",
                WorkspaceState.Failed => "reset it, or delete it",
                _ => "wait for it, or look at its status",
            };
            throw new WorkspaceStateException("workspace_not_running", $"workspace {record.Id} is {info.State.ToName()}{(info.StateReason is null ? "" : $" ({info.StateReason})")}: {hint}");
        }

        return await ConnectToSupervisorAsync(Store, record.Id, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A connection to the supervisor whatever the state (create and reset use it before the workspace is running).</summary>
    internal static async Task<Connection> ConnectToSupervisorAsync(WorkspaceStore store, string id, CancellationToken cancellationToken)
    {
        var socket = Path.Combine(store.WorkspaceDir(id), WorkspaceSupervisor.SocketName);
        try
        {
            return new Connection(await GuestAgentClient.ConnectAsync(socket, cancellationToken).ConfigureAwait(false));
        }
        catch (SocketException ex)
        {
            throw new GuestChannelException("supervisor_unreachable", $"cannot reach the supervisor of workspace {id}: {ex.Message}; its status shows its state");
        }
    }

    private WorkspaceInfo ToInfo(WorkspaceRecord record)
    {
        var state = record.State;
        var reason = record.StateReason;
        var live = Supervisors.IsAlive(record.Id);
        if (state == WorkspaceState.Running && !live)
        {
            // The row says it runs, but its supervisor is gone (kill -9, host crash) and the repair
            // could not run yet (an operation holds the workspace): say what is real.
            state = WorkspaceState.Crashed;
            reason = WorkspaceLifecycle.CrashedReason(record);
        }

        var secrets = SecretStore.Read(Store.WorkspaceDir(record.Id));
        var info = new WorkspaceInfo
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
            Accelerator = record.Accelerator is { } accelerator ? PyroOptions.ParseAccelerator(accelerator) : null,
            NetworkPolicy = record.NetworkPolicy,
            Network = state == WorkspaceState.Running ? record.GuestNetwork : null,
            NetworkError = state == WorkspaceState.Running ? record.NetworkError : null,
            PublishedPorts = state == WorkspaceState.Running ? record.PublishedPorts : [],
            Secrets = secrets.Keys.Order(StringComparer.Ordinal).ToList(),
            StartMode = state == WorkspaceState.Running ? record.StartMode : null,
            ColdStartReason = state == WorkspaceState.Running ? record.ColdStartReason : null,
        };
        return Redacted(secrets.Count == 0 ? SecretRedactor.None : new SecretRedactor(secrets), info);
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
            throw new PyroInputException("invalid_vcpu_count", $"the vCPU count must be between 1 and 32 (got {request.VcpuCount})", nameof(WorkspaceCreateRequest.VcpuCount));
        }

        if (request.MemMib is < 128 or > 65536)
        {
            throw new PyroInputException("invalid_mem_mib", $"guest memory must be between 128 and 65536 MiB (got {request.MemMib})", nameof(WorkspaceCreateRequest.MemMib));
        }

        if (!Enum.IsDefined(request.NetworkPolicy))
        {
            throw new PyroInputException("network_policy_invalid", $"unknown network policy value {(int)request.NetworkPolicy}: use Off, Egress or EgressPublishedPorts", nameof(WorkspaceCreateRequest.NetworkPolicy));
        }

        host.Check(request.VcpuCount, request.MemMib);

        if (request.TtlSeconds is < 10 or > 604800)
        {
            throw new PyroInputException("invalid_ttl", $"the time to live must be between 10 and 604800 seconds (got {request.TtlSeconds})", nameof(WorkspaceCreateRequest.TtlSeconds));
        }

        if (request.Name is { } name && (!NamePattern().IsMatch(name) || IdPattern().IsMatch(name)))
        {
            throw new PyroInputException("invalid_name", $"invalid workspace name '{name}': use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit, and not 12 hex digits (that is an id)", nameof(WorkspaceCreateRequest.Name));
        }

        foreach (var (key, _) in request.Labels ?? new Dictionary<string, string>())
        {
            if (!NamePattern().IsMatch(key))
            {
                throw new PyroInputException("invalid_label", $"invalid label key '{key}': use letters, digits, '.', '_' or '-'", nameof(WorkspaceCreateRequest.Labels));
            }
        }

        if (request.SeedPath is { } seed && !Directory.Exists(seed) && !File.Exists(seed))
        {
            throw new PyroInputException("seed_not_found", $"the seed path {seed} does not exist: give a directory or a .tar, .tar.gz or .tgz archive", nameof(WorkspaceCreateRequest.SeedPath));
        }
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    private static partial Regex NamePattern();

    /// <summary>Whether <paramref name="name"/> may name a workspace (what <see cref="Validate"/> accepts).</summary>
    internal static bool IsValidName(string name) => NamePattern().IsMatch(name) && !IdPattern().IsMatch(name);

    [GeneratedRegex("^[0-9a-f]{12}$")]
    private static partial Regex IdPattern();
}
