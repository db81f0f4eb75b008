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
        "service_name_invalid" => "service_name takes letters, digits, '.', '_' and '-' (at most 64), starting with a letter or digit",
        "service_exists" => "service_stop stops the running one, or pick another service_name",
        "service_limit" => "service_list shows them; service_stop makes room",
        "service_not_found" => "service_list lists the workspace's services",
        "service_not_ready" => "service_logs shows why; a slow start needs a larger ready_timeout_seconds, a wrong check another readiness",
        "service_exited" => "service_logs shows its output",
        "readiness_invalid" => "readiness is an object such as {\"type\": \"http\", \"url\": \"http://127.0.0.1:8080/\"} (types file/path, tcp/address, http/url, command/command); ready_timeout_seconds 1 to 600, ready_interval_ms 50 to 60000",
        "port_invalid" => "published_ports entries are \"GUEST_PORT\", \"HOST_PORT:GUEST_PORT\" or {\"host_port\": H, \"guest_port\": G}; host ports 1024-65535",
        "port_in_use" => "pick another host port, or give only the guest port",
        "port_limit" => "a workspace publishes at most 16 ports; stop a service that publishes some",
        "publish_not_allowed" => "published ports need a workspace created with network_policy egress+published-ports",
        "shell_not_found" or "shell_closed" => "shell_open opens a new shell",
        "shell_limit" => "shell_close closes shells you no longer need",
        "shell_size_invalid" => "cols takes 10 to 1000, rows 5 to 1000",
        "shell_input_too_large" => "write at most 64 KiB at a time, or write a file with workspace_file_write",
        "signal_invalid" => "signal_name takes INT, TERM, HUP, KILL, QUIT, TSTP, CONT, USR1 or USR2",
        "invalid_max_chars" => "max_chars must be between 1 and 262144",
        "invalid_cursor" => "cursor takes 0 or the next_cursor of the last shell_read",
        "invalid_tail_lines" => "tail_lines must be between 1 and 5000",
        _ => field is null ? null : $"check {Parameter(field)}",
    };
}
