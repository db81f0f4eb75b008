using System.Net;
using System.Net.Sockets;
using PyroMcp.Vmm;

namespace PyroMcp.Networking;

/// <summary>
/// One published port: a listener on 127.0.0.1:HOST_PORT whose every connection becomes a
/// tcp.connect stream to 127.0.0.1:GUEST_PORT in the guest. It lives in the workspace's supervisor,
/// so it dies with it. The listener is on the IPv4 loopback only, never a wildcard address: a
/// published port is for this host's own clients. At most <see cref="MaxConnections"/> connections
/// are carried at once; more are accepted and reset at once, so a flood costs a count, not memory.
/// </summary>
internal sealed class PortForwarder : IAsyncDisposable
{
    /// <summary>Connections carried at once per published port.</summary>
    internal const int MaxConnections = 64;

    private readonly GuestAgentClient _agent;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _closing = new();
    private readonly Lock _gate = new();
    private readonly HashSet<Connection> _connections = [];
    private Task _accepting = Task.CompletedTask;
    private long _accepted;
    private long _refused;
    private long _failed;
    private bool _disposed;

    private PortForwarder(GuestAgentClient agent, Socket listener, PublishedPort published)
    {
        _agent = agent;
        _listener = listener;
        Published = published;
    }

    /// <summary>What is published, with the host port the kernel gave when none was asked for.</summary>
    internal PublishedPort Published { get; }

    /// <summary>The address the listener is bound to, as the kernel reports it.</summary>
    internal IPEndPoint ListenerEndPoint { get; private init; } = new(IPAddress.None, 0);

    /// <summary>Connections being carried now.</summary>
    internal int ActiveConnections
    {
        get
        {
            lock (_gate)
            {
                return _connections.Count;
            }
        }
    }

    /// <summary>Connections carried so far (ended or not).</summary>
    internal long AcceptedConnections => Interlocked.Read(ref _accepted);

    /// <summary>Connections reset at once because <see cref="MaxConnections"/> were being carried.</summary>
    internal long RefusedConnections => Interlocked.Read(ref _refused);

    /// <summary>Connections that ended in an error (nothing listening in the guest, a reset, a broken channel).</summary>
    internal long FailedConnections => Interlocked.Read(ref _failed);

    /// <summary>
    /// Listens on 127.0.0.1:<paramref name="hostPort"/> (a free port when null) and starts carrying
    /// connections to <paramref name="guestPort"/>. Throws <see cref="PyroInputException"/>
    /// <c>port_invalid</c> or <c>port_in_use</c>.
    /// </summary>
    internal static PortForwarder Open(GuestAgentClient agent, int? hostPort, int guestPort)
    {
        PortPublication.CheckGuestPort(guestPort);
        PortPublication.CheckHostPort(hostPort);
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            // On Linux SO_REUSEADDR only lets a listener bind over connections in TIME_WAIT (left by
            // any connection whose guest side closed first); it never lets a second socket bind a
            // port one is listening on, so nothing can take over a published port. Without it,
            // publishing the port again (after unpublish, stop/start) fails for a minute.
            // SO_REUSEPORT, which would share the port, stays off.
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, hostPort ?? 0));
            listener.Listen(MaxConnections);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            listener.Dispose();
            throw new PyroInputException("port_in_use",
                $"host port {hostPort} is already in use on 127.0.0.1; choose another or publish GUEST_PORT alone to get a free one");
        }
        catch (SocketException ex)
        {
            listener.Dispose();
            throw new HostRequirementException("loopback_unavailable",
                $"cannot listen on 127.0.0.1:{hostPort ?? 0} ({ex.SocketErrorCode}: {ex.Message}); the network namespace pyro runs in needs its loopback up (ip link set lo up)", ex);
        }

        var bound = (IPEndPoint)listener.LocalEndPoint!;
        var forwarder = new PortForwarder(agent, listener, new PublishedPort { HostPort = bound.Port, GuestPort = guestPort }) { ListenerEndPoint = bound };
        forwarder._accepting = Task.Run(forwarder.AcceptLoopAsync);
        return forwarder;
    }

    private async Task AcceptLoopAsync()
    {
        while (true)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_closing.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException
                || (ex is SocketException && _closing.IsCancellationRequested))
            {
                return;
            }
            catch (SocketException)
            {
                // Out of descriptors or a connection aborted before it was taken: try again, without spinning.
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(50), _closing.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            var taken = false;
            lock (_gate)
            {
                if (!_disposed && _connections.Count < MaxConnections)
                {
                    var connection = new Connection(client);
                    _connections.Add(connection);
                    connection.Serving = Task.Run(() => ServeAsync(connection));
                    taken = true;
                }
            }

            if (taken)
            {
                Interlocked.Increment(ref _accepted);
            }
            else
            {
                Interlocked.Increment(ref _refused);
                Close(client, clean: false);
            }
        }
    }

    private async Task ServeAsync(Connection connection)
    {
        var client = connection.Socket;
        var clean = false;
        try
        {
            client.NoDelay = true;
            using var input = new NetworkStream(client, ownsSocket: false);
            await _agent.TcpConnectAsync(Published.GuestPort, input, (chunk, token) => ToClientAsync(client, chunk, token), _closing.Token).ConfigureAwait(false);
            clean = true;
        }
        catch (Exception ex) when (ex is PyroException or OperationCanceledException or SocketException or IOException or ObjectDisposedException)
        {
            // This connection is over; the listener and the other connections carry on.
            Interlocked.Increment(ref _failed);
        }
        finally
        {
            // A failed connection is reset, as a refused or broken TCP connection would be.
            Close(client, clean);
            lock (_gate)
            {
                _connections.Remove(connection);
            }
        }
    }

    private static async ValueTask ToClientAsync(Socket client, ReadOnlyMemory<byte> chunk, CancellationToken cancellationToken)
    {
        if (chunk.IsEmpty)
        {
            // The guest side finished sending: pass the half-close on.
            client.Shutdown(SocketShutdown.Send);
            return;
        }

        while (!chunk.IsEmpty)
        {
            var sent = await client.SendAsync(chunk, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            chunk = chunk[sent..];
        }
    }

    private static void Close(Socket socket, bool clean)
    {
        try
        {
            if (clean)
            {
                socket.Shutdown(SocketShutdown.Both);
            }
            else
            {
                socket.LingerState = new LingerOption(true, 0);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already gone from the other side.
        }

        socket.Dispose();
    }

    /// <summary>Closes the listener and resets every connection; the host port is free when this returns.</summary>
    public async ValueTask DisposeAsync()
    {
        Connection[] open;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            open = [.. _connections];
        }

        await _closing.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        await _accepting.ConfigureAwait(false);
        foreach (var connection in open)
        {
            // The cancel ends each stream; the reset frees a connection stuck on its client at once.
            Close(connection.Socket, clean: false);
        }

        await Task.WhenAll(open.Select(c => c.Serving)).ConfigureAwait(false);
        _closing.Dispose();
    }

    private sealed class Connection(Socket socket)
    {
        internal Socket Socket { get; } = socket;

        internal Task Serving { get; set; } = Task.CompletedTask;
    }
}
