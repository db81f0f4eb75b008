using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace PyroMcp.Server;

/// <summary>The service tools (workspace-full): long-running processes in a workspace.</summary>
public sealed partial class PyroTools
{
    private const string ServiceName = "The service's name, as given to service_start.";

    /// <summary>Told in every exec, shell and service tool, so the model picks the right one of the three.</summary>
    private const string WhichTool = """
        Which tool: workspace_exec for one command that ends (a build, a test run); shell_open/shell_write/shell_read
        for interactive programs or state kept between calls (a REPL, a debugger, cd and variables), reading output
        with the cursor; service_start for a long-running process such as a web server, with a readiness check,
        published ports and logs (service_logs).
        """;

    /// <summary>Longest readiness target the server passes on; the guest bounds it again.</summary>
    internal const int MaxReadinessTarget = 16 * 1024;

    /// <summary>Most published_ports entries in one call: a workspace publishes at most 16 ports.</summary>
    internal const int MaxPublishedPorts = 16;

    /// <summary>service_start.</summary>
    [McpServerTool(Name = "service_start", OpenWorld = false)]
    [Description("""
        Starts a long-running process (a web server, a watcher, a database) in a workspace and waits until its readiness
        check passes. The command runs through /bin/sh -c in its own process group and keeps running after this call
        returns. A service that is not ready within ready_timeout_seconds, or exits first, is stopped and the call fails
        (service_not_ready, service_exited) with the last probe and the end of its logs; read more with service_logs.
        Guest ports in published_ports are reachable on the host's 127.0.0.1 while the service runs (the workspace
        needs network_policy egress+published-ports). Returns the service: state, pid, readiness, last_probe,
        published_ports. Progress is reported while it waits.
        """ + "\n" + WhichTool)]
    public Task<CallToolResult> ServiceStart(
        RequestContext<CallToolRequestParams> context,
        [Description(WorkspaceId)] string workspace_id,
        [Description("Unique name in the workspace: letters, digits, '.', '_', '-'; at most 64, starting with a letter or digit.")] string service_name,
        [Description(ShellCommand)] string command,
        [Description("Working directory; relative paths are under /workspace.")] string cwd = "/workspace",
        [Description("""
            How to tell the service is ready, checked inside the guest; omit to treat it as ready once started. An object
            with "type" and its target: {"type": "http", "url": "http://127.0.0.1:8080/"} (answers 2xx or 3xx),
            {"type": "tcp", "address": "127.0.0.1:8080"} (accepts a connection), {"type": "file", "path": "ready.flag"}
            (exists; relative to cwd), {"type": "command", "command": "pg_isready"} (exits 0). "target" may stand for any
            of url, address, path or command.
            """)] JsonElement? readiness = null,
        [Description("Seconds the service has to become ready, 1 to 600; it is stopped if it is not."), Range(1, 600)] int ready_timeout_seconds = 30,
        [Description("Milliseconds between readiness checks, 50 to 60000."), Range(50, 60000)] int ready_interval_ms = 500,
        [Description("""
            Guest TCP ports to publish on the host's 127.0.0.1 while the service runs, at most 16: "8080" (a free host
            port is picked), "18080:8080" (HOST:GUEST; host ports 1024-65535), or {"host_port": 18080, "guest_port": 8080}.
            Released when the service stops, exits or fails.
            """)] JsonElement? published_ports = null,
        [Description(SecretEnvParameter)] JsonElement? secret_env = null,
        CancellationToken cancellationToken = default)
        => Guard(context, async progress =>
        {
            var request = new ServiceStartRequest
            {
                Name = service_name,
                Command = command,
                Cwd = cwd,
                Readiness = ParseReadiness(readiness),
                ReadyTimeoutSeconds = CheckRange(ready_timeout_seconds, 1, 600, "ready_timeout_seconds", "readiness_invalid"),
                ReadyIntervalMs = CheckRange(ready_interval_ms, 50, 60000, "ready_interval_ms", "readiness_invalid"),
                Publish = ParsePublishedPorts(published_ports),
                SecretEnv = ParseSecretEnv(secret_env),
            };
            if (request.Publish.Count > 0 && !_policy.MaxNetworkPolicy.AllowsPublishing())
            {
                throw new ToolError("network_policy_not_allowed",
                    $"this MCP server allows guest networks up to '{_policy.MaxNetworkPolicy.ToName()}' (the operator's 'pyro mcp serve --max-network-policy'), which publishes no ports; call again without published_ports, or ask the operator.");
            }

            if (request.Readiness is { } probe)
            {
                progress?.Report(new PyroProgress("workspace-service-start", "wait_ready",
                    [new("service", service_name), new("readiness", probe.ToString()), new("timeout_seconds", request.ReadyTimeoutSeconds.ToString(CultureInfo.InvariantCulture))]));
            }

            var service = await _pyro.StartServiceAsync(workspace_id, request, cancellationToken).ConfigureAwait(false);
            return Ok(Json(service, PyroJsonContext.Default.WorkspaceService), ServiceSummary(service));
        });

    /// <summary>service_list.</summary>
    [McpServerTool(Name = "service_list", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("Lists a workspace's services, running or not: name, state (running, exited, stopped, failed), command, readiness, exit_code, published_ports; and how many run.")]
    public Task<CallToolResult> ServiceList([Description(WorkspaceId)] string workspace_id, CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var all = await _pyro.ListServicesAsync(workspace_id, cancellationToken).ConfigureAwait(false);
            var json = Json(all, PyroJsonContext.Default.WorkspaceServiceList);
            json["running"] = all.Running;
            json["count"] = all.Services.Count;
            return Ok(json, all.Services.Count == 0
                ? $"workspace {all.WorkspaceId} has no services"
                : $"{all.Services.Count} service(s), {all.Running} running" + string.Concat(all.Services.Select(s => "\n" + ServiceSummary(s))));
        });

    /// <summary>service_status.</summary>
    [McpServerTool(Name = "service_status", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("Shows one service: state, command, cwd, readiness and what the last probe saw, pid while it runs, exit_code and reason once it ended, published_ports.")]
    public Task<CallToolResult> ServiceStatus(
        [Description(WorkspaceId)] string workspace_id,
        [Description(ServiceName)] string service_name,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var service = await _pyro.GetServiceAsync(workspace_id, service_name, cancellationToken).ConfigureAwait(false);
            return Ok(Json(service, PyroJsonContext.Default.WorkspaceService), ServiceSummary(service));
        });

    /// <summary>service_logs.</summary>
    [McpServerTool(Name = "service_logs", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("Returns the last tail_lines lines of a service's stdout and stderr (running or not), and the service. truncated is true when older output exists that is not shown.")]
    public Task<CallToolResult> ServiceLogs(
        [Description(WorkspaceId)] string workspace_id,
        [Description(ServiceName)] string service_name,
        [Description("Lines of each stream, 1 to 5000."), Range(1, 5000)] int tail_lines = 200,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            CheckRange(tail_lines, 1, 5000, "tail_lines", "invalid_tail_lines");
            var logs = await _pyro.GetServiceLogsAsync(workspace_id, service_name, tail_lines, cancellationToken).ConfigureAwait(false);
            return Ok(Json(logs, PyroJsonContext.Default.WorkspaceServiceLogs), ServiceSummary(logs.Service) + (logs.Truncated ? $"; showing the last {tail_lines} lines of each stream" : ""),
                detail: $"--- stdout ---\n{logs.Stdout}\n--- stderr ---\n{logs.Stderr}");
        });

    /// <summary>service_stop.</summary>
    [McpServerTool(Name = "service_stop", Destructive = true, Idempotent = true, OpenWorld = false)]
    [Description("Stops a service: TERM to its whole process group, KILL after a grace period. Its published ports are released; its logs stay readable with service_logs. Stopping a service that is not running returns it as it is.")]
    public Task<CallToolResult> ServiceStop(
        [Description(WorkspaceId)] string workspace_id,
        [Description(ServiceName)] string service_name,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var service = await _pyro.StopServiceAsync(workspace_id, service_name, cancellationToken).ConfigureAwait(false);
            return Ok(Json(service, PyroJsonContext.Default.WorkspaceService), ServiceSummary(service));
        });

    private static string ServiceSummary(WorkspaceService s)
        => $"service {s.Name} is {s.State}"
            + (s.ExitCode is { } exit ? $" (exit_code {exit})" : "")
            + (s.Reason is { } reason ? $": {reason}" : "")
            + (s.PublishedPorts.Count > 0 ? $"; published {string.Join(", ", s.PublishedPorts)}" : "");

    /// <summary>A tool's integer argument in its range, or <paramref name="code"/>: the schema's bounds are advice to the client, not a check.</summary>
    internal static int CheckRange(int value, int min, int max, string parameter, string code)
        => value >= min && value <= max
            ? value
            : throw new ToolError(code, $"{parameter} must be between {min} and {max} (got {value})");

    /// <summary>
    /// The readiness object: <c>type</c> and exactly one target, named after the type (<c>path</c>,
    /// <c>address</c>, <c>url</c>, <c>command</c>) or <c>target</c>. Anything else is refused rather than
    /// ignored, so a misspelt key cannot silently start a service with no readiness check.
    /// </summary>
    internal static ServiceReadiness? ParseReadiness(JsonElement? readiness)
    {
        if (readiness is not { } value || value.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined)
        {
            return null;
        }

        const string Example = "e.g. {\"type\": \"http\", \"url\": \"http://127.0.0.1:8080/\"} or {\"type\": \"tcp\", \"address\": \"127.0.0.1:8080\"}";
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new ToolError("readiness_invalid", $"readiness must be an object with a type and its target, {Example}");
        }

        string[] targets = ["path", "address", "url", "command", "target"];
        string? type = null;
        var given = new List<(string Key, string Value)>();
        foreach (var property in value.EnumerateObject())
        {
            if (property.Name == "type")
            {
                type = property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString() : null;
                if (type is null)
                {
                    throw new ToolError("readiness_invalid", $"readiness.type must be one of \"file\", \"tcp\", \"http\", \"command\", {Example}");
                }
            }
            else if (targets.Contains(property.Name))
            {
                if (property.Value.ValueKind != JsonValueKind.String || property.Value.GetString() is not { Length: > 0 and <= MaxReadinessTarget } target)
                {
                    throw new ToolError("readiness_invalid", $"readiness.{property.Name} must be a non-empty string of at most {MaxReadinessTarget} characters");
                }

                given.Add((property.Name, target));
            }
            else
            {
                throw new ToolError("readiness_invalid", $"readiness has no property '{Shown(property.Name)}': give type and one of path, address, url, command or target, {Example}");
            }
        }

        var expected = type switch
        {
            "file" => "path",
            "tcp" => "address",
            "http" => "url",
            "command" => "command",
            null => throw new ToolError("readiness_invalid", $"readiness needs a type, {Example}"),
            _ => throw new ToolError("readiness_invalid", $"readiness.type '{Shown(type)}' is not one of \"file\", \"tcp\", \"http\", \"command\""),
        };
        return given switch
        {
            [] => throw new ToolError("readiness_invalid", $"readiness of type {type} needs its target in \"{expected}\" (or \"target\")"),
            [var one] when one.Key == expected || one.Key == "target" => new ServiceReadiness(type, one.Value),
            [var one] => throw new ToolError("readiness_invalid", $"readiness of type {type} takes \"{expected}\" (or \"target\"), not \"{one.Key}\""),
            _ => throw new ToolError("readiness_invalid", $"readiness takes one target, got {string.Join(" and ", given.Select(g => g.Key))}"),
        };
    }

    /// <summary>
    /// published_ports as the SDK's <c>GUEST</c> / <c>HOST:GUEST</c> strings: a list of those strings, of guest port
    /// numbers, or of <c>{host_port, guest_port}</c> objects. Numbers are checked here; the SDK checks the strings again.
    /// </summary>
    internal static IReadOnlyList<string> ParsePublishedPorts(JsonElement? ports)
    {
        if (ports is not { } value || value.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined)
        {
            return [];
        }

        const string Forms = "give a list of \"GUEST_PORT\" or \"HOST_PORT:GUEST_PORT\" strings or {\"host_port\": H, \"guest_port\": G} objects (guest ports 1-65535, host ports 1024-65535)";
        if (value.ValueKind != JsonValueKind.Array)
        {
            throw new ToolError("port_invalid", $"published_ports must be a list: {Forms}");
        }

        if (value.GetArrayLength() > MaxPublishedPorts)
        {
            throw new ToolError("port_limit", $"published_ports has {value.GetArrayLength()} entries; a workspace publishes at most {MaxPublishedPorts} ports");
        }

        var result = new List<string>();
        foreach (var item in value.EnumerateArray())
        {
            switch (item.ValueKind)
            {
                case JsonValueKind.String:
                    var text = item.GetString()!;
                    var parts = text.Split(':');
                    if (parts.Length > 2 || parts.Any(p => p.Length is 0 or > 5 || !p.All(char.IsAsciiDigit)))
                    {
                        throw new ToolError("port_invalid", $"published_ports entry '{Shown(text)}' is not a port: {Forms}");
                    }

                    result.Add(Spec(parts.Length == 2 ? Port(parts[0], host: true) : null, Port(parts[^1], host: false)));
                    break;
                case JsonValueKind.Number when item.TryGetInt32(out var guest):
                    result.Add(Spec(null, CheckPort(guest, host: false)));
                    break;
                case JsonValueKind.Object:
                    int? hostPort = null;
                    int? guestPort = null;
                    foreach (var property in item.EnumerateObject())
                    {
                        var number = property.Value.ValueKind == JsonValueKind.Number && property.Value.TryGetInt32(out var n) ? n
                            : property.Value.ValueKind == JsonValueKind.String && property.Value.GetString() is { Length: > 0 and <= 5 } s && s.All(char.IsAsciiDigit) ? int.Parse(s, CultureInfo.InvariantCulture)
                            : throw new ToolError("port_invalid", $"published_ports.{Shown(property.Name)} must be a port number: {Forms}");
                        switch (property.Name)
                        {
                            case "host_port":
                                hostPort = CheckPort(number, host: true);
                                break;
                            case "guest_port":
                                guestPort = CheckPort(number, host: false);
                                break;
                            default:
                                throw new ToolError("port_invalid", $"published_ports entries have no property '{Shown(property.Name)}': {Forms}");
                        }
                    }

                    result.Add(Spec(hostPort, guestPort ?? throw new ToolError("port_invalid", $"a published_ports object needs guest_port: {Forms}")));
                    break;
                default:
                    throw new ToolError("port_invalid", $"published_ports entries must be strings, numbers or objects: {Forms}");
            }
        }

        return result;

        static int Port(string digits, bool host) => CheckPort(int.Parse(digits, CultureInfo.InvariantCulture), host);

        static int CheckPort(int port, bool host)
            => (host ? port is >= 1024 and <= 65535 : port is >= 1 and <= 65535)
                ? port
                : throw new ToolError("port_invalid", $"{(host ? "host" : "guest")} port {port} is out of range: {Forms}");

        static string Spec(int? host, int guest)
            => host is { } h ? string.Create(CultureInfo.InvariantCulture, $"{h}:{guest}") : guest.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>A model's text echoed in an error: bounded, without control characters.</summary>
    private static string Shown(string text) => new(text.Where(c => !char.IsControl(c)).Take(64).ToArray());
}
