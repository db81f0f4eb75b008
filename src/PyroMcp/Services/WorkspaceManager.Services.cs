using System.Globalization;
using System.Text.RegularExpressions;
using PyroMcp.Networking;
using PyroMcp.Protocol;
using PyroMcp.Vmm;

namespace PyroMcp.Workspaces;

/// <summary>
/// Services: long-running processes the guest agent supervises. The agent owns them (process
/// groups, readiness, logs on the guest disk outside /workspace); the supervisor owns the host
/// ports that follow them. These calls check the request, ask the agent, and bound what it says.
/// </summary>
internal sealed partial class WorkspaceManager
{
    internal const int MaxReadyTimeoutSeconds = 600;
    internal const int MaxTailLines = 5000;

    private static readonly string[] ReadinessTypes = ["file", "tcp", "http", "command"];

    // The agent's refusals of service and shell calls that are about the request, not about the guest.
    private static readonly HashSet<string> SessionInputCodes = new(StringComparer.Ordinal)
    {
        "service_name_invalid", "service_exists", "service_limit", "service_not_found", "readiness_invalid", "cwd_not_found", "bad_request", "bad_env",
        "shell_size_invalid", "shell_limit", "shell_not_found", "shell_closed", "shell_input_too_large", "shell_input_blocked", "signal_invalid",
    };

    internal async Task<WorkspaceService> StartServiceAsync(string idOrName, ServiceStartRequest request, CancellationToken cancellationToken)
    {
        CheckServiceName(request.Name);
        if (string.IsNullOrWhiteSpace(request.Command))
        {
            throw new PyroInputException("bad_request", "the service needs a command: give it after --, e.g. -- python3 -m http.server 8080", nameof(ServiceStartRequest.Command));
        }

        if (System.Text.Encoding.UTF8.GetByteCount(request.Command) > ServiceRequest.MaxCommandBytes)
        {
            throw new PyroInputException("bad_request", $"the service command is over {ServiceRequest.MaxCommandBytes / 1024} KiB; put it in a script in the workspace and run that", nameof(ServiceStartRequest.Command));
        }

        CheckReadiness(request.Readiness);
        if (request.ReadyTimeoutSeconds is < 1 or > MaxReadyTimeoutSeconds)
        {
            throw new PyroInputException("readiness_invalid", $"the readiness timeout must be 1 to {MaxReadyTimeoutSeconds} seconds (got {request.ReadyTimeoutSeconds})", nameof(ServiceStartRequest.ReadyTimeoutSeconds));
        }

        if (request.ReadyIntervalMs is < 50 or > 60_000)
        {
            throw new PyroInputException("readiness_invalid", $"the readiness interval must be 50 to 60000 ms (got {request.ReadyIntervalMs})", nameof(ServiceStartRequest.ReadyIntervalMs));
        }

        var publications = request.Publish.Select(PortPublication.Parse).ToList();
        if (publications.Count > PortTable.MaxPorts)
        {
            throw new PyroInputException("port_limit", $"a workspace publishes at most {PortTable.MaxPorts} ports (asked for {publications.Count})", nameof(ServiceStartRequest.Publish));
        }

        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        if (publications.Count > 0)
        {
            RequirePublishing(record);
        }

        var body = new ServiceRequest
        {
            Name = request.Name,
            Command = request.Command,
            Cwd = GuestPath(request.Cwd),
            Env = request.Env,
            SecretEnv = SecretEnvFor(record, request.SecretEnv, request.Env, nameof(ServiceStartRequest.SecretEnv)),
            Readiness = request.Readiness is { } r ? new ReadinessProbe { Type = r.Type, Target = r.Target } : null,
            ReadyTimeoutMs = request.ReadyTimeoutSeconds * 1000,
            ReadyIntervalMs = request.ReadyIntervalMs,
        };
        var started = await SessionCallAsync(record, new AgentRequest { Op = AgentOps.ServiceStart, Service = body }, cancellationToken).ConfigureAwait(false);
        var service = ToService(record.Id, started.Service, []);
        if (publications.Count == 0)
        {
            return service;
        }

        // Published once ready, so a port never points at a service that failed to come up.
        var ports = new List<PublishedPort>();
        try
        {
            foreach (var (hostPort, guestPort) in publications)
            {
                var published = await PortCallAsync(record, WorkspaceSupervisor.PublishOp,
                    new PortMapping { HostPort = hostPort ?? 0, GuestPort = guestPort, Service = service.Name }, cancellationToken).ConfigureAwait(false);
                ports.Add(published[0]);
            }
        }
        catch (Exception ex) when (ex is PyroException or OperationCanceledException)
        {
            // All or nothing: the service does not stay up without the ports it was asked to have.
            await StopServiceQuietlyAsync(record, service.Name).ConfigureAwait(false);
            throw;
        }

        return service with { PublishedPorts = ports };
    }

    internal async Task<WorkspaceServiceList> ListServicesAsync(string idOrName, CancellationToken cancellationToken)
    {
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var response = await SessionCallAsync(record, new AgentRequest { Op = AgentOps.ServiceList }, cancellationToken).ConfigureAwait(false);
        return new WorkspaceServiceList
        {
            WorkspaceId = record.Id,
            Services = [.. (response.Services ?? []).Take(256).Select(s => ToService(record.Id, s, record.PublishedPorts))],
        };
    }

    internal async Task<WorkspaceService> GetServiceAsync(string idOrName, string name, CancellationToken cancellationToken)
    {
        CheckServiceName(name);
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var response = await SessionCallAsync(record, new AgentRequest { Op = AgentOps.ServiceStatus, Service = new ServiceRequest { Name = name } }, cancellationToken).ConfigureAwait(false);
        return ToService(record.Id, response.Service, record.PublishedPorts);
    }

    internal async Task<WorkspaceServiceLogs> GetServiceLogsAsync(string idOrName, string name, int tailLines, CancellationToken cancellationToken)
    {
        CheckServiceName(name);
        if (tailLines is < 1 or > MaxTailLines)
        {
            throw new PyroInputException("invalid_tail_lines", $"--tail-lines must be 1 to {MaxTailLines} (got {tailLines})", "tail_lines");
        }

        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var response = await SessionCallAsync(record, new AgentRequest { Op = AgentOps.ServiceLogs, Service = new ServiceRequest { Name = name, TailLines = tailLines } }, cancellationToken).ConfigureAwait(false);
        var logs = response.ServiceLogs ?? throw new GuestChannelException("guest_protocol", "the guest agent answered service.logs without logs");
        return new WorkspaceServiceLogs
        {
            Service = ToService(record.Id, logs.Service, record.PublishedPorts),
            Stdout = TailText(logs.Stdout, tailLines),
            Stderr = TailText(logs.Stderr, tailLines),
            TailLines = tailLines,
            Truncated = logs.Truncated,
        };
    }

    internal async Task<WorkspaceService> StopServiceAsync(string idOrName, string name, CancellationToken cancellationToken)
    {
        CheckServiceName(name);
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var response = await SessionCallAsync(record, new AgentRequest { Op = AgentOps.ServiceStop, Service = new ServiceRequest { Name = name } }, cancellationToken).ConfigureAwait(false);
        if (record.NetworkPolicy.AllowsPublishing())
        {
            await PortCallAsync(record, WorkspaceSupervisor.ReleaseServiceOp, new PortMapping { Service = name }, cancellationToken).ConfigureAwait(false);
        }

        return ToService(record.Id, response.Service, []);
    }

    /// <summary>Counts for status: null when the guest cannot be asked (not running, or an agent that does not answer).</summary>
    private async Task<(int Services, int Running, int Shells)?> SessionCountsAsync(WorkspaceRecord record, CancellationToken cancellationToken)
    {
        try
        {
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            limit.CancelAfter(TimeSpan.FromSeconds(10));
            var connection = await ConnectToSupervisorAsync(Store, record.Id, limit.Token).ConfigureAwait(false);
            await using var connectionScope = connection.ConfigureAwait(false);
            var services = await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.ServiceList }, null, null, limit.Token).ConfigureAwait(false);
            var shells = await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.ShellList }, null, null, limit.Token).ConfigureAwait(false);
            var list = services.Services ?? [];
            return (list.Count, list.Count(s => s.State == "running"), (shells.Shells ?? []).Count(s => s.State != "closed"));
        }
        catch (Exception ex) when (ex is PyroException or IOException or OperationCanceledException)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return null;
        }
    }

    private async Task StopServiceQuietlyAsync(WorkspaceRecord record, string name)
    {
        try
        {
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await SessionCallAsync(record, new AgentRequest { Op = AgentOps.ServiceStop, Service = new ServiceRequest { Name = name } }, limit.Token).ConfigureAwait(false);
            await PortCallAsync(record, WorkspaceSupervisor.ReleaseServiceOp, new PortMapping { Service = name }, limit.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is PyroException or OperationCanceledException or IOException)
        {
            // The first failure is the one the caller hears about; the supervisor's watch releases the ports anyway.
        }
    }

    private async Task<AgentResponse> SessionCallAsync(WorkspaceRecord record, AgentRequest request, CancellationToken cancellationToken)
    {
        var connection = await ConnectAsync(record, cancellationToken).ConfigureAwait(false);
        await using var connectionScope = connection.ConfigureAwait(false);
        try
        {
            return await connection.Agent.CallAsync(request, null, null, cancellationToken).ConfigureAwait(false);
        }
        catch (GuestOperationException ex) when (SessionInputCodes.Contains(ex.Code))
        {
            throw new PyroInputException(ex.Code, ex.Message);
        }
        catch (GuestOperationException ex) when (ex.Code == "unknown_op")
        {
            throw new GuestOperationException("agent_too_old", $"the guest agent of workspace {record.Id} does not know {request.Op}; reset the workspace to boot it with the current agent");
        }
    }

    private static void CheckServiceName(string? name)
    {
        if (name is null || !ServiceNamePattern().IsMatch(name))
        {
            throw new PyroInputException("service_name_invalid",
                $"invalid service name '{GuestAgentClient.Sanitize(name, 80)}': use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", "service_name");
        }
    }

    internal static void CheckReadiness(ServiceReadiness? readiness)
    {
        if (readiness is null)
        {
            return;
        }

        if (!ReadinessTypes.Contains(readiness.Type, StringComparer.Ordinal))
        {
            throw new PyroInputException("readiness_invalid", $"unknown readiness type '{GuestAgentClient.Sanitize(readiness.Type, 40)}': use file, tcp, http or command", "readiness");
        }

        if (string.IsNullOrWhiteSpace(readiness.Target) || readiness.Target.Length > 4096)
        {
            throw new PyroInputException("readiness_invalid", $"the {readiness.Type} readiness check needs a target of at most 4096 characters", "readiness");
        }

        var problem = readiness.Type switch
        {
            "tcp" when !TcpTargetPattern().IsMatch(readiness.Target) || !int.TryParse(readiness.Target[(readiness.Target.LastIndexOf(':') + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535
                => $"--ready-tcp takes HOST:PORT inside the guest, e.g. 127.0.0.1:8080 (got '{GuestAgentClient.Sanitize(readiness.Target, 80)}')",
            "http" when !Uri.TryCreate(readiness.Target, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp
                => $"--ready-http takes an http:// URL inside the guest, e.g. http://127.0.0.1:8080/ (got '{GuestAgentClient.Sanitize(readiness.Target, 80)}')",
            _ => null,
        };
        if (problem is not null)
        {
            throw new PyroInputException("readiness_invalid", problem, "readiness");
        }
    }

    /// <summary>A service as the guest describes it, bounded and checked: the guest's words are claims.</summary>
    internal static WorkspaceService ToService(string workspaceId, ServiceInfo? info, IReadOnlyList<PublishedPort> ports)
    {
        if (info is null)
        {
            throw new GuestChannelException("guest_protocol", "the guest agent answered a service call without the service");
        }

        var name = OneLine(info.Name, ServiceRequest.MaxNameLength);
        var state = info.State is "starting" or "running" or "exited" or "stopped" or "failed" ? info.State : "unknown";
        return new WorkspaceService
        {
            WorkspaceId = workspaceId,
            Name = name,
            State = state,
            Command = GuestAgentClient.Sanitize(info.Command, ServiceRequest.MaxCommandBytes),
            Cwd = OneLine(info.Cwd, 4096),
            Readiness = info.Readiness is { } r ? new ServiceReadiness(OneLine(r.Type, 16), OneLine(r.Target, 4096)) : null,
            Pid = state is "running" or "starting" && info.Pid > 0 ? info.Pid : null,
            ExitCode = info.ExitCode,
            StartedAt = Time(info.StartedAtMs),
            EndedAt = info.EndedAtMs is { } ended ? Time(ended) : null,
            Reason = info.Reason is null ? null : OneLine(info.Reason, 2000),
            LastProbe = info.LastProbe is null ? null : OneLine(info.LastProbe, 2000),
            PublishedPorts = state is "running" or "starting" ? [.. ports.Where(p => p.Service == name)] : [],
        };
    }

    /// <summary>A field the CLI prints on one line of its own: no control characters, newlines included.</summary>
    internal static string OneLine(string? text, int maxLength) => GuestAgentClient.Sanitize(text, maxLength).Replace('\n', ' ');

    private static DateTimeOffset? Time(long unixMs)
        => unixMs is > 0 and < 253402300799999 ? DateTimeOffset.FromUnixTimeMilliseconds(unixMs) : null;

    /// <summary>At most <paramref name="lines"/> lines and 256 KiB of a log tail, whatever the guest sent; control characters but tab and newline removed.</summary>
    internal static string TailText(string? text, int lines)
    {
        var clean = new string((text ?? "").Where(c => !char.IsControl(c) || c is '\n' or '\t').ToArray());
        if (clean.Length > 256 * 1024)
        {
            clean = clean[^(256 * 1024)..];
        }

        var end = clean.Length;
        var seen = 0;
        for (var i = clean.Length - 1; i >= 0; i--)
        {
            if (clean[i] == '\n' && i != clean.Length - 1 && ++seen == lines)
            {
                return clean[(i + 1)..end];
            }
        }

        return clean;
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex ServiceNamePattern();

    [GeneratedRegex(@"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$")]
    private static partial Regex TcpTargetPattern();
}
