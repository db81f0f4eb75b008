namespace PyroMcp.Server;

/// <summary>
/// The MCP server's half of an error: the SDK's message says what went wrong in the SDK's terms;
/// the hint names the tool parameter or the tool to call next, as the model sees them. Keyed by
/// the stable error code.
/// </summary>
internal static class ToolErrorHints
{
    /// <summary>The tool parameter of a request property: its snake_case name (<c>VcpuCount</c> is <c>vcpu_count</c>).</summary>
    internal static string Parameter(string field)
        => string.Concat(field.Select((c, i) => char.IsUpper(c) ? (i > 0 ? "_" : "") + char.ToLowerInvariant(c) : c.ToString()));

    /// <summary>The hint for <paramref name="code"/>, or null.</summary>
    internal static string? For(string code, string? field) => code switch
    {
        "missing_command" => "command must not be empty",
        "network_policy_invalid" => "network_policy takes off, egress or egress+published-ports",
        "network_failed" => "retry without a network (network_policy off, network false); the host's passt did not start",
        "invalid_vcpu_count" => "vcpu_count must be between 1 and 32",
        "invalid_mem_mib" => "mem_mib must be between 128 and 65536",
        "invalid_timeout" => "timeout_seconds must be between 1 and 86400",
        "invalid_ttl" => "ttl_seconds must be between 10 and 604800",
        "vcpu_count_exceeds_host" => "ask for fewer with vcpu_count",
        "mem_exceeds_host" => "ask for less with mem_mib",
        "invalid_name" or "name_taken" => "pick another name, or delete the workspace that has it with workspace_delete",
        "invalid_label" => "labels keys take letters, digits, '.', '_' or '-'",
        "seed_not_found" => "seed_path takes a directory or a .tar, .tar.gz or .tgz archive",
        "output_exists" => "pick a new output_path",
        "unknown_environment" => "vm_list_environments lists the environments",
        "workspace_not_found" => "workspace_list lists the workspaces that exist",
        "workspace_limit_reached" => "workspace_delete and vm_reap_expired make room",
        "workspace_not_running" => "workspace_start boots a stopped or crashed workspace, workspace_reset a failed one; or workspace_delete",
        "workspace_not_startable" or "supervisor_unreachable" => "workspace_status shows its state",
        "workspace_disk_missing" => "delete it with workspace_delete",
        "guest_unresponsive" => "workspace_status shows its state; workspace_stop stops it",
        "patch_partially_applied" => "workspace_reset returns it to the baseline",
        "reset_failed" => "call workspace_reset again, or workspace_delete",
        "patch_file_too_large" => "change the file with workspace_exec instead",
        "diff_too_large" => "copy the files out with workspace_export instead",
        "snapshot_not_found" => "snapshot_list lists the snapshots",
        "snapshot_exists" or "snapshot_limit_reached" => "snapshot_delete makes room",
        _ => field is null ? null : $"check {Parameter(field)}",
    };
}
