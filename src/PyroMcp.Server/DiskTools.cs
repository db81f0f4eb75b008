using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Text.Json.Nodes;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace PyroMcp.Server;

/// <summary>The offline disk tools (workspace-full): the disk of a stopped workspace, read without booting it.</summary>
public sealed partial class PyroTools
{
    private const string DiskPathHelp = "Relative paths are under /workspace; absolute ones anywhere on the workspace's disk. '..' is refused.";

    /// <summary>workspace_disk_list.</summary>
    [McpServerTool(Name = "workspace_disk_list", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("""
        Lists a directory on the disk of a STOPPED workspace without booting it (a running one is refused with
        workspace_not_stopped: call workspace_stop first). Returns entries with path (relative to the directory),
        type, size, mode, link_target; symlinks are shown, not followed. pyro's runtime-only state (/run/pyro,
        /run/pyro-secrets, /var/lib/pyro) is not shown.
        """)]
    public Task<CallToolResult> WorkspaceDiskList(
        [Description(WorkspaceId)] string workspace_id,
        [Description("Directory. " + DiskPathHelp)] string path = "/workspace",
        [Description("Descend into subdirectories.")] bool recursive = false,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var entries = await _pyro.ListWorkspaceDiskAsync(workspace_id, path, recursive, cancellationToken).ConfigureAwait(false);
            return Ok(new JsonObject { ["workspace_id"] = workspace_id, ["path"] = path, ["entries"] = Json(entries, PyroJsonContext.Default.IReadOnlyListFileEntry), ["total"] = entries.TotalCount, ["truncated"] = entries.Truncated },
                $"{entries.Count} entries" + (entries.Truncated ? $" (the first of {entries.TotalCount})" : "") + string.Concat(entries.Select(e => $"\n{Word(e.Type)} {e.Path}")));
        });

    /// <summary>workspace_disk_read.</summary>
    [McpServerTool(Name = "workspace_disk_read", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("""
        Reads a file on the disk of a STOPPED workspace without booting it (a running one is refused with
        workspace_not_stopped). Symlinks are followed inside the workspace's disk only. Returns content (UTF-8, or
        base64 with binary true), size and truncated. pyro's runtime-only state is refused (disk_path_scrubbed).
        """)]
    public Task<CallToolResult> WorkspaceDiskRead(
        [Description(WorkspaceId)] string workspace_id,
        [Description("File. " + DiskPathHelp)] string path,
        [Description("Read at most this many bytes, 1 to 1048576."), Range(1, 1048576)] int max_bytes = 65536,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            if (max_bytes is < 1 or > 1048576)
            {
                throw new ToolError("invalid_max_bytes", $"max_bytes must be between 1 and 1048576 (got {max_bytes})");
            }

            return FileRead(await _pyro.ReadWorkspaceDiskAsync(workspace_id, path, max_bytes, cancellationToken).ConfigureAwait(false), max_bytes);
        });

    /// <summary>workspace_disk_export.</summary>
    [McpServerTool(Name = "workspace_disk_export", OpenWorld = false)]
    [Description("""
        Writes the disk of a STOPPED workspace to a host file as a raw ext4 image (mode 0600, sparse), with pyro's
        runtime-only state removed and its freed blocks zeroed; the image passes e2fsck before it is handed over.
        output_path must not exist. Returns output, bytes and the scrubbed paths.
        """)]
    public Task<CallToolResult> WorkspaceDiskExport(
        RequestContext<CallToolRequestParams> context,
        [Description(WorkspaceId)] string workspace_id,
        [Description("Host file to create (.ext4); must not exist, and must lie inside the host directories the server allows.")] string output_path,
        CancellationToken cancellationToken = default)
        => Guard(context, async progress =>
        {
            var result = await _pyro.ExportWorkspaceDiskAsync(workspace_id, _roots.Confine(output_path, "output_path"), progress, cancellationToken).ConfigureAwait(false);
            return Ok(Json(result, PyroJsonContext.Default.DiskExportResult), $"exported the disk of {result.WorkspaceId} to {result.Output}: {result.Bytes} bytes; scrubbed {result.Scrubbed.Count} path(s)");
        });
}
