using System.Text.Json.Serialization;

namespace PyroMcp;

/// <summary>What a new workspace is made from.</summary>
public sealed record WorkspaceCreateRequest
{
    /// <summary>Catalog environment, e.g. <c>debian:12</c>.</summary>
    public required string Environment { get; init; }
    /// <summary>A host directory, or a <c>.tar</c>, <c>.tar.gz</c> or <c>.tgz</c> archive, copied into <c>/workspace</c> before the baseline is taken.</summary>
    public string? SeedPath { get; init; }
    /// <summary>Unique name, usable instead of the id: letters, digits, <c>.</c>, <c>_</c>, <c>-</c>; at most 63.</summary>
    public string? Name { get; init; }
    /// <summary>Labels to find it by (<c>workspace list --label k=v</c>).</summary>
    public IReadOnlyDictionary<string, string>? Labels { get; init; }
    /// <summary>Lifetime in seconds (10 to 604800); when it runs out the workspace is deleted. Default 3600.</summary>
    public int TtlSeconds { get; init; } = 3600;
    /// <summary>Virtual CPUs, 1 to 32. Default 1.</summary>
    public int VcpuCount { get; init; } = 1;
    /// <summary>Guest memory in MiB, 128 to 65536. Default 1024.</summary>
    public int MemMib { get; init; } = 1024;
    /// <summary>
    /// The guest's network, kept across stop, start and reset. Default <see cref="NetworkPolicy.Off"/>:
    /// no network device. Ask for <see cref="NetworkPolicy.Egress"/> only when the work needs to
    /// download (packages, a clone), and <see cref="NetworkPolicy.EgressPublishedPorts"/> when a
    /// guest service must be reached from the host.
    /// </summary>
    public NetworkPolicy NetworkPolicy { get; init; }
    /// <summary>
    /// Secrets the workspace keeps for its life (at most 32): each is a file
    /// <c>/run/pyro-secrets/NAME</c> (mode 0400, on a tmpfs, never on the disk) in the guest after
    /// every boot, and is redacted as <c>[REDACTED:NAME]</c> from everything pyro returns.
    /// </summary>
    public IReadOnlyList<WorkspaceSecret>? Secrets { get; init; }
    /// <summary>
    /// Boot the VM instead of restoring it from the environment's warm-start template. Off by
    /// default: create restores (building the template on first need) and boots cold only when the
    /// template cannot be used, saying why (<see cref="WorkspaceInfo.ColdStartReason"/>).
    /// </summary>
    public bool Cold { get; init; }
    /// <summary>Receives <c>[workspace-create] phase=...</c> updates (and pull phases when the environment is built).</summary>
    public IProgress<PyroProgress>? Progress { get; init; }
}

/// <summary>How many copies of a running workspace to make, and what to call them.</summary>
public sealed record WorkspaceForkRequest
{
    /// <summary>How many new workspaces, 1 to 16. Default 1.</summary>
    public int Count { get; init; } = 1;
    /// <summary>Names the copies <c>PREFIX-1</c>, <c>PREFIX-2</c>...; unnamed when null. Same characters as a workspace name, at most 58.</summary>
    public string? NamePrefix { get; init; }
    /// <summary>Lifetime of each copy in seconds (10 to 604800). Default: the source's TTL.</summary>
    public int? TtlSeconds { get; init; }
    /// <summary>Receives <c>[workspace-fork] phase=...</c> updates.</summary>
    public IProgress<PyroProgress>? Progress { get; init; }
}

/// <summary>One command to run in a workspace.</summary>
public sealed record WorkspaceExecRequest
{
    /// <summary>The command, with the same argv/shell rule as <see cref="RunRequest.Command"/>.</summary>
    public required IReadOnlyList<string> Command { get; init; }
    /// <summary>Working directory; relative paths are under <c>/workspace</c>. Default <c>/workspace</c>.</summary>
    public string? Cwd { get; init; }
    /// <summary>Seconds before the command's process group is killed (exit 124). Default 30.</summary>
    public int TimeoutSeconds { get; init; } = 30;
    /// <summary>Extra environment variables.</summary>
    public IReadOnlyDictionary<string, string>? Env { get; init; }
    /// <summary>
    /// Workspace secrets to put in this command's environment: secret name to environment variable
    /// name (the same name when the value is empty or null). Only this command sees them; nothing
    /// of the mapping is stored.
    /// </summary>
    public IReadOnlyDictionary<string, string?>? SecretEnv { get; init; }
    /// <summary>Receives stdout as it comes (secret values already redacted).</summary>
    public Func<ReadOnlyMemory<byte>, ValueTask>? OnStdout { get; init; }
    /// <summary>Receives stderr as it comes.</summary>
    public Func<ReadOnlyMemory<byte>, ValueTask>? OnStderr { get; init; }
}

/// <summary>The outcome of a command in a workspace: the shared <see cref="ExecResult"/> fields, plus where it ran and its place in the history.</summary>
public sealed record WorkspaceExecResult : ExecResult
{
    /// <summary>The workspace.</summary>
    [JsonPropertyOrder(-5)]
    public required string WorkspaceId { get; init; }
    /// <summary>Its place in the workspace's history.</summary>
    [JsonPropertyOrder(-4)]
    public int Sequence { get; init; }
    /// <summary>The command as given.</summary>
    [JsonPropertyOrder(-3)]
    public required override string Command { get; init; }
    /// <summary>Working directory it ran in.</summary>
    [JsonPropertyOrder(-2)]
    public required string Cwd { get; init; }
    /// <summary>How it ran: always <see cref="ExecutionMode.Guest"/>.</summary>
    [JsonPropertyOrder(-1)]
    public override ExecutionMode ExecutionMode { get; init; } = ExecutionMode.Guest;
}

/// <summary>What a transfer into or out of a workspace moved.</summary>
public sealed record TransferResult
{
    /// <summary>The workspace.</summary>
    public required string WorkspaceId { get; init; }
    /// <summary>Where on the host: the source of a push, the destination of an export.</summary>
    public required string HostPath { get; init; }
    /// <summary>Where in the guest.</summary>
    public required string GuestPath { get; init; }
    /// <summary>For a push, what the host source is: <c>directory</c> or <c>archive</c> (.tar, .tar.gz, .tgz); null for an export.</summary>
    public string? Mode { get; init; }
    /// <summary>For an export, what was written at <see cref="HostPath"/>: a file or a directory tree; null for a push.</summary>
    public EntryKind? ArtifactType { get; init; }
    /// <summary>Through which channel the guest side ran: always <see cref="ExecutionMode.Guest"/>.</summary>
    public ExecutionMode ExecutionMode { get; init; } = ExecutionMode.Guest;
    /// <summary>Entries moved.</summary>
    public long Entries { get; init; }
    /// <summary>Bytes of file content moved.</summary>
    public long Bytes { get; init; }
    /// <summary>Entries refused (path escapes, links out, device nodes...), with the reason; at most <see cref="PyroOptions.MaxSkippedEntries"/> of them.</summary>
    public IReadOnlyList<SkippedEntry> Skipped { get; init; } = [];
    /// <summary>How many entries were refused in all; more than <see cref="Skipped"/> holds when the list was cut.</summary>
    public long SkippedTotal { get; init; }
    /// <summary>Whether <see cref="Skipped"/> was cut at <see cref="PyroOptions.MaxSkippedEntries"/>.</summary>
    public bool SkippedTruncated => SkippedTotal > Skipped.Count;
    /// <summary>Wall time.</summary>
    public long DurationMs { get; init; }
}

/// <summary>How <c>/workspace</c> differs from its create-time baseline.</summary>
public sealed record WorkspaceDiff
{
    /// <summary>The workspace.</summary>
    public required string WorkspaceId { get; init; }
    /// <summary>Entries that are new.</summary>
    public int Added { get; init; }
    /// <summary>Entries whose content, mode or link target changed.</summary>
    public int Modified { get; init; }
    /// <summary>Entries that are gone.</summary>
    public int Deleted { get; init; }
    /// <summary>Entries that changed kind (file, directory, symlink).</summary>
    public int TypeChanged { get; init; }
    /// <summary>Every changed entry: <see cref="Added"/> + <see cref="Modified"/> + <see cref="Deleted"/> + <see cref="TypeChanged"/>.</summary>
    public int Total => Added + Modified + Deleted + TypeChanged;
    /// <summary>Files and symlinks whose change is written as text hunks in <see cref="Patch"/>.</summary>
    public int TextPatched { get; init; }
    /// <summary>Changed files whose bytes are not UTF-8 text without NUL: written as git binary patches (literal, base85) in <see cref="Patch"/>.</summary>
    public int NonText { get; init; }
    /// <summary>Each changed path with its kind of change.</summary>
    public IReadOnlyList<DiffEntry> Changes { get; init; } = [];
    /// <summary>
    /// The change as one git patch: text hunks, git binary patches for other bytes, mode changes
    /// (old mode/new mode), symlinks (mode 120000, the target as content). <c>git apply</c> turns
    /// the baseline into the current tree with it, byte for byte. Larger than
    /// 64 MiB it is not returned: the diff fails with <c>diff_too_large</c>.
    /// </summary>
    public string Patch { get; init; } = "";
}

/// <summary>One changed path.</summary>
/// <param name="Path">Path under <c>/workspace</c>.</param>
/// <param name="Change">Added, modified, deleted, or changed from one kind to another.</param>
/// <param name="Kind">What the path is (the new kind when it changed; the old one when it was deleted).</param>
/// <param name="Text">Whether the change is in the text patch.</param>
public sealed record DiffEntry(string Path, ChangeKind Change, EntryKind Kind, bool Text);

/// <summary>A file, directory or symlink in a workspace.</summary>
public sealed record FileEntry
{
    /// <summary>Path relative to the workspace root, with <c>/</c> separators.</summary>
    public required string Path { get; init; }
    /// <summary>What the entry is.</summary>
    public required EntryKind Type { get; init; }
    /// <summary>Size in bytes (files), or the bytes written.</summary>
    public long Size { get; init; }
    /// <summary>Permission bits.</summary>
    public int Mode { get; init; }
    /// <summary>Target of a symlink, as stored (never followed).</summary>
    public string? LinkTarget { get; init; }
    /// <summary>Only the start of the file was read.</summary>
    public bool Truncated { get; init; }
}

/// <summary>An entry a transfer left out, and why.</summary>
/// <param name="Name">The entry's name in the tree (sanitized for display).</param>
/// <param name="Reason">Why it was skipped, e.g. <c>symlink_outside</c>, <c>special_file</c> or <c>not_listed</c>.</param>
public sealed record SkippedEntry(string Name, string Reason);

/// <summary>How a path changed from the baseline. Serialized as <c>added</c>, <c>modified</c>, <c>deleted</c> or <c>type_changed</c>.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ChangeKind>))]
public enum ChangeKind
{
    /// <summary>The path is new.</summary>
    [JsonStringEnumMemberName("added")]
    Added,
    /// <summary>Its content, mode or link target changed.</summary>
    [JsonStringEnumMemberName("modified")]
    Modified,
    /// <summary>The path is gone.</summary>
    [JsonStringEnumMemberName("deleted")]
    Deleted,
    /// <summary>It is another kind of entry now (a file became a symlink, say).</summary>
    [JsonStringEnumMemberName("type_changed")]
    TypeChanged,
}

/// <summary>What a path in a workspace is. Serialized as <c>file</c>, <c>directory</c>, <c>symlink</c> or <c>other</c>.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<EntryKind>))]
public enum EntryKind
{
    /// <summary>A regular file.</summary>
    [JsonStringEnumMemberName("file")]
    File,
    /// <summary>A directory.</summary>
    [JsonStringEnumMemberName("directory")]
    Directory,
    /// <summary>A symbolic link (never followed).</summary>
    [JsonStringEnumMemberName("symlink")]
    Symlink,
    /// <summary>Anything else (device, socket, FIFO); pyro lists it but does not copy it.</summary>
    [JsonStringEnumMemberName("other")]
    Other,
}

/// <summary>What a patch did.</summary>
/// <param name="WorkspaceId">The workspace.</param>
/// <param name="Files">Paths written or deleted, in patch order.</param>
/// <param name="Created">Files created.</param>
/// <param name="Modified">Files changed.</param>
/// <param name="Deleted">Files deleted.</param>
public sealed record PatchResult(string WorkspaceId, IReadOnlyList<string> Files, int Created, int Modified, int Deleted);

/// <summary>A file's content read from a workspace.</summary>
/// <param name="WorkspaceId">The workspace.</param>
/// <param name="Path">Path under <c>/workspace</c>.</param>
/// <param name="Content">The bytes (up to the limit asked for).</param>
/// <param name="Size">Bytes returned.</param>
/// <param name="Truncated">The file is longer than what was returned.</param>
public sealed record FileContent(string WorkspaceId, string Path, byte[] Content, long Size, bool Truncated);
