using PyroMcp.Protocol;
using PyroMcp.Workspaces;

namespace PyroMcp;

public sealed partial class Pyro
{
    private WorkspaceManager? _workspaces;

    private WorkspaceManager Workspaces => _workspaces ??= new WorkspaceManager(Options, _store);

    /// <summary>
    /// Creates a persistent workspace: a VM with its own disk, owned by a supervisor process that
    /// outlives this call. Seeds <c>/workspace</c> from <see cref="WorkspaceCreateRequest.SeedPath"/>
    /// and records that tree as the immutable baseline for <see cref="DiffWorkspaceAsync"/> and <see cref="ResetWorkspaceAsync"/>.
    /// All or nothing: a create that fails leaves no workspace behind.
    /// </summary>
    /// <example><code>
    /// var ws = await pyro.CreateWorkspaceAsync(new WorkspaceCreateRequest { Environment = "debian:12", SeedPath = "./repo" });
    /// var result = await pyro.ExecWorkspaceAsync(ws.WorkspaceId, new WorkspaceExecRequest { Command = ["git", "status"] });
    /// </code></example>
    public Task<WorkspaceInfo> CreateWorkspaceAsync(WorkspaceCreateRequest request, CancellationToken cancellationToken = default)
        => Workspaces.CreateAsync(request, cancellationToken);

    /// <summary>
    /// Copies a running workspace <paramref name="request"/>.Count times: each copy starts from the
    /// source's memory and disk as they are now (its processes, services and shells included), is
    /// independent afterwards, and has a baseline equal to the source's current tree. The source is
    /// paused for the save (under a second for an idle 1 GiB guest under TCG) and runs on. Each copy
    /// is made its own VM at resume: new host name, machine id, DHCP lease and a reseeded RNG. Copies
    /// carry the label <c>pyro.fork-of=SOURCE</c>; published ports are not copied. All or nothing.
    /// </summary>
    public Task<WorkspaceForkResult> ForkWorkspaceAsync(string workspace, WorkspaceForkRequest request, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ForkAsync(workspace, request, cancellationToken));

    /// <summary>Workspaces, optionally only those carrying all of <paramref name="labels"/>; at most <see cref="PyroOptions.MaxListEntries"/>, oldest first (<see cref="CappedList{T}.Truncated"/> says when more exist).</summary>
    public Task<CappedList<WorkspaceInfo>> ListWorkspacesAsync(IReadOnlyDictionary<string, string>? labels = null, CancellationToken cancellationToken = default)
        => Workspaces.ListAsync(labels, cancellationToken);

    /// <summary>A workspace's state, checked against the processes that really exist (a killed supervisor shows as <c>crashed</c>).</summary>
    public Task<WorkspaceInfo> GetWorkspaceAsync(string workspace, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.StatusAsync(workspace, cancellationToken));

    /// <summary>Runs one command in a workspace; it is added to the workspace's history.</summary>
    public Task<WorkspaceExecResult> ExecWorkspaceAsync(string workspace, WorkspaceExecRequest request, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ExecAsync(workspace, request, cancellationToken));

    /// <summary>The workspace's command history since creation or the last reset: the latest <see cref="PyroOptions.MaxListEntries"/> commands (<see cref="CappedList{T}.Truncated"/> says when older ones were left out).</summary>
    public Task<CappedList<CommandRecord>> GetWorkspaceLogsAsync(string workspace, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.LogsAsync(workspace, cancellationToken));

    /// <summary>Copies a host directory or archive into the workspace (default <c>/workspace</c>). Entries that would escape it are refused and listed.</summary>
    public Task<TransferResult> PushWorkspaceSyncAsync(string workspace, string sourcePath, string? destination = null, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.PushAsync(workspace, sourcePath, destination, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>Lists a directory of the workspace (paths relative to <c>/workspace</c>): at most <see cref="PyroOptions.MaxListEntries"/> entries (<see cref="CappedList{T}.Truncated"/> says when more exist).</summary>
    public Task<CappedList<FileEntry>> ListWorkspaceFilesAsync(string workspace, string path = ".", bool recursive = false, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ListFilesAsync(workspace, path, recursive, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>Reads a file of the workspace, at most <paramref name="maxBytes"/> (default: the output cap).</summary>
    public Task<FileContent> ReadWorkspaceFileAsync(string workspace, string path, long maxBytes = 0, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ReadFileAsync(workspace, path, maxBytes, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>Writes a file of the workspace atomically, creating parent directories; never through a symlink.</summary>
    public Task<FileEntry> WriteWorkspaceFileAsync(string workspace, string path, Stream content, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.WriteFileAsync(workspace, path, content, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>
    /// Applies a unified diff or git patch (several files, creations, deletions, renames, copies,
    /// mode changes, symlinks, git binary literal and delta patches): every change applies or
    /// nothing is written. The text is taken as UTF-8; for a patch of files that are not UTF-8
    /// (Latin-1 and such) use the overload that takes bytes.
    /// </summary>
    public Task<PatchResult> ApplyWorkspacePatchAsync(string workspace, string patch, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ApplyPatchAsync(workspace, patch, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>
    /// Applies a patch given as its exact bytes (as <c>git diff</c> wrote it): hunk lines are
    /// matched and written byte for byte, so CRLF, Latin-1 and other non-UTF-8 text survive.
    /// Every change applies or nothing is written.
    /// </summary>
    public Task<PatchResult> ApplyWorkspacePatchAsync(string workspace, byte[] patch, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ApplyPatchAsync(workspace, patch, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>How <c>/workspace</c> differs from its create-time baseline.</summary>
    public Task<WorkspaceDiff> DiffWorkspaceAsync(string workspace, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.DiffAsync(workspace, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>Copies a file or directory out of the workspace to <paramref name="outputPath"/>, which must not exist. Nothing is written outside it.</summary>
    public Task<TransferResult> ExportWorkspaceAsync(string workspace, string path, string outputPath, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ExportAsync(workspace, path, outputPath, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>Saves <c>/workspace</c> as a named snapshot to reset to later.</summary>
    public Task<SnapshotInfo> CreateSnapshotAsync(string workspace, string name, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.CreateSnapshotAsync(workspace, name, cancellationToken));

    /// <summary>The workspace's snapshots.</summary>
    public Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(string workspace, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ListSnapshotsAsync(workspace, cancellationToken));

    /// <summary>Deletes a snapshot.</summary>
    public Task DeleteSnapshotAsync(string workspace, string name, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.DeleteSnapshotAsync(workspace, name, cancellationToken));

    /// <summary>
    /// Replaces the sandbox with a fresh one: a new disk from the environment and <c>/workspace</c>
    /// from <paramref name="snapshot"/>: <c>baseline</c> (the create-time tree, the default) or a named
    /// snapshot. Same id and baseline; history cleared. <see cref="WorkspaceInfo.Reset"/> says what was restored.
    /// </summary>
    public Task<WorkspaceInfo> ResetWorkspaceAsync(string workspace, string? snapshot = "baseline", CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ResetAsync(workspace, snapshot, cancellationToken));

    /// <summary>
    /// Publishes a guest TCP port on the host's 127.0.0.1 while the workspace runs:
    /// <paramref name="publication"/> is <c>GUEST_PORT</c> (a free host port is picked) or
    /// <c>HOST_PORT:GUEST_PORT</c> (host ports 1024 to 65535). Connections reach 127.0.0.1:GUEST_PORT
    /// inside the guest. Only for workspaces with <see cref="NetworkPolicy.EgressPublishedPorts"/>; the
    /// port closes on stop, reset, delete and crash.
    /// </summary>
    /// <exception cref="PyroInputException"><c>port_invalid</c>, <c>port_in_use</c>, <c>port_limit</c>, <c>publish_not_allowed</c>.</exception>
    /// <exception cref="WorkspaceStateException"><c>workspace_not_running</c>.</exception>
    public Task<PublishedPort> PublishPortAsync(string workspace, string publication, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.PublishAsync(workspace, publication, cancellationToken));

    /// <summary>Stops publishing <paramref name="hostPort"/>; open connections through it are closed.</summary>
    /// <exception cref="PyroInputException"><c>port_not_published</c>.</exception>
    public Task<IReadOnlyList<PublishedPort>> UnpublishPortAsync(string workspace, int hostPort, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.UnpublishAsync(workspace, hostPort, cancellationToken));

    /// <summary>Powers the VM off cleanly; the disk is kept for <see cref="StartWorkspaceAsync"/>.</summary>
    public Task<WorkspaceInfo> StopWorkspaceAsync(string workspace, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.StopAsync(workspace, cancellationToken));

    /// <summary>Boots a stopped or crashed workspace again from its disk.</summary>
    public Task<WorkspaceInfo> StartWorkspaceAsync(string workspace, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.StartAsync(workspace, cancellationToken));

    /// <summary>Deletes a workspace: its VM, supervisor, disk, baseline, snapshots and history.</summary>
    public Task<bool> DeleteWorkspaceAsync(string workspace, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.DeleteAsync(workspace, cancellationToken));

    /// <summary>Deletes every workspace past its TTL, including those whose supervisor is gone. Returns their ids.</summary>
    public Task<IReadOnlyList<string>> ReapExpiredWorkspacesAsync(CancellationToken cancellationToken = default)
        => Workspaces.ReapExpiredAsync(cancellationToken);
}
