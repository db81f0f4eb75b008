using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Threading.Channels;
using PyroMcp.Protocol;

namespace PyroMcp.Vmm;

/// <summary>
/// The host end of the guest channel: the single owner of the virtio-serial socket, which
/// multiplexes concurrent calls by stream id. Everything the guest sends is checked and capped
/// here; a guest that breaks the protocol loses its channel, never the host process.
/// </summary>
internal sealed class GuestAgentClient : IAsyncDisposable
{
    private readonly FrameConnection _connection;
    private readonly ConcurrentDictionary<uint, Channel<Frame>> _calls = new();
    private int _nextStreamId;

    private GuestAgentClient(Stream stream)
    {
        _connection = new FrameConnection(stream, OnFrameAsync);
        _connection.Start();
    }

    /// <summary>Completes when the channel is gone, with the reason.</summary>
    internal Task<Exception> Closed => _connection.Closed;

    /// <summary>A client over any duplex stream (tests join host and a fake guest through in-memory pipes).</summary>
    internal static GuestAgentClient Over(Stream stream) => new(stream);

    internal static async Task<GuestAgentClient> ConnectAsync(string socketPath, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
            return new GuestAgentClient(new NetworkStream(socket, ownsSocket: true));
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    internal async Task<HelloReply> HelloAsync(CancellationToken cancellationToken)
    {
        var response = await CallAsync(new AgentRequest { Op = AgentOps.Hello, Hello = new HelloRequest { UnixTimeMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() } }, null, null, cancellationToken);
        return response.Hello ?? throw new GuestChannelException("guest_protocol", "the guest agent answered hello without its details");
    }

    /// <summary>Runs a command; output arrives through the callbacks, at most <paramref name="maxOutputBytes"/> per stream.</summary>
    internal async Task<ExecExit> ExecAsync(ExecRequest request, Func<ReadOnlyMemory<byte>, ValueTask>? onStdout, Func<ReadOnlyMemory<byte>, ValueTask>? onStderr,
        long maxOutputBytes, CancellationToken cancellationToken)
    {
        // The agent enforces the timeout; the host adds a margin and gives up on a guest that ignores it.
        using var hostLimit = request.TimeoutMs > 0 ? new CancellationTokenSource(request.TimeoutMs + 15_000) : new CancellationTokenSource();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, hostLimit.Token);
        var outCap = new OutputCap(maxOutputBytes, onStdout);
        var errCap = new OutputCap(maxOutputBytes, onStderr);
        try
        {
            var response = await CallAsync(new AgentRequest { Op = AgentOps.Exec, Exec = request with { MaxOutputBytes = maxOutputBytes } }, outCap.WriteAsync, errCap.WriteAsync, linked.Token);
            var exit = response.Exec ?? throw new GuestChannelException("guest_protocol", "the guest agent answered exec without an exit status");
            return exit with
            {
                // The signal name is guest text that reaches terminals and logs.
                Signal = exit.Signal is null ? null : Sanitize(exit.Signal, 16),
                StdoutTruncated = exit.StdoutTruncated || outCap.Truncated,
                StderrTruncated = exit.StderrTruncated || errCap.Truncated,
            };
        }
        catch (OperationCanceledException) when (hostLimit.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new GuestChannelException("guest_unresponsive", $"the guest did not finish the command within its timeout plus 15 s; the VM is considered broken");
        }
    }

    internal async Task ShutdownAsync(CancellationToken cancellationToken)
        => await CallAsync(new AgentRequest { Op = AgentOps.Shutdown }, null, null, cancellationToken);

    /// <summary>
    /// One request with an optional byte stream for its stdin (files.write, tar.in) and a sink for
    /// its stdout (files.read, tar.out). Throws <see cref="GuestOperationException"/> when the guest refuses.
    /// </summary>
    internal Task<AgentResponse> CallAsync(AgentRequest request, Func<ReadOnlyMemory<byte>, ValueTask>? onStdout, Stream? stdin, CancellationToken cancellationToken)
        => CallAsync(request, onStdout, null, cancellationToken, stdin);

    /// <summary>
    /// Passes one client's request through to the guest untouched and every frame of the reply
    /// back (the supervisor's relay). Frames from the client (stdin, cancel) arrive on <paramref name="fromClient"/>.
    /// </summary>
    internal async Task RelayAsync(ReadOnlyMemory<byte> requestPayload, ChannelReader<Frame> fromClient, Func<Frame, ValueTask> toClient, CancellationToken cancellationToken)
    {
        var id = (uint)Interlocked.Increment(ref _nextStreamId);
        var incoming = Channel.CreateBounded<Frame>(new BoundedChannelOptions(64) { SingleReader = true, SingleWriter = true });
        _calls[id] = incoming;
        try
        {
            await SendAsync(new Frame(id, FrameType.Request, requestPayload), cancellationToken);
            using var cancel = cancellationToken.Register(() => _ = TrySendAsync(new Frame(id, FrameType.Cancel, ReadOnlyMemory<byte>.Empty)));
            var upstream = Task.Run(async () =>
            {
                try
                {
                    await foreach (var frame in fromClient.ReadAllAsync(cancellationToken))
                    {
                        await SendAsync(frame with { StreamId = id }, cancellationToken);
                    }
                }
                catch (Exception ex) when (ex is OperationCanceledException or PyroException)
                {
                }
            }, CancellationToken.None);
            while (true)
            {
                var read = incoming.Reader.ReadAsync(cancellationToken).AsTask();
                if (await Task.WhenAny(read, _connection.Closed) != read)
                {
                    throw ChannelBroken();
                }

                var frame = await read;
                await toClient(frame);
                if (frame.Type is FrameType.Result or FrameType.Error)
                {
                    return;
                }
            }
        }
        catch (ChannelClosedException)
        {
            throw ChannelBroken();
        }
        finally
        {
            _calls.TryRemove(id, out _);
            incoming.Writer.TryComplete();
        }
    }

    private async Task<AgentResponse> CallAsync(AgentRequest request, Func<ReadOnlyMemory<byte>, ValueTask>? onStdout,
        Func<ReadOnlyMemory<byte>, ValueTask>? onStderr, CancellationToken cancellationToken, Stream? stdin = null)
    {
        var id = (uint)Interlocked.Increment(ref _nextStreamId);
        var incoming = Channel.CreateBounded<Frame>(new BoundedChannelOptions(64) { SingleReader = true, SingleWriter = true });
        _calls[id] = incoming;
        try
        {
            await SendAsync(new Frame(id, FrameType.Request, ProtocolJsonContext.Encode(request)), cancellationToken);
            using var cancel = cancellationToken.Register(() => _ = TrySendAsync(new Frame(id, FrameType.Cancel, ReadOnlyMemory<byte>.Empty)));
            if (stdin is not null)
            {
                _ = PumpStdinAsync(id, stdin, cancellationToken);
            }

            while (true)
            {
                Frame frame;
                try
                {
                    var read = incoming.Reader.ReadAsync(cancellationToken).AsTask();
                    var done = await Task.WhenAny(read, _connection.Closed);
                    if (done != read)
                    {
                        throw ChannelBroken();
                    }

                    frame = await read;
                }
                catch (ChannelClosedException)
                {
                    throw ChannelBroken();
                }

                switch (frame.Type)
                {
                    case FrameType.Stdout when onStdout is not null:
                        await onStdout(frame.Payload);
                        break;
                    case FrameType.Stderr when onStderr is not null:
                        await onStderr(frame.Payload);
                        break;
                    case FrameType.Result:
                        return Decode<AgentResponse>(frame);
                    case FrameType.Error:
                        var error = Decode<AgentError>(frame);
                        throw new GuestOperationException(Sanitize(error.Code, 64), Sanitize(error.Message, 2000));
                    default:
                        // Output for a call that asked for none: drop it.
                        break;
                }
            }
        }
        finally
        {
            _calls.TryRemove(id, out _);
            // Unblocks the reader loop if it is waiting to hand this call a frame.
            incoming.Writer.TryComplete();
        }
    }

    private T Decode<T>(Frame frame) where T : class
    {
        try
        {
            return ProtocolJsonContext.Decode<T>(frame.Payload);
        }
        catch (ProtocolViolationException ex)
        {
            _connection.Abort(ex);
            throw new GuestChannelException("guest_protocol", "the guest agent sent a malformed message: " + ex.Message, ex);
        }
    }

    private async Task PumpStdinAsync(uint id, Stream stdin, CancellationToken cancellationToken)
    {
        try
        {
            var buffer = new byte[64 * 1024];
            int read;
            while ((read = await stdin.ReadAsync(buffer, cancellationToken)) > 0)
            {
                await SendAsync(new Frame(id, FrameType.Stdin, buffer.AsSpan(0, read).ToArray()), cancellationToken);
            }

            await SendAsync(new Frame(id, FrameType.StdinEnd, ReadOnlyMemory<byte>.Empty), cancellationToken);
        }
        catch (Exception ex) when (ex is OperationCanceledException or PyroException or IOException)
        {
            // The call itself reports what went wrong; a broken input ends as a cancel.
            await TrySendAsync(new Frame(id, FrameType.Cancel, ReadOnlyMemory<byte>.Empty));
        }
    }

    private GuestChannelException ChannelBroken()
    {
        var reason = _connection.Closed.IsCompleted ? _connection.Closed.Result.Message : "closed";
        return new GuestChannelException("guest_channel_closed", "the channel to the guest agent closed: " + reason);
    }

    private async ValueTask SendAsync(Frame frame, CancellationToken cancellationToken)
    {
        try
        {
            await _connection.SendAsync(frame, cancellationToken);
        }
        catch (IOException ex)
        {
            throw new GuestChannelException("guest_channel_closed", ex.Message, ex);
        }
    }

    private async Task TrySendAsync(Frame frame)
    {
        try
        {
            await _connection.SendAsync(frame);
        }
        catch (IOException)
        {
        }
    }

    private async ValueTask OnFrameAsync(Frame frame, CancellationToken cancellationToken)
    {
        if (frame.Type is not (FrameType.Stdout or FrameType.Stderr or FrameType.Result or FrameType.Error))
        {
            throw new ProtocolViolationException($"guest sent a {frame.Type} frame, which only the host may send");
        }

        if (_calls.TryGetValue(frame.StreamId, out var call))
        {
            try
            {
                await call.Writer.WriteAsync(frame, cancellationToken);
            }
            catch (ChannelClosedException)
            {
            }
        }

        // Frames for calls that are over (cancelled, timed out) are dropped.
    }

    /// <summary>Untrusted text from the guest, made safe for logs and terminals: bounded, no control characters.</summary>
    internal static string Sanitize(string? text, int maxLength)
    {
        var clean = new string((text ?? "").Where(c => !char.IsControl(c) || c == '\n').Take(maxLength).ToArray());
        return clean;
    }

    public async ValueTask DisposeAsync() => await _connection.DisposeAsync();

    /// <summary>Counts one output stream and stops forwarding past the cap, whatever the guest claims.</summary>
    private sealed class OutputCap(long cap, Func<ReadOnlyMemory<byte>, ValueTask>? sink)
    {
        private long _seen;

        internal bool Truncated { get; private set; }

        internal async ValueTask WriteAsync(ReadOnlyMemory<byte> data)
        {
            var room = Math.Max(0, cap - _seen);
            _seen += data.Length;
            if (data.Length > room)
            {
                Truncated = true;
                data = data[..(int)room];
            }

            if (data.Length > 0 && sink is not null)
            {
                await sink(data);
            }
        }
    }
}
