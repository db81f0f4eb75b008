using PyroMcp.Vmm;

namespace PyroMcp.Networking;

/// <summary>
/// The published ports of one workspace, keyed by host port. A guest port may be published on
/// several host ports; a host port carries one publication. At most <see cref="MaxPorts"/>.
/// </summary>
internal sealed class PortTable(GuestAgentClient agent) : IAsyncDisposable
{
    /// <summary>Published ports per workspace.</summary>
    internal const int MaxPorts = 16;

    private readonly Lock _gate = new();
    private readonly SortedDictionary<int, PortForwarder> _ports = [];
    // Host port -> the service it follows; ports published on their own have no entry.
    private readonly Dictionary<int, string> _owners = [];
    private bool _disposed;

    /// <summary>
    /// Publishes <paramref name="guestPort"/> on <paramref name="hostPort"/> (a free port when null),
    /// following <paramref name="service"/> when one is named.
    /// </summary>
    internal PublishedPort Publish(int? hostPort, int guestPort, string? service = null)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (hostPort is { } wanted && _ports.ContainsKey(wanted))
            {
                throw new PyroInputException("port_in_use",
                    $"host port {wanted} already carries {_ports[wanted].Published}; unpublish it first, choose another, or publish GUEST_PORT alone to get a free one");
            }

            if (_ports.Count >= MaxPorts)
            {
                throw new PyroInputException("port_limit",
                    $"this workspace already publishes {MaxPorts} ports, the most it may; unpublish one first");
            }

            var forwarder = PortForwarder.Open(agent, hostPort, guestPort);
            _ports.Add(forwarder.Published.HostPort, forwarder);
            if (service is not null)
            {
                _owners[forwarder.Published.HostPort] = service;
            }

            return forwarder.Published with { Service = service };
        }
    }

    /// <summary>Stops publishing <paramref name="hostPort"/>; false when it was not published.</summary>
    internal async Task<bool> UnpublishAsync(int hostPort)
    {
        PortForwarder? forwarder;
        lock (_gate)
        {
            if (!_ports.Remove(hostPort, out forwarder))
            {
                return false;
            }

            _owners.Remove(hostPort);
        }

        await forwarder.DisposeAsync().ConfigureAwait(false);
        return true;
    }

    /// <summary>The published ports, by host port.</summary>
    internal IReadOnlyList<PublishedPort> List()
    {
        lock (_gate)
        {
            return [.. _ports.Values.Select(f => f.Published with { Service = _owners.GetValueOrDefault(f.Published.HostPort) })];
        }
    }

    /// <summary>The services that own at least one port.</summary>
    internal IReadOnlySet<string> Owners()
    {
        lock (_gate)
        {
            return _owners.Values.ToHashSet(StringComparer.Ordinal);
        }
    }

    /// <summary>The host ports that follow <paramref name="service"/>.</summary>
    internal IReadOnlyList<int> PortsOf(string service)
    {
        lock (_gate)
        {
            return [.. _owners.Where(o => o.Value == service).Select(o => o.Key)];
        }
    }

    /// <summary>The forwarder of <paramref name="hostPort"/>, for its counters.</summary>
    internal PortForwarder? Find(int hostPort)
    {
        lock (_gate)
        {
            return _ports.GetValueOrDefault(hostPort);
        }
    }

    /// <summary>Closes every published port.</summary>
    public async ValueTask DisposeAsync()
    {
        PortForwarder[] all;
        lock (_gate)
        {
            _disposed = true;
            all = [.. _ports.Values];
            _ports.Clear();
            _owners.Clear();
        }

        foreach (var forwarder in all)
        {
            await forwarder.DisposeAsync().ConfigureAwait(false);
        }
    }
}
