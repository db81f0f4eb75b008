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
    private bool _disposed;

    /// <summary>Publishes <paramref name="guestPort"/> on <paramref name="hostPort"/> (a free port when null).</summary>
    internal PublishedPort Publish(int? hostPort, int guestPort)
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
            return forwarder.Published;
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
        }

        await forwarder.DisposeAsync().ConfigureAwait(false);
        return true;
    }

    /// <summary>The published ports, by host port.</summary>
    internal IReadOnlyList<PublishedPort> List()
    {
        lock (_gate)
        {
            return [.. _ports.Values.Select(f => f.Published)];
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
        }

        foreach (var forwarder in all)
        {
            await forwarder.DisposeAsync().ConfigureAwait(false);
        }
    }
}
