using PyroMcp.Workspaces;

namespace PyroMcp;

public sealed partial class Pyro
{
    /// <summary>
    /// Lists a directory on the disk of a stopped workspace, without booting it: relative paths are
    /// under <c>/workspace</c>, absolute ones anywhere in the guest's root file system. Entry paths are
    /// relative to the directory listed; at most <see cref="PyroOptions.MaxListEntries"/> entries.
    /// Runtime-only state (<c>/run/pyro</c>, <c>/run/pyro-secrets</c>, <c>/var/lib/pyro</c>) is not shown.
    /// </summary>
    /// <exception cref="WorkspaceStateException"><c>workspace_not_stopped</c>: stop the workspace first.</exception>
    /// <exception cref="PyroInputException"><c>workspace_not_found</c>, <c>disk_path_invalid</c>, <c>disk_path_not_found</c>, <c>disk_path_scrubbed</c>, <c>disk_path_not_directory</c>.</exception>
    /// <exception cref="HostRequirementException"><c>missing_host_package</c>: debugfs and e2fsck come from e2fsprogs.</exception>
    public Task<CappedList<FileEntry>> ListWorkspaceDiskAsync(string workspace, string path = "/workspace", bool recursive = false, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ListDiskAsync(workspace, path, recursive, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>
    /// Reads at most <paramref name="maxBytes"/> (default: the output cap; at most 64 MiB) of a file on
    /// the disk of a stopped workspace. Symlinks are followed inside the guest's disk, never on the host.
    /// </summary>
    /// <exception cref="WorkspaceStateException"><c>workspace_not_stopped</c>.</exception>
    /// <exception cref="PyroInputException"><c>invalid_max_bytes</c>, <c>disk_path_invalid</c>, <c>disk_path_not_found</c>, <c>disk_path_scrubbed</c>, <c>disk_path_is_directory</c>, <c>disk_path_not_file</c>.</exception>
    public Task<FileContent> ReadWorkspaceDiskAsync(string workspace, string path, long maxBytes = 0, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ReadDiskAsync(workspace, path, maxBytes, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>
    /// Writes the disk of a stopped workspace to <paramref name="outputPath"/> as a raw ext4 image
    /// (mode 0600, sparse), with pyro's runtime-only state removed and its freed blocks zeroed. The
    /// output must not exist (it is never replaced) and its directory must; the image passes
    /// <c>e2fsck -fn</c> before it gets its name. Progress phases: convert, scrub, check, write.
    /// </summary>
    /// <exception cref="WorkspaceStateException"><c>workspace_not_stopped</c>.</exception>
    /// <exception cref="PyroInputException"><c>output_exists</c>, <c>output_parent_missing</c>.</exception>
    /// <exception cref="GuestOperationException"><c>disk_export_check_failed</c>, <c>disk_unreadable</c>.</exception>
    public Task<DiskExportResult> ExportWorkspaceDiskAsync(string workspace, string outputPath, IProgress<PyroProgress>? progress = null, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ExportDiskAsync(workspace, outputPath, progress, cancellationToken));
}
