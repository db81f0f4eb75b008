namespace PyroMcp;

/// <summary>
/// How pyro tells a service is ready, checked inside the guest by the agent every
/// <see cref="ServiceStartRequest.ReadyIntervalMs"/> until <see cref="ServiceStartRequest.ReadyTimeoutSeconds"/>.
/// </summary>
/// <param name="Type"><c>file</c>, <c>tcp</c>, <c>http</c> or <c>command</c>.</param>
/// <param name="Target">
/// file: a path (relative to the service's cwd) that must exist; tcp: <c>HOST:PORT</c> that must
/// accept a connection; http: an <c>http://</c> URL that must answer 2xx or 3xx; command: a shell
/// command that must exit 0.
/// </param>
public sealed record ServiceReadiness(string Type, string Target)
{
    /// <summary>Ready once <paramref name="path"/> exists.</summary>
    public static ServiceReadiness File(string path) => new("file", path);
    /// <summary>Ready once <paramref name="hostPort"/> (HOST:PORT in the guest) accepts a connection.</summary>
    public static ServiceReadiness Tcp(string hostPort) => new("tcp", hostPort);
    /// <summary>Ready once <paramref name="url"/> answers 2xx or 3xx.</summary>
    public static ServiceReadiness Http(string url) => new("http", url);
    /// <summary>Ready once <paramref name="command"/> exits 0.</summary>
    public static ServiceReadiness Command(string command) => new("command", command);

    /// <summary>The probe as <c>http http://127.0.0.1:8080/</c>.</summary>
    public override string ToString() => Type + " " + Target;
}

/// <summary>A long-running process to start in a workspace.</summary>
public sealed record ServiceStartRequest
{
    /// <summary>Unique name in the workspace: letters, digits, <c>.</c>, <c>_</c>, <c>-</c>, at most 64, starting with a letter or digit.</summary>
    public required string Name { get; init; }
    /// <summary>The command line, run by <c>/bin/sh -c</c> in its own process group.</summary>
    public required string Command { get; init; }
    /// <summary>Working directory in the guest; relative paths are under <c>/workspace</c>.</summary>
    public string Cwd { get; init; } = "/workspace";
    /// <summary>The readiness probe; null means ready as soon as it started.</summary>
    public ServiceReadiness? Readiness { get; init; }
    /// <summary>How long readiness may take (1 to 600 s).</summary>
    public int ReadyTimeoutSeconds { get; init; } = 30;
    /// <summary>Time between probes (50 to 60,000 ms).</summary>
    public int ReadyIntervalMs { get; init; } = 500;
    /// <summary>Guest ports to publish on the host's 127.0.0.1 while the service runs: <c>GUEST_PORT</c> or <c>HOST_PORT:GUEST_PORT</c>. Needs network policy egress+published-ports.</summary>
    public IReadOnlyList<string> Publish { get; init; } = [];
    /// <summary>Environment variables for the service, added to the guest's base environment.</summary>
    public IReadOnlyDictionary<string, string>? Env { get; init; }
    /// <summary>
    /// Workspace secrets to put in this service's environment: secret name to environment variable
    /// name (the same name when the value is empty or null). Only this service sees them; nothing
    /// of the mapping is stored.
    /// </summary>
    public IReadOnlyDictionary<string, string?>? SecretEnv { get; init; }
}

/// <summary>A service of a workspace.</summary>
public sealed record WorkspaceService
{
    /// <summary>The workspace.</summary>
    public required string WorkspaceId { get; init; }
    /// <summary>The service's name.</summary>
    public required string Name { get; init; }
    /// <summary><c>running</c>; <c>exited</c> (it ended by itself: see <see cref="ExitCode"/>); <c>stopped</c> (by request, or by the workspace stopping); <c>failed</c> (it never became ready and was stopped).</summary>
    public required string State { get; init; }
    /// <summary>The command line.</summary>
    public required string Command { get; init; }
    /// <summary>Working directory in the guest.</summary>
    public required string Cwd { get; init; }
    /// <summary>The readiness probe, when there is one.</summary>
    public ServiceReadiness? Readiness { get; init; }
    /// <summary>Its process group in the guest while it runs.</summary>
    public int? Pid { get; init; }
    /// <summary>Exit status once it ended (128+N after signal N).</summary>
    public int? ExitCode { get; init; }
    /// <summary>When it started (guest clock, set from the host's at boot).</summary>
    public DateTimeOffset? StartedAt { get; init; }
    /// <summary>When it ended.</summary>
    public DateTimeOffset? EndedAt { get; init; }
    /// <summary>Why it is not running, when it is not.</summary>
    public string? Reason { get; init; }
    /// <summary>What the last readiness probe saw.</summary>
    public string? LastProbe { get; init; }
    /// <summary>Host ports that follow this service: published while it runs, released when it stops, exits or fails.</summary>
    public IReadOnlyList<PublishedPort> PublishedPorts { get; init; } = [];
}

/// <summary>The services of a workspace.</summary>
public sealed record WorkspaceServiceList
{
    /// <summary>The workspace.</summary>
    public required string WorkspaceId { get; init; }
    /// <summary>Every service, running or not, oldest first.</summary>
    public required IReadOnlyList<WorkspaceService> Services { get; init; }
    /// <summary>How many are running.</summary>
    public int Running => Services.Count(s => s.State == "running");
}

/// <summary>The last lines of a service's output.</summary>
public sealed record WorkspaceServiceLogs
{
    /// <summary>The service.</summary>
    public required WorkspaceService Service { get; init; }
    /// <summary>Last lines of stdout.</summary>
    public required string Stdout { get; init; }
    /// <summary>Last lines of stderr.</summary>
    public required string Stderr { get; init; }
    /// <summary>Lines asked for, per stream.</summary>
    public int TailLines { get; init; }
    /// <summary>Older output exists that is not shown (left out of the tail, or rotated away).</summary>
    public bool Truncated { get; init; }
}
