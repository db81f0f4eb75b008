namespace PyroMcp;

/// <summary>A persistent workspace: one VM that outlives the calls that use it.</summary>
public sealed record WorkspaceInfo
{
    /// <summary>Stable identifier (12 hex digits).</summary>
    public required string WorkspaceId { get; init; }
    /// <summary>Optional unique name; usable wherever an id is.</summary>
    public string? Name { get; init; }
    /// <summary>Environment the workspace was created from.</summary>
    public required string Environment { get; init; }
    /// <summary>Where the workspace is in its life.</summary>
    public required WorkspaceState State { get; init; }
    /// <summary>Why the workspace is in its state, when that needs saying.</summary>
    public string? StateReason { get; init; }
    /// <summary>Virtual CPUs.</summary>
    public int VcpuCount { get; init; }
    /// <summary>Guest memory in MiB.</summary>
    public int MemMib { get; init; }
    /// <summary>Lifetime from creation; the supervisor deletes the workspace when it runs out.</summary>
    public int TtlSeconds { get; init; }
    /// <summary>When it was created (UTC).</summary>
    public DateTimeOffset CreatedAt { get; init; }
    /// <summary>When it expires (UTC).</summary>
    public DateTimeOffset ExpiresAt { get; init; }
    /// <summary>How many times it was reset.</summary>
    public int ResetCount { get; init; }
    /// <summary>Commands run so far (since the last reset).</summary>
    public int CommandCount { get; init; }
    /// <summary>Free-form labels.</summary>
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();
    /// <summary>Where the seed came from, if any.</summary>
    public string? SeedSource { get; init; }
    /// <summary>What seeded <c>/workspace</c>: <c>directory</c>, <c>archive</c> (.tar, .tar.gz, .tgz) or <c>empty</c> (no seed).</summary>
    public string SeedMode => SeedSource is null ? "empty" : Trees.HostTarBuilder.IsArchiveName(SeedSource) ? "archive" : "directory";
    /// <summary>The channel commands reach the guest through: always <see cref="ExecutionMode.Guest"/> (<c>guest_virtio_serial</c>).</summary>
    public ExecutionMode ExecutionMode { get; init; } = ExecutionMode.Guest;
    /// <summary>What the reset that returned this info restored (<see cref="Pyro.ResetWorkspaceAsync"/>); null from every other call.</summary>
    public WorkspaceResetInfo? Reset { get; init; }
    /// <summary>The workspace root in the guest.</summary>
    public string WorkspacePath { get; init; } = "/workspace";
    /// <summary>Process id of the supervisor, while one runs.</summary>
    public int? SupervisorPid { get; init; }
    /// <summary>Accelerator the VM runs under.</summary>
    public Accelerator? Accelerator { get; init; }
    /// <summary>The guest's network policy; kept across stop, start and reset.</summary>
    public NetworkPolicy NetworkPolicy { get; init; }
    /// <summary>Address, gateway and DNS the running guest got at boot; null without a network or while not running.</summary>
    public GuestNetwork? Network { get; init; }
    /// <summary>Why a guest that should have a network has none, while it runs.</summary>
    public string? NetworkError { get; init; }
    /// <summary>Guest ports published on the host's 127.0.0.1; released on stop, reset, delete and crash.</summary>
    public IReadOnlyList<PublishedPort> PublishedPorts { get; init; } = [];
    /// <summary>Services the guest knows (running or not), when the status asked the running guest; null otherwise.</summary>
    public int? ServiceCount { get; init; }
    /// <summary>Services running, when the status asked the running guest; null otherwise.</summary>
    public int? RunningServices { get; init; }
    /// <summary>Shells open, when the status asked the running guest; null otherwise.</summary>
    public int? OpenShells { get; init; }
    /// <summary>The names of the workspace's secrets (never their values), sorted.</summary>
    public IReadOnlyList<string> Secrets { get; init; } = [];
    /// <summary>
    /// How the running VM came up: <c>warm</c> (restored from the environment's template), <c>fork</c>
    /// (restored from another workspace's memory) or <c>cold</c> (booted); null while not running.
    /// </summary>
    public string? StartMode { get; init; }
    /// <summary>Why the running VM was booted although a warm start was wanted; null otherwise.</summary>
    public string? ColdStartReason { get; init; }
}

/// <summary>One command of a workspace's history.</summary>
/// <param name="Sequence">1, 2, 3... per workspace, restarting after a reset.</param>
/// <param name="Command">The command as given.</param>
/// <param name="Cwd">Working directory in the guest.</param>
/// <param name="ExitCode">Exit code.</param>
/// <param name="DurationMs">Wall time of the command.</param>
/// <param name="StartedAt">When it started (UTC).</param>
public sealed record CommandRecord(int Sequence, string Command, string Cwd, int ExitCode, long DurationMs, DateTimeOffset StartedAt);

/// <summary>A named checkpoint of a workspace's <c>/workspace</c> tree.</summary>
/// <param name="Name">Its name.</param>
/// <param name="CreatedAt">When it was taken.</param>
/// <param name="Entries">Entries in the tree.</param>
/// <param name="Bytes">Bytes of file content.</param>
public sealed record SnapshotInfo(string Name, DateTimeOffset CreatedAt, long Entries, long Bytes)
{
    /// <summary>Always <c>named</c>: the create-time <c>baseline</c> is not a snapshot of this list (reset and diff name it <c>baseline</c>).</summary>
    public string Kind => "named";
}

/// <summary>What a reset restored into <c>/workspace</c> (<see cref="WorkspaceInfo.Reset"/>).</summary>
public sealed record WorkspaceResetInfo
{
    /// <summary>The snapshot restored: <c>baseline</c> or a snapshot's name.</summary>
    public required string Snapshot { get; init; }
    /// <summary><c>baseline</c> (the create-time tree) or <c>named</c> (a snapshot).</summary>
    public required string Kind { get; init; }
    /// <summary>Where the tree was restored: <c>/workspace</c>.</summary>
    public string Destination { get; init; } = "/workspace";
    /// <summary>Entries restored.</summary>
    public long Entries { get; init; }
    /// <summary>Bytes of file content restored.</summary>
    public long Bytes { get; init; }
}

/// <summary>What a fork made (<see cref="Pyro.ForkWorkspaceAsync"/>).</summary>
public sealed record WorkspaceForkResult
{
    /// <summary>The workspace the copies were made from.</summary>
    public required string SourceWorkspaceId { get; init; }
    /// <summary>The new workspaces, in order (named <c>PREFIX-1</c>, <c>PREFIX-2</c>... when a prefix was given).</summary>
    public required IReadOnlyList<WorkspaceInfo> Workspaces { get; init; }
    /// <summary>Milliseconds the whole fork took: the source's save and every copy's restore and baseline.</summary>
    public long DurationMs { get; init; }
}
