using System.CommandLine;
using System.CommandLine.Parsing;

namespace PyroMcp.Cli;

/// <summary>
/// The CLI's half of an error: the SDK's message says what went wrong in the SDK's terms; the hint
/// names the flag or the command to type next. Keyed by the stable error code, so every code a
/// user can fix from the command line gets one.
/// </summary>
internal static class ErrorHints
{
    /// <summary>The hint for <paramref name="code"/>, or null. <paramref name="parse"/> fills in the workspace and environment the user named.</summary>
    internal static string? For(string code, string? field, ParseResult? parse)
    {
        var w = Value(parse, "workspace") ?? "WORKSPACE";
        var exec = parse?.CommandResult.Command.Name == "exec";
        return code switch
        {
            "missing_command" => exec
                ? $"put the command after --, e.g. pyro workspace exec {w} -- git status"
                : parse?.CommandResult.Command.Name == "start" && parse.CommandResult.Parent is CommandResult { Command.Name: "service" }
                    ? $"put the command after --, e.g. pyro workspace service start {w} web --ready-tcp 127.0.0.1:8080 -- python3 -m http.server 8080"
                    : "put the command after --, e.g. pyro run debian:12 -- git --version",
            "invalid_vcpu_count" => "--vcpu-count takes 1 to 32",
            "network_policy_invalid" => "--network-policy takes off, egress or egress+published-ports",
            "network_failed" => "'pyro doctor' checks passt; without --network (or with --network-policy off) the guest needs none",
            "port_invalid" => $"publish takes GUEST_PORT or HOST_PORT:GUEST_PORT, e.g. pyro workspace publish {w} 8080 (host ports 1024-65535)",
            "port_in_use" => $"pick another host port, or give only the guest port: pyro workspace publish {w} GUEST_PORT",
            "publish_not_allowed" => "create the workspace with --network-policy egress+published-ports",
            "port_not_published" => $"'pyro workspace status {w}' lists the published ports",
            "port_limit" => $"'pyro workspace unpublish {w} HOST_PORT' frees one",
            "invalid_mem_mib" => "--mem-mib takes 128 to 65536",
            "invalid_timeout" => "--timeout-seconds takes 1 to 86400",
            "invalid_ttl" => "--ttl-seconds takes 10 to 604800",
            "vcpu_count_exceeds_host" => "ask for fewer with --vcpu-count",
            "mem_exceeds_host" => "ask for less with --mem-mib",
            "invalid_name" or "name_taken" => "pick another --name, or delete the workspace that has it",
            "invalid_label" => "--label takes KEY=VALUE",
            "seed_not_found" => "--seed-path takes a directory or a .tar, .tar.gz or .tgz archive",
            "cwd_not_found" => "create the directory first, or pick another --cwd",
            "output_exists" => "pick a new --output path",
            "unknown_environment" => "see 'pyro env list'",
            "environment_unavailable" => $"run 'pyro env pull {Value(parse, "environment") ?? "ENVIRONMENT"}'",
            "kvm_unavailable" => "--accel tcg (or PYRO_ACCEL=tcg) runs guests without KVM",
            "boot_failed" or "boot_timeout" or "qemu_failed" => "if KVM is the problem, retry with --accel tcg; 'pyro doctor' checks the host",
            "agent_missing" or "supervisor_missing" or "missing_host_package" or "kernel_module_missing" => "'pyro doctor' checks the host",
            "workspace_not_found" => "see 'pyro workspace list'",
            "workspace_limit_reached" => "'pyro workspace list' shows them, 'pyro workspace delete' and 'pyro workspace reap' make room",
            "workspace_not_running" => $"'pyro workspace start {w}' boots a stopped or crashed workspace, 'pyro workspace reset {w}' a failed one; or 'pyro workspace delete {w}'",
            "workspace_not_startable" or "supervisor_unreachable" => $"'pyro workspace status {w}' shows its state",
            "workspace_disk_missing" => $"delete it with 'pyro workspace delete {w}'",
            "guest_unresponsive" => $"'pyro workspace status {w}' shows its state; 'pyro workspace stop {w}' stops it",
            "patch_partially_applied" => $"'pyro workspace reset {w}' returns it to the baseline",
            "reset_failed" => $"run 'pyro workspace reset {w}' again, or 'pyro workspace delete {w}'",
            "patch_file_too_large" => $"change the file with 'pyro workspace exec {w} -- ...' instead",
            "diff_too_large" => $"copy the files out with 'pyro workspace export {w} PATH --output DIR' instead",
            "snapshot_not_found" => $"see 'pyro workspace snapshot list {w}'",
            "snapshot_exists" or "snapshot_limit_reached" or "snapshot_too_large" => $"'pyro workspace snapshot delete {w} NAME' makes room",
            "service_name_invalid" => "a service name takes letters, digits, '.', '_' and '-' (at most 64), starting with a letter or digit",
            "service_exists" => $"'pyro workspace service stop {w} NAME' stops the running one, or pick another name",
            "service_limit" => $"'pyro workspace service list {w}' shows them; 'pyro workspace service stop {w} NAME' makes room",
            "service_not_found" => $"see 'pyro workspace service list {w}'",
            "service_not_ready" => $"'pyro workspace service logs {w} NAME' shows why; a slow start needs a longer --ready-timeout-seconds",
            "service_exited" => $"'pyro workspace service logs {w} NAME' shows its output",
            "readiness_invalid" => "give at most one of --ready-file, --ready-tcp HOST:PORT, --ready-http http://URL, --ready-command CMD; --ready-timeout-seconds takes 1 to 600, --ready-interval-ms 50 to 60000",
            "shell_not_found" or "shell_closed" => $"see 'pyro workspace shell list {w}'; 'pyro workspace shell open {w}' opens a new one",
            "shell_limit" => $"'pyro workspace shell close {w} SHELL_ID' makes room (see 'pyro workspace shell list {w}')",
            "shell_size_invalid" => "--cols takes 10 to 1000, --rows 5 to 1000",
            "shell_input_too_large" => $"write at most 64 KiB at a time, or copy a file in with 'pyro workspace file write {w} PATH --file HOST_FILE'",
            "signal_invalid" => "--signal takes INT, TERM, HUP, KILL, QUIT, TSTP, CONT, USR1 or USR2",
            _ => field is null ? null : $"check {Flag(field)}",
        };
    }

    /// <summary>The flag of a request property, or its positional argument in capitals.</summary>
    internal static string Flag(string field) => field switch
    {
        nameof(RunRequest.Environment) => "ENVIRONMENT",
        nameof(RunRequest.Command) => "the command after --",
        nameof(WorkspaceCreateRequest.Labels) => "--label",
        nameof(ServiceStartRequest.Readiness) => "the --ready-* flag",
        _ => "--" + string.Concat(field.Select((c, i) => char.IsUpper(c) ? (i > 0 ? "-" : "") + char.ToLowerInvariant(c) : c.ToString())),
    };

    /// <summary>The value the user gave the argument <paramref name="name"/> of the running command, if it has one.</summary>
    private static string? Value(ParseResult? parse, string name)
        => parse?.CommandResult.Children.OfType<ArgumentResult>().FirstOrDefault(a => a.Argument.Name == name)?.Tokens is [{ } token, ..] ? token.Value : null;
}
