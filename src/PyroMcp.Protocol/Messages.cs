using System.Text.Json;
using System.Text.Json.Serialization;

namespace PyroMcp.Protocol;

/// <summary>Operations the guest agent understands.</summary>
public static class AgentOps
{
    /// <summary>First request on a channel: sets the guest clock and returns what the guest is.</summary>
    public const string Hello = "hello";
    /// <summary>Runs one command.</summary>
    public const string Exec = "exec";
    /// <summary>Flushes disks and powers the guest off.</summary>
    public const string Shutdown = "shutdown";
    /// <summary>Lists a directory under the workspace root.</summary>
    public const string FilesList = "files.list";
    /// <summary>Streams a file's bytes as stdout frames.</summary>
    public const string FilesRead = "files.read";
    /// <summary>Writes stdin frames to a file.</summary>
    public const string FilesWrite = "files.write";
    /// <summary>Deletes a file, link or (recursively) a directory.</summary>
    public const string FilesDelete = "files.delete";
    /// <summary>Streams a tar of a path as stdout frames.</summary>
    public const string TarOut = "tar.out";
    /// <summary>Extracts a tar arriving as stdin frames, confined to the workspace root.</summary>
    public const string TarIn = "tar.in";
    /// <summary>Flushes guest file systems to disk (sync).</summary>
    public const string Sync = "sync";
    /// <summary>
    /// Opens a TCP connection to 127.0.0.1:<see cref="TcpConnectRequest.Port"/> in the guest and
    /// copies bytes both ways: Stdin frames go to the guest socket and StdinEnd shuts down its
    /// sending side; the guest socket's bytes come back as Stdout frames, and an empty Stdout frame
    /// says the guest side finished sending. The Result (a <see cref="TcpSummary"/>) follows once
    /// both directions are done; an Error ends it early (<c>connection_refused</c> when nothing
    /// listens, <c>connection_reset</c>). Cancel closes the socket.
    /// </summary>
    public const string TcpConnect = "tcp.connect";

    /// <summary>
    /// Starts a named service (<c>/bin/sh -c</c> command in its own session and process group,
    /// supervised by the agent) and waits for its readiness probe. Result: the service
    /// (<see cref="AgentResponse.Service"/>). Errors: <c>service_not_ready</c> (probe never passed
    /// in time; the service is stopped), <c>service_exited</c> (it exited before it was ready),
    /// <c>service_exists</c> (a service of that name is running), <c>service_limit</c>,
    /// <c>service_name_invalid</c>, <c>cwd_not_found</c>, <c>readiness_invalid</c>, <c>bad_env</c>,
    /// <c>bad_request</c> (a timeout out of range), <c>spawn_failed</c>. Cancel stops the service if it
    /// is not ready yet (state <c>failed</c>) and ends the stream with <c>cancelled</c>.
    /// </summary>
    public const string ServiceStart = "service.start";
    /// <summary>Every service the agent knows, running or not (<see cref="AgentResponse.Services"/>); commands longer than 1,024 characters are clipped (service.status has them whole).</summary>
    public const string ServiceList = "service.list";
    /// <summary>One service (<see cref="AgentResponse.Service"/>); <c>service_not_found</c> when unknown.</summary>
    public const string ServiceStatus = "service.status";
    /// <summary>One service and the last <see cref="ServiceRequest.TailLines"/> lines of its stdout and stderr (<see cref="AgentResponse.ServiceLogs"/>).</summary>
    public const string ServiceLogs = "service.logs";
    /// <summary>Stops a service: TERM to its process group, KILL after <see cref="ServiceRequest.StopGraceMs"/>. Stopping a service that is not running returns it as it is.</summary>
    public const string ServiceStop = "service.stop";

    /// <summary>Opens a shell on a new PTY (<see cref="AgentResponse.Shell"/>); <c>shell_limit</c> when too many are open, <c>shell_size_invalid</c>, <c>cwd_not_found</c>, <c>bad_env</c>, <c>shell_failed</c>.</summary>
    public const string ShellOpen = "shell.open";
    /// <summary>Writes <see cref="ShellRequest.Input"/> to a shell's PTY; <c>shell_not_found</c>, <c>shell_closed</c>, <c>shell_input_too_large</c>, <c>shell_input_blocked</c> (the terminal took no more input for 10 s).</summary>
    public const string ShellWrite = "shell.write";
    /// <summary>Reads a shell's output from <see cref="ShellRequest.Cursor"/> (<see cref="AgentResponse.ShellOutput"/>).</summary>
    public const string ShellRead = "shell.read";
    /// <summary>Signals the PTY's foreground process group (as a terminal's Ctrl-C does); <c>signal_invalid</c> for an unknown name.</summary>
    public const string ShellSignal = "shell.signal";
    /// <summary>Closes a shell: HUP then KILL to its session, and forgets it.</summary>
    public const string ShellClose = "shell.close";
    /// <summary>The open shells (<see cref="AgentResponse.Shells"/>).</summary>
    public const string ShellList = "shell.list";

    /// <summary>
    /// Replaces the workspace's secrets (<see cref="AgentRequest.Secrets"/>): each becomes a file
    /// <c>/run/pyro-secrets/NAME</c>, mode 0400, on a tmpfs of its own (never on the disk); names not
    /// in the set are removed. The supervisor sends it after every boot, before any client is let
    /// in. Errors: <c>secret_invalid</c>, <c>secret_store_failed</c>.
    /// </summary>
    public const string SecretsPut = "secrets.put";
}

/// <summary>The JSON payload of a <see cref="FrameType.Request"/> frame.</summary>
public sealed record AgentRequest
{
    /// <summary>One of <see cref="AgentOps"/>.</summary>
    public required string Op { get; init; }
    /// <summary>Set when <see cref="Op"/> is <see cref="AgentOps.Hello"/>.</summary>
    public HelloRequest? Hello { get; init; }
    /// <summary>Set when <see cref="Op"/> is <see cref="AgentOps.Exec"/>.</summary>
    public ExecRequest? Exec { get; init; }
    /// <summary>Set for the <c>files.*</c> operations.</summary>
    public FilesRequest? Files { get; init; }
    /// <summary>Set for <see cref="AgentOps.TarOut"/> and <see cref="AgentOps.TarIn"/>.</summary>
    public TarRequest? Tar { get; init; }
    /// <summary>Set when <see cref="Op"/> is <see cref="AgentOps.TcpConnect"/>.</summary>
    public TcpConnectRequest? Tcp { get; init; }
    /// <summary>Set for the <c>service.*</c> operations.</summary>
    public ServiceRequest? Service { get; init; }
    /// <summary>Set for the <c>shell.*</c> operations.</summary>
    public ShellRequest? Shell { get; init; }
    /// <summary>
    /// The host will acknowledge this stream's Stdout frames with <see cref="FrameType.Ack"/>: the
    /// agent keeps at most <see cref="TcpConnectRequest.WindowBytes"/> unacknowledged. tar.out and
    /// files.read ask for it, so a reader that falls behind (a slow disk, a relay under load) slows the
    /// guest instead of overflowing the buffers between them.
    /// </summary>
    public bool Windowed { get; init; }
    /// <summary>Body of the supervisor's own port operations (publish, unpublish); never relayed to the guest.</summary>
    public PortMapping? Port { get; init; }
    /// <summary>Set when <see cref="Op"/> is <see cref="AgentOps.SecretsPut"/>: secret name to value.</summary>
    public IReadOnlyDictionary<string, string>? Secrets { get; init; }

    /// <summary>Never prints secret values (records print every member by default).</summary>
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("Op = ").Append(Op);
        if (Secrets is not null)
        {
            builder.Append(", Secrets = [").Append(string.Join(", ", Secrets.Keys)).Append(']');
        }

        return true;
    }
}

/// <summary>The JSON payload of a <see cref="FrameType.Result"/> frame.</summary>
public sealed record AgentResponse
{
    /// <summary>Reply to <see cref="AgentOps.Hello"/>.</summary>
    public HelloReply? Hello { get; init; }
    /// <summary>Reply to <see cref="AgentOps.Exec"/>.</summary>
    public ExecExit? Exec { get; init; }
    /// <summary>Reply to <see cref="AgentOps.FilesList"/>.</summary>
    public FileListing? Listing { get; init; }
    /// <summary>Reply to <see cref="AgentOps.FilesRead"/>, <see cref="AgentOps.FilesWrite"/>, <see cref="AgentOps.FilesDelete"/>.</summary>
    public FileEntry? File { get; init; }
    /// <summary>Reply to <see cref="AgentOps.TarOut"/> and <see cref="AgentOps.TarIn"/>.</summary>
    public TarSummary? Tar { get; init; }
    /// <summary>Reply to <see cref="AgentOps.TcpConnect"/>.</summary>
    public TcpSummary? Tcp { get; init; }
    /// <summary>The ports a supervisor publishes after a port operation.</summary>
    public IReadOnlyList<PortMapping>? Ports { get; init; }
    /// <summary>Reply to service.start, service.status, service.stop.</summary>
    public ServiceInfo? Service { get; init; }
    /// <summary>Reply to service.list, oldest first.</summary>
    public IReadOnlyList<ServiceInfo>? Services { get; init; }
    /// <summary>Reply to service.logs.</summary>
    public ServiceLogTail? ServiceLogs { get; init; }
    /// <summary>Reply to shell.open, shell.write, shell.signal, shell.close.</summary>
    public ShellInfo? Shell { get; init; }
    /// <summary>Reply to shell.list, oldest first.</summary>
    public IReadOnlyList<ShellInfo>? Shells { get; init; }
    /// <summary>Reply to shell.read.</summary>
    public ShellOutput? ShellOutput { get; init; }
}

/// <summary>The JSON payload of an <see cref="FrameType.Error"/> frame.</summary>
public sealed record AgentError(string Code, string Message);

/// <summary>Host facts the guest takes on at start.</summary>
public sealed record HelloRequest
{
    /// <summary>Host wall clock in milliseconds since the Unix epoch.</summary>
    public long UnixTimeMs { get; init; }
    /// <summary>
    /// Set when the guest was restored from a memory image rather than booted: everything it
    /// shares with every other VM restored from the same image and must not.
    /// </summary>
    public ResumeRequest? Resume { get; init; }
}

/// <summary>What makes a restored guest this VM and no other (see docs/architecture.md, "Templates").</summary>
public sealed record ResumeRequest
{
    /// <summary>The guest's host name (pyro-ID).</summary>
    public required string Hostname { get; init; }
    /// <summary>Host random bytes (base64, 32 to 512 bytes) mixed into the guest kernel's pool, which is then reseeded.</summary>
    public required string Entropy { get; init; }
    /// <summary>A fresh /etc/machine-id (32 lowercase hex digits), written where the root has one.</summary>
    public string? MachineId { get; init; }
    /// <summary>Ask passt for a new DHCP lease on eth0 (the host's addresses may differ from the image's).</summary>
    public bool RefreshNetwork { get; init; }
}

/// <summary>What the guest reports about itself.</summary>
public sealed record HelloReply
{
    /// <summary>Version of the agent binary.</summary>
    public required string AgentVersion { get; init; }
    /// <summary><c>uname -r</c> of the guest kernel.</summary>
    public required string KernelRelease { get; init; }
    /// <summary>PRETTY_NAME from the guest's /etc/os-release.</summary>
    public string? OsPrettyName { get; init; }
    /// <summary>Why the clock could not be set, when it could not.</summary>
    public string? ClockError { get; init; }
    /// <summary>The network the guest was given at boot (DHCP from passt), or null when it has no network device.</summary>
    public GuestNetworkReply? Network { get; init; }
    /// <summary>Milliseconds since the guest kernel started, when the agent answered hello (/proc/uptime); null if unreadable.</summary>
    public long? UptimeMs { get; init; }
    /// <summary>Milliseconds since the guest kernel started, when PID 1 (the init) started (/proc/1/stat); null if unreadable.</summary>
    public long? InitStartMs { get; init; }
    /// <summary>Milliseconds since the guest kernel started, when the agent process started (/proc/self/stat); null if unreadable.</summary>
    public long? AgentStartMs { get; init; }
    /// <summary>Set when the hello carried a <see cref="ResumeRequest"/> and the guest took all of it: its RNG was reseeded from the host's bytes.</summary>
    public bool Resumed { get; init; }
}

/// <summary>What the guest's init recorded of its DHCP lease. Claims of a guest: the host checks every field.</summary>
public sealed record GuestNetworkReply
{
    /// <summary>IPv4 address of eth0.</summary>
    public string? Address { get; init; }
    /// <summary>Prefix length of the address.</summary>
    public int PrefixLength { get; init; }
    /// <summary>Default gateway.</summary>
    public string? Gateway { get; init; }
    /// <summary>Name servers, as the lease gave them.</summary>
    public IReadOnlyList<string>? Dns { get; init; }
    /// <summary>Why the guest has no address, when it has none.</summary>
    public string? Error { get; init; }
}

/// <summary>One command to run in the guest. Exactly one of <see cref="Argv"/> and <see cref="Shell"/> is set.</summary>
public sealed record ExecRequest
{
    /// <summary>Program and arguments, run without a shell; the program is looked up in PATH.</summary>
    public IReadOnlyList<string>? Argv { get; init; }
    /// <summary>A command line for <c>/bin/sh -c</c>.</summary>
    public string? Shell { get; init; }
    /// <summary>Working directory in the guest; <c>/</c> when unset.</summary>
    public string? Cwd { get; init; }
    /// <summary>Variables added to (or replacing those of) the agent's base environment.</summary>
    public IReadOnlyDictionary<string, string>? Env { get; init; }
    /// <summary>
    /// Secrets to put in the environment of this one process: environment variable name to secret
    /// name. The agent takes the values from the secrets it holds (<see cref="AgentOps.SecretsPut"/>);
    /// <c>secret_not_found</c> for a name it does not hold.
    /// </summary>
    public IReadOnlyDictionary<string, string>? SecretEnv { get; init; }
    /// <summary>Kill the whole process group after this long. 0 means no limit.</summary>
    public int TimeoutMs { get; init; }
    /// <summary>Bytes of each stream forwarded before the rest is dropped and the stream marked truncated.</summary>
    public long MaxOutputBytes { get; init; }
    /// <summary>Whether stdin frames follow; otherwise stdin is /dev/null.</summary>
    public bool Stdin { get; init; }
    /// <summary>
    /// <c>user[:group]</c> (names from the guest's /etc/passwd and /etc/group, or numeric ids) to
    /// run as; null means the image's default user (<see cref="ImageExecDefaults"/>), else root.
    /// An unknown name is <c>user_not_found</c>.
    /// </summary>
    public string? User { get; init; }
}

/// <summary>
/// What an imported OCI image says every process should start with, written into its disk at
/// <see cref="GuestPath"/> when it is imported, and read by the agent when it starts. A request's
/// own env, cwd and user override these; a disk without the file (pyro's own environments) has none.
/// </summary>
public sealed record ImageExecDefaults
{
    /// <summary>Where the import writes the defaults in the guest.</summary>
    public const string GuestPath = "/etc/pyro-image.json";

    /// <summary>The image's <c>Env</c>, <c>KEY=VALUE</c> each, PATH included (the usual default when the image had none).</summary>
    public IReadOnlyList<string> Env { get; init; } = [];

    /// <summary>The image's <c>WorkingDir</c>: the cwd of <c>pyro run</c> when the request gives none.</summary>
    public string? WorkingDir { get; init; }

    /// <summary>The image's <c>User</c> (<c>user[:group]</c> or ids).</summary>
    public string? User { get; init; }
}

/// <summary>How a command ended.</summary>
public sealed record ExecExit
{
    /// <summary>Exit status; 128+N when a signal N ended it, as shells report; 124 on timeout; 127 when the program was not found.</summary>
    public int ExitCode { get; init; }
    /// <summary>Name of the signal that ended the command, when one did (SIGKILL on timeout).</summary>
    public string? Signal { get; init; }
    /// <summary>The timeout ran out and the process group was killed.</summary>
    public bool TimedOut { get; init; }
    /// <summary>stdout went over the cap; the rest was dropped.</summary>
    public bool StdoutTruncated { get; init; }
    /// <summary>stderr went over the cap; the rest was dropped.</summary>
    public bool StderrTruncated { get; init; }
    /// <summary>Bytes the command wrote to stdout, including dropped ones.</summary>
    public long StdoutBytes { get; init; }
    /// <summary>Bytes the command wrote to stderr, including dropped ones.</summary>
    public long StderrBytes { get; init; }
    /// <summary>Wall time inside the guest from spawn to exit.</summary>
    public long DurationMs { get; init; }
}

/// <summary>
/// A path operation. <see cref="Path"/> is relative to the workspace root (<c>/workspace</c>), or
/// absolute inside it; <c>..</c> segments are refused, and writes never pass through a symlink.
/// </summary>
public sealed record FilesRequest
{
    /// <summary>The path.</summary>
    public required string Path { get; init; }
    /// <summary>files.list: descend into subdirectories. files.delete: delete a directory with its contents.</summary>
    public bool Recursive { get; init; }
    /// <summary>files.read: bytes to send at most (0 = no limit); the reply says whether the file was longer.</summary>
    public long MaxBytes { get; init; }
    /// <summary>files.write: permission bits for a new file (default 0644).</summary>
    public int? Mode { get; init; }
    /// <summary>files.write: create missing parent directories.</summary>
    public bool CreateParents { get; init; }
}

/// <summary>One entry of a listing, or the file an operation touched.</summary>
public sealed record FileEntry
{
    /// <summary>Path relative to the workspace root, with <c>/</c> separators.</summary>
    public required string Path { get; init; }
    /// <summary><c>file</c>, <c>directory</c>, <c>symlink</c> or <c>other</c>.</summary>
    public required string Type { get; init; }
    /// <summary>Size in bytes (files), or bytes written/read.</summary>
    public long Size { get; init; }
    /// <summary>Permission bits.</summary>
    public int Mode { get; init; }
    /// <summary>Target of a symlink, as stored (never followed).</summary>
    public string? LinkTarget { get; init; }
    /// <summary>files.read: the file was longer than MaxBytes and the rest was not sent.</summary>
    public bool Truncated { get; init; }
}

/// <summary>A directory listing.</summary>
public sealed record FileListing
{
    /// <summary>The entries, sorted by path.</summary>
    public required IReadOnlyList<FileEntry> Entries { get; init; }
}

/// <summary>A tar transfer of a tree under the workspace root.</summary>
public sealed record TarRequest
{
    /// <summary>tar.out: the file or directory to pack. tar.in: the directory to extract into (created if missing).</summary>
    public required string Path { get; init; }
    /// <summary>tar.in: empty the destination directory first (used to restore a baseline or snapshot).</summary>
    public bool Clean { get; init; }
}

/// <summary>What a tar transfer moved, and what it refused.</summary>
public sealed record TarSummary
{
    /// <summary>Entries packed or extracted.</summary>
    public long Entries { get; init; }
    /// <summary>Bytes of file content packed or extracted.</summary>
    public long Bytes { get; init; }
    /// <summary>tar.in: entries not extracted, each with the reason (traversal, absolute, device, link out...).</summary>
    public IReadOnlyList<SkippedEntry> Skipped { get; init; } = [];
}

/// <summary>An archive entry that was refused.</summary>
/// <param name="Name">The entry's name as it stood in the archive (sanitized by the receiver before display).</param>
/// <param name="Reason">Why it was refused.</param>
public sealed record SkippedEntry(string Name, string Reason);

/// <summary>A TCP connection to a port on the guest's own loopback; the guest never connects anywhere else.</summary>
public sealed record TcpConnectRequest
{
    /// <summary>
    /// Bytes of Stdout frames (headers included) the agent sends ahead of the host's
    /// <see cref="FrameType.Ack"/>s on one tcp.connect stream.
    /// </summary>
    public const int WindowBytes = 512 * 1024;

    /// <summary>The port on 127.0.0.1 in the guest, 1 to 65535.</summary>
    public int Port { get; init; }
}

/// <summary>What one TCP connection carried.</summary>
public sealed record TcpSummary
{
    /// <summary>Bytes the host sent into the guest socket.</summary>
    public long BytesToGuest { get; init; }
    /// <summary>Bytes the guest socket sent back.</summary>
    public long BytesFromGuest { get; init; }
}

/// <summary>A host port on 127.0.0.1 and the guest port its connections reach; 0 as host port asks for a free one.</summary>
public sealed record PortMapping
{
    /// <summary>Host port on 127.0.0.1.</summary>
    public int HostPort { get; init; }
    /// <summary>Port on the guest's 127.0.0.1.</summary>
    public int GuestPort { get; init; }
    /// <summary>The service the port follows, if any: the supervisor releases it once that service no longer runs.</summary>
    public string? Service { get; init; }
}

/// <summary>A service operation. <see cref="Name"/> is required except for service.list.</summary>
public sealed record ServiceRequest
{
    /// <summary>Longest service name: letters, digits, <c>.</c>, <c>_</c>, <c>-</c>, starting with a letter or digit.</summary>
    public const int MaxNameLength = 64;
    /// <summary>Longest command, in bytes of UTF-8.</summary>
    public const int MaxCommandBytes = 16 * 1024;

    /// <summary>The service's name, unique in the guest.</summary>
    public string? Name { get; init; }
    /// <summary>service.start: the command line, run as <c>/bin/sh -c</c>.</summary>
    public string? Command { get; init; }
    /// <summary>service.start: working directory in the guest (default <c>/workspace</c>); relative paths are under <c>/workspace</c>.</summary>
    public string? Cwd { get; init; }
    /// <summary>service.start: variables added to the base environment.</summary>
    public IReadOnlyDictionary<string, string>? Env { get; init; }
    /// <summary>
    /// Secrets to put in the environment of the service (service.start): environment variable name to secret
    /// name. The agent takes the values from the secrets it holds (<see cref="AgentOps.SecretsPut"/>);
    /// <c>secret_not_found</c> for a name it does not hold.
    /// </summary>
    public IReadOnlyDictionary<string, string>? SecretEnv { get; init; }
    /// <summary>service.start: how to tell the service is ready; null means ready once started.</summary>
    public ReadinessProbe? Readiness { get; init; }
    /// <summary>service.start: how long readiness may take (default 30 s, at most 10 min).</summary>
    public int ReadyTimeoutMs { get; init; }
    /// <summary>service.start: time between probes (default 500 ms, 50 ms to 60 s).</summary>
    public int ReadyIntervalMs { get; init; }
    /// <summary>service.logs: lines of each stream to return (default 200, at most 5,000; at most 96 KiB of each stream, the end kept, so the reply fits one frame).</summary>
    public int TailLines { get; init; }
    /// <summary>service.stop: time between TERM and KILL (default 5 s, at most 60 s).</summary>
    public int StopGraceMs { get; init; }
}

/// <summary>A readiness check, run inside the guest.</summary>
public sealed record ReadinessProbe
{
    /// <summary>
    /// <c>file</c> (Target is a path, relative to the service's cwd, that must exist),
    /// <c>tcp</c> (Target is HOST:PORT that must accept a connection),
    /// <c>http</c> (Target is an http:// URL that must answer 2xx or 3xx),
    /// <c>command</c> (Target is a shell command that must exit 0, run in the service's cwd).
    /// </summary>
    public required string Type { get; init; }
    /// <summary>What the probe checks; see <see cref="Type"/>.</summary>
    public required string Target { get; init; }
}

/// <summary>A service as the agent knows it. Claims of a guest: the host checks and bounds every field.</summary>
public sealed record ServiceInfo
{
    /// <summary>The name.</summary>
    public required string Name { get; init; }
    /// <summary><c>starting</c>, <c>running</c>, <c>exited</c> (ended by itself), <c>stopped</c> (by request, or by the workspace stopping), <c>failed</c> (never became ready; stopped).</summary>
    public required string State { get; init; }
    /// <summary>The command line.</summary>
    public required string Command { get; init; }
    /// <summary>The working directory.</summary>
    public required string Cwd { get; init; }
    /// <summary>The readiness probe, when one was given.</summary>
    public ReadinessProbe? Readiness { get; init; }
    /// <summary>Process id (and process group) in the guest, while it runs.</summary>
    public int Pid { get; init; }
    /// <summary>Exit status once it ended (128+N for signal N).</summary>
    public int? ExitCode { get; init; }
    /// <summary>Start time, ms since the Unix epoch (guest clock, set from the host's at boot).</summary>
    public long StartedAtMs { get; init; }
    /// <summary>End time, when it ended.</summary>
    public long? EndedAtMs { get; init; }
    /// <summary>Why it is not running, in words (exit, stop request, failed probe, workspace stop).</summary>
    public string? Reason { get; init; }
    /// <summary>The last readiness probe's result, in words.</summary>
    public string? LastProbe { get; init; }
}

/// <summary>The end of a service's logs.</summary>
public sealed record ServiceLogTail
{
    /// <summary>The service.</summary>
    public required ServiceInfo Service { get; init; }
    /// <summary>Last lines of stdout (UTF-8, invalid bytes replaced).</summary>
    public required string Stdout { get; init; }
    /// <summary>Last lines of stderr.</summary>
    public required string Stderr { get; init; }
    /// <summary>Older output was rotated away or left out of the tail.</summary>
    public bool Truncated { get; init; }
}

/// <summary>A shell operation. <see cref="Id"/> is required except for shell.open and shell.list.</summary>
public sealed record ShellRequest
{
    /// <summary>Largest shell.write input, in bytes of UTF-8.</summary>
    public const int MaxInputBytes = 64 * 1024;
    /// <summary>Largest shell.read answer, in characters.</summary>
    public const int MaxReadChars = 256 * 1024;

    /// <summary>The shell's id, as shell.open returned it.</summary>
    public string? Id { get; init; }
    /// <summary>shell.open: working directory (default <c>/workspace</c>).</summary>
    public string? Cwd { get; init; }
    /// <summary>shell.open: terminal width (default 120, 10 to 1,000).</summary>
    public int Cols { get; init; }
    /// <summary>shell.open: terminal height (default 30, 5 to 1,000).</summary>
    public int Rows { get; init; }
    /// <summary>shell.open: variables added to the base environment.</summary>
    public IReadOnlyDictionary<string, string>? Env { get; init; }
    /// <summary>
    /// Secrets to put in the environment of the shell (shell.open): environment variable name to secret
    /// name. The agent takes the values from the secrets it holds (<see cref="AgentOps.SecretsPut"/>);
    /// <c>secret_not_found</c> for a name it does not hold.
    /// </summary>
    public IReadOnlyDictionary<string, string>? SecretEnv { get; init; }
    /// <summary>shell.write: the text to type.</summary>
    public string? Input { get; init; }
    /// <summary>shell.write: type a newline after <see cref="Input"/>.</summary>
    public bool AppendNewline { get; init; }
    /// <summary>shell.read: the character offset to read from (0 = the start of the shell's output).</summary>
    public long Cursor { get; init; }
    /// <summary>
    /// shell.read: characters to return at most (default 65,536, at most <see cref="MaxReadChars"/>).
    /// The agent returns fewer when the JSON reply would not fit one frame (escaped control and
    /// non-ASCII characters take six bytes); <see cref="ShellOutput.Truncated"/> then says more waits.
    /// </summary>
    public int MaxChars { get; init; }
    /// <summary>shell.signal: INT, TERM, HUP, KILL, QUIT, TSTP, CONT, USR1, USR2 (with or without SIG).</summary>
    public string? Signal { get; init; }
}

/// <summary>A shell as the agent knows it.</summary>
public sealed record ShellInfo
{
    /// <summary>The id.</summary>
    public required string Id { get; init; }
    /// <summary><c>running</c>, <c>exited</c> (the shell process ended; its output stays readable until closed), <c>closed</c>.</summary>
    public required string State { get; init; }
    /// <summary>The working directory it was opened in.</summary>
    public required string Cwd { get; init; }
    /// <summary>Terminal width.</summary>
    public int Cols { get; init; }
    /// <summary>Terminal height.</summary>
    public int Rows { get; init; }
    /// <summary>The shell's process id (its session).</summary>
    public int Pid { get; init; }
    /// <summary>Exit status once it ended.</summary>
    public int? ExitCode { get; init; }
    /// <summary>Open time, ms since the Unix epoch.</summary>
    public long StartedAtMs { get; init; }
    /// <summary>Characters of output so far: the cursor of the next character to arrive.</summary>
    public long OutputChars { get; init; }
}

/// <summary>Output of a shell from a cursor.</summary>
public sealed record ShellOutput
{
    /// <summary>The shell.</summary>
    public required ShellInfo Shell { get; init; }
    /// <summary>The characters, raw (escape sequences kept).</summary>
    public required string Output { get; init; }
    /// <summary>Where <see cref="Output"/> starts; later than the cursor asked for when that output was dropped from the ring.</summary>
    public long Cursor { get; init; }
    /// <summary>The cursor to read from next.</summary>
    public long NextCursor { get; init; }
    /// <summary>Characters between the cursor asked for and <see cref="Cursor"/> that had already left the ring.</summary>
    public long DroppedChars { get; init; }
    /// <summary>More output is already waiting past <see cref="NextCursor"/> (the answer hit MaxChars).</summary>
    public bool Truncated { get; init; }
}

/// <summary>Source-generated JSON metadata: the agent is trimmed, so no reflection.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip)]
[JsonSerializable(typeof(AgentRequest))]
[JsonSerializable(typeof(AgentResponse))]
[JsonSerializable(typeof(AgentError))]
[JsonSerializable(typeof(TcpConnectRequest))]
[JsonSerializable(typeof(TcpSummary))]
[JsonSerializable(typeof(ServiceInfo))]
[JsonSerializable(typeof(ImageExecDefaults))]
public sealed partial class ProtocolJsonContext : JsonSerializerContext
{
    /// <summary>Serializes a message to UTF-8 JSON.</summary>
    public static byte[] Encode<T>(T value) where T : class
        => JsonSerializer.SerializeToUtf8Bytes(value, typeof(T), Default);

    /// <summary>Parses a message; a payload that is not the expected JSON is a protocol violation.</summary>
    public static T Decode<T>(ReadOnlyMemory<byte> payload) where T : class
    {
        try
        {
            return JsonSerializer.Deserialize(payload.Span, typeof(T), Default) as T
                ?? throw new ProtocolViolationException($"empty {typeof(T).Name} message");
        }
        catch (JsonException ex)
        {
            throw new ProtocolViolationException($"malformed {typeof(T).Name} message: {ex.Message}");
        }
    }
}
