using System.Net;
using System.Net.Sockets;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent;

/// <summary>
/// tcp.connect on one stream: a connection to 127.0.0.1:PORT in the guest, bytes copied both ways.
/// The address is fixed here, never taken from the host: a published port reaches the guest's own
/// loopback and nothing beyond it. Memory is bounded both ways: input waits in the operation's
/// bounded stdin queue, output in the channel's bounded send queue and the stream's
/// <see cref="SendWindow"/>.
/// </summary>
internal sealed class TcpTunnel(FrameConnection connection, uint streamId, Operation operation)
{
    private const int ChunkSize = 64 * 1024;
    private long _toGuest;
    private long _fromGuest;

    internal async Task<TcpSummary> RunAsync(TcpConnectRequest request)
    {
        if (request.Port is < 1 or > 65535)
        {
            throw new AgentFailure("bad_request", $"tcp.connect needs a port from 1 to 65535, not {request.Port}");
        }

        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, request.Port), operation.Cancel.Token);
        }
        catch (SocketException ex)
        {
            throw new AgentFailure("connection_refused",
                $"nothing accepted a connection on 127.0.0.1:{request.Port} in the guest ({ex.SocketErrorCode}); start the server there, listening on 127.0.0.1 or 0.0.0.0");
        }
        catch (OperationCanceledException)
        {
            throw new AgentFailure("cancelled", "the host closed the connection before it was made");
        }

        socket.NoDelay = true;
        // Either direction failing (a reset, a cancel) ends both; a direction that merely ends
        // (EOF) leaves the other open, as TCP half-close does.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(operation.Cancel.Token);
        var toGuest = PumpAsync(() => ToGuestAsync(socket, stop.Token), stop);
        var fromGuest = PumpAsync(() => FromGuestAsync(socket, stop.Token), stop);
        var failures = (await Task.WhenAll(toGuest, fromGuest)).Where(f => f is not null).ToList();
        if (operation.Cancel.IsCancellationRequested)
        {
            throw new AgentFailure("cancelled", "the host closed the connection");
        }

        if (failures.Count > 0)
        {
            throw new AgentFailure("connection_reset",
                $"the connection to 127.0.0.1:{request.Port} in the guest broke after {_toGuest} bytes in and {_fromGuest} out: {failures[0]!.Message}");
        }

        return new TcpSummary { BytesToGuest = _toGuest, BytesFromGuest = _fromGuest };
    }

    private static async Task<Exception?> PumpAsync(Func<Task> pump, CancellationTokenSource stop)
    {
        try
        {
            await pump();
            return null;
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            return null;
        }
        catch (Exception ex)
        {
            stop.Cancel();
            return ex;
        }
    }

    private async Task ToGuestAsync(Socket socket, CancellationToken cancellationToken)
    {
        var input = new ChannelReadStream(operation.Stdin.Reader, cancellationToken);
        var buffer = new byte[ChunkSize];
        int read;
        while ((read = await input.ReadAsync(buffer, cancellationToken)) > 0)
        {
            for (var sent = 0; sent < read;)
            {
                sent += await socket.SendAsync(buffer.AsMemory(sent, read - sent), SocketFlags.None, cancellationToken);
            }

            _toGuest += read;
        }

        // StdinEnd: the host's client half-closed; the guest's server sees EOF and may still answer.
        socket.Shutdown(SocketShutdown.Send);
    }

    private async Task FromGuestAsync(Socket socket, CancellationToken cancellationToken)
    {
        var output = new FrameWriteStream(connection, streamId, cancellationToken);
        var buffer = new byte[ChunkSize];
        int received;
        while ((received = await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken)) > 0)
        {
            // One receive is one frame (the chunk fits one), so the window is paid for exactly.
            await operation.Window.TakeAsync(FrameCodec.HeaderLength + received, cancellationToken);
            await output.WriteAsync(buffer.AsMemory(0, received), cancellationToken);
            await output.FlushAsync(cancellationToken);
            _fromGuest += received;
        }

        await operation.Window.TakeAsync(FrameCodec.HeaderLength, cancellationToken);
        await connection.SendAsync(new Frame(streamId, FrameType.Stdout, ReadOnlyMemory<byte>.Empty), cancellationToken);
    }
}

/// <summary>
/// Credit for a stream's Stdout frames: bytes (headers included) the agent may still send before
/// the host acknowledges more. Grants beyond the window size are clamped.
/// </summary>
internal sealed class SendWindow(long size)
{
    private readonly Lock _gate = new();
    private readonly long _size = size;
    private long _credit = size;
    private TaskCompletionSource _grown = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal async ValueTask TakeAsync(long cost, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_gate)
            {
                if (_credit >= cost)
                {
                    _credit -= cost;
                    return;
                }

                wait = _grown.Task;
            }

            await wait.WaitAsync(cancellationToken);
        }
    }

    internal void Grant(long bytes)
    {
        TaskCompletionSource grown;
        lock (_gate)
        {
            _credit = Math.Min(_size, _credit + bytes);
            grown = _grown;
            _grown = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        grown.TrySetResult();
    }
}
