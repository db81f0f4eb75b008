using PyroMcp.Networking;
using PyroMcp.Protocol;

namespace PyroMcp.Workspaces;

/// <summary>Published ports: the supervisor holds the listeners; these calls ask it for changes.</summary>
internal sealed partial class WorkspaceManager
{
    internal async Task<PublishedPort> PublishAsync(string idOrName, string publication, CancellationToken cancellationToken)
    {
        var (hostPort, guestPort) = PortPublication.Parse(publication);
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        RequirePublishing(record);
        var ports = await PortCallAsync(record, WorkspaceSupervisor.PublishOp, new PortMapping { HostPort = hostPort ?? 0, GuestPort = guestPort }, cancellationToken).ConfigureAwait(false);
        // The supervisor answers with the new port first.
        return ports.Count > 0 ? ports[0] : throw new GuestChannelException("supervisor_protocol", $"the supervisor of workspace {record.Id} published nothing and said no error");
    }

    internal async Task<IReadOnlyList<PublishedPort>> UnpublishAsync(string idOrName, int hostPort, CancellationToken cancellationToken)
    {
        PortPublication.CheckHostPort(hostPort);
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        RequirePublishing(record);
        return await PortCallAsync(record, WorkspaceSupervisor.UnpublishOp, new PortMapping { HostPort = hostPort }, cancellationToken).ConfigureAwait(false);
    }

    private static void RequirePublishing(WorkspaceRecord record)
    {
        if (!record.NetworkPolicy.AllowsPublishing())
        {
            throw PublishNotAllowed(record);
        }
    }

    /// <summary>The one refusal of a port for a workspace whose policy publishes none, wherever it is noticed.</summary>
    internal static PyroInputException PublishNotAllowed(WorkspaceRecord record)
        => new("publish_not_allowed",
            $"workspace {record.Id} has network policy {record.NetworkPolicy.ToName()}; only a workspace created with egress+published-ports publishes guest ports (the policy is fixed at creation)");

    private async Task<IReadOnlyList<PublishedPort>> PortCallAsync(WorkspaceRecord record, string op, PortMapping mapping, CancellationToken cancellationToken)
    {
        var connection = await ConnectAsync(record, cancellationToken).ConfigureAwait(false);
        await using var connectionScope = connection.ConfigureAwait(false);
        AgentResponse response;
        try
        {
            response = await connection.Agent.CallAsync(new AgentRequest { Op = op, Port = mapping }, null, null, cancellationToken).ConfigureAwait(false);
        }
        catch (GuestOperationException ex) when (ex.Code is "port_in_use" or "port_invalid" or "port_limit" or "port_not_published" or "publish_not_allowed")
        {
            // The supervisor's refusals are about the request, not the guest.
            throw new PyroInputException(ex.Code, ex.Message);
        }

        return [.. (response.Ports ?? []).Select(p => new PublishedPort { HostPort = p.HostPort, GuestPort = p.GuestPort, Service = p.Service })];
    }
}
