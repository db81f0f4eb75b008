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
internal sealed partial class GuestAgentClient : IAsyncDisposable
{
    /// <summary>
    /// Default bytes one stream's reply may hold while its consumer catches up: 4 MiB, four times
    /// what one exec stream may return at all (1 MiB), so only bulk transfers (file read, tar) to a
    /// consumer that stopped can reach it. Larger buffers let a stalled client keep the guest busy
    /// longer before it is cut off (measured: other clients' exec round trip 4.8x normal with 16 MiB).
    /// </summary>
    internal const int DefaultStreamBufferBytes = 4 * 1024 * 1024;

    /// <summary>Default bytes all relayed streams together may hold (the supervisor serves many clients).</summary>
    internal const long DefaultMaxRelayBufferBytes = 64L * 1024 * 1024;

    private readonly FrameConnection _connection;
    private readonly ConcurrentDictionary<uint, StreamQueue> _calls = new();
    private int _nextStreamId;
    private long _bufferedBytes;
    private long _bufferedHighWater;
    private long _relayBytes;

    private GuestAgentClient(Stream stream)
    {
        _connection = new FrameConnection(stream, OnFrameAsync);
        _connection.Start();
    }

    /// <summary>Completes when the channel is gone, with the reason.</summary>
    internal Task<Exception> Closed => _connection.Closed;

    /// <summary>Host-side deadlines of guest calls, per kind of operation.</summary>
    internal CallLimits Limits { get; set; } = CallLimits.Default;

    /// <summary>Bytes one stream's reply may hold while its consumer catches up.</summary>
    internal int StreamBufferBytes { get; set; } = DefaultStreamBufferBytes;

    /// <summary>Bytes all relayed streams together may hold.</summary>
    internal long MaxRelayBufferBytes { get; set; } = DefaultMaxRelayBufferBytes;

    /// <summary>Most bytes of replies ever held at once across all streams (a measured figure for tests).</summary>
    internal long BufferedBytesHighWater => Interlocked.Read(ref _bufferedHighWater);

    /// <summary>The frame connection underneath, for its own buffer figures.</summary>
    internal FrameConnection Connection => _connection;

    /// <summary>A client over any duplex stream (tests join host and a fake guest through in-memory pipes).</summary>
    internal static GuestAgentClient Over(Stream stream) => new(stream);

    internal static async Task<GuestAgentClient> ConnectAsync(string socketPath, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken).ConfigureAwait(false);
            return new GuestAgentClient(new NetworkStream(socket, ownsSocket: true));
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    internal async Task<HelloReply> HelloAsync(CancellationToken cancellationToken, ResumeRequest? resume = null)
    {
        var response = await CallAsync(new AgentRequest { Op = AgentOps.Hello, Hello = new HelloRequest { UnixTimeMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Resume = resume } }, null, null, cancellationToken).ConfigureAwait(false);
        return response.Hello ?? throw new GuestChannelException("guest_protocol", "the guest agent answered hello without its details");
    }

    /// <summary>Runs a command; output arrives through the callbacks, at most <paramref name="maxOutputBytes"/> per stream.</summary>
    internal async Task<ExecExit> ExecAsync(ExecRequest request, Func<ReadOnlyMemory<byte>, ValueTask>? onStdout, Func<ReadOnlyMemory<byte>, ValueTask>? onStderr,
        long maxOutputBytes, CancellationToken cancellationToken)
    {
        // The agent enforces the timeout; the host deadline (Limits.ExecMargin past it) gives up on a guest that ignores it.
        var outCap = new OutputCap(maxOutputBytes, onStdout);
        var errCap = new OutputCap(maxOutputBytes, onStderr);
        var response = await CallAsync(new AgentRequest { Op = AgentOps.Exec, Exec = request with { MaxOutputBytes = maxOutputBytes } }, outCap.WriteAsync, errCap.WriteAsync, cancellationToken).ConfigureAwait(false);
        var exit = response.Exec ?? throw new GuestChannelException("guest_protocol", "the guest agent answered exec without an exit status");
        return exit with
        {
            // The signal name is guest text that reaches terminals and logs.
            Signal = exit.Signal is null ? null : Sanitize(exit.Signal, 16),
            StdoutTruncated = exit.StdoutTruncated || outCap.Truncated,
            StderrTruncated = exit.StderrTruncated || errCap.Truncated,
        };
    }

    internal async Task ShutdownAsync(CancellationToken cancellationToken)
        => await CallAsync(new AgentRequest { Op = AgentOps.Shutdown }, null, null, cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// One request with an optional byte stream for its stdin (files.write, tar.in) and a sink for
    /// its stdout (files.read, tar.out). Throws <see cref="GuestOperationException"/> when the guest refuses.
    /// </summary>
    internal Task<AgentResponse> CallAsync(AgentRequest request, Func<ReadOnlyMemory<byte>, ValueTask>? onStdout, Stream? stdin, CancellationToken cancellationToken)
        => CallAsync(request, onStdout, null, cancellationToken, stdin);

    /// <summary>
    /// Passes one client's request through to the guest untouched and every frame of the reply
    /// back (the supervisor's relay). Frames from the client (stdin, cancel) arrive on <paramref name="fromClient"/>.
    /// The reply waits for the client in a buffer of at most <see cref="StreamBufferBytes"/>: the
    /// channel's reader never waits for a client. A client that falls further behind loses the
    /// operation (cancelled in the guest) and gets a <c>client_too_slow</c> error after what it was owed.
    /// </summary>
    internal async Task RelayAsync(AgentRequest request, ReadOnlyMemory<byte> requestPayload, ChannelReader<Frame> fromClient,
        Func<Frame, CancellationToken, ValueTask> toClient, CancellationToken cancellationToken)
    {
        var id = (uint)Interlocked.Increment(ref _nextStreamId);
        var queue = new StreamQueue(this, dropWhenFull: true);
        _calls[id] = queue;
        using var watchdog = new Watchdog(Limits, request, cancellationToken);
        var finished = false;
        try
        {
            await SendAsync(new Frame(id, FrameType.Request, requestPayload), watchdog.Token).ConfigureAwait(false);
            using var cancel = watchdog.Token.Register(() => CancelInGuest(queue, id));
            _ = Task.Run(async () =>
            {
                try
                {
                    await foreach (var frame in fromClient.ReadAllAsync(watchdog.Token).ConfigureAwait(false))
                    {
                        await SendAsync(frame with { StreamId = id }, watchdog.Token).ConfigureAwait(false);
                        watchdog.Progress();
                    }
                }
                catch (Exception ex) when (ex is OperationCanceledException or PyroException or ObjectDisposedException)
                {
                }
            }, CancellationToken.None);
            while (true)
            {
                var frame = await NextAsync(queue, watchdog, request, cancellationToken).ConfigureAwait(false);
                await toClient(frame, cancellationToken).ConfigureAwait(false);
                if (frame.Type is FrameType.Result or FrameType.Error)
                {
                    finished = true;
                    return;
                }
            }
        }
        finally
        {
            _calls.TryRemove(id, out _);
            queue.Close();
            if (!finished)
            {
                // Whatever ended the relay (client gone, too slow, deadline), the guest stops too.
                CancelInGuest(queue, id);
            }
        }
    }

    private async Task<AgentResponse> CallAsync(AgentRequest request, Func<ReadOnlyMemory<byte>, ValueTask>? onStdout,
        Func<ReadOnlyMemory<byte>, ValueTask>? onStderr, CancellationToken cancellationToken, Stream? stdin = null)
    {
        var id = (uint)Interlocked.Increment(ref _nextStreamId);
        // A tree or a file can be gigabytes: the guest sends it only as fast as it is consumed here,
        // so no buffer between (the supervisor's relay included) fills up behind a slow consumer.
        var windowed = request.Op is AgentOps.TarOut or AgentOps.FilesRead && onStdout is not null;
        request = windowed ? request with { Windowed = true } : request;
        long unacknowledged = 0;
        // The consumer is code in this process (a file, a buffer): it gets backpressure, not overflow.
        var queue = new StreamQueue(this, dropWhenFull: false);
        _calls[id] = queue;
        using var watchdog = new Watchdog(Limits, request, cancellationToken);
        var finished = false;
        try
        {
            await SendAsync(new Frame(id, FrameType.Request, ProtocolJsonContext.Encode(request)), watchdog.Token).ConfigureAwait(false);
            using var cancel = watchdog.Token.Register(() => CancelInGuest(queue, id));
            if (stdin is not null)
            {
                _ = PumpStdinAsync(id, queue, stdin, watchdog);
            }

            while (true)
            {
                var frame = await NextAsync(queue, watchdog, request, cancellationToken).ConfigureAwait(false);
                switch (frame.Type)
                {
                    case FrameType.Stdout when onStdout is not null:
                        await onStdout(frame.Payload).ConfigureAwait(false);
                        if (windowed && (unacknowledged += FrameCodec.HeaderLength + frame.Payload.Length) >= TcpConnectRequest.WindowBytes / 4)
                        {
                            await SendAsync(Ack(id, unacknowledged), watchdog.Token).ConfigureAwait(false);
                            unacknowledged = 0;
                        }

                        break;
                    case FrameType.Stderr when onStderr is not null:
                        await onStderr(frame.Payload).ConfigureAwait(false);
                        break;
                    case FrameType.Result:
                        finished = true;
                        return Decode<AgentResponse>(frame);
                    case FrameType.Error:
                        finished = true;
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
            queue.Close();
            if (!finished)
            {
                // A consumer that failed (a full disk, a bad archive) must not leave the guest streaming.
                CancelInGuest(queue, id);
            }
        }
    }

    /// <summary>The next frame of a call, within the call's deadlines; the time a consumer spends on a frame does not count against the guest.</summary>
    private async Task<Frame> NextAsync(StreamQueue queue, Watchdog watchdog, AgentRequest request, CancellationToken cancellationToken)
    {
        watchdog.Resume();
        Frame? next;
        try
        {
            var read = queue.ReadAsync(watchdog.Token).AsTask();
            if (await Task.WhenAny(read, _connection.Closed).ConfigureAwait(false) != read)
            {
                throw ChannelBroken();
            }

            next = await read.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (watchdog.Expired && !cancellationToken.IsCancellationRequested)
        {
            throw watchdog.Failure(request);
        }

        watchdog.Pause();
        if (next is { } frame)
        {
            return frame;
        }

        if (queue.Overflowed)
        {
            throw new GuestOperationException("client_too_slow",
                $"the client fell more than {StreamBufferBytes / (1024 * 1024)} MiB behind the output of {Sanitize(request.Op, 32)}, so the operation was cancelled in the guest; read the output as it arrives");
        }

        throw ChannelBroken();
    }

    private void CancelInGuest(StreamQueue queue, uint id)
    {
        if (queue.MarkCancelled())
        {
            _ = TrySendAsync(new Frame(id, FrameType.Cancel, ReadOnlyMemory<byte>.Empty));
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

    private async Task PumpStdinAsync(uint id, StreamQueue queue, Stream stdin, Watchdog watchdog)
    {
        try
        {
            var buffer = new byte[64 * 1024];
            int read;
            while ((read = await stdin.ReadAsync(buffer, watchdog.Token).ConfigureAwait(false)) > 0)
            {
                await SendAsync(new Frame(id, FrameType.Stdin, buffer.AsSpan(0, read).ToArray()), watchdog.Token).ConfigureAwait(false);
                watchdog.Progress();
            }

            await SendAsync(new Frame(id, FrameType.StdinEnd, ReadOnlyMemory<byte>.Empty), watchdog.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or PyroException or IOException or ObjectDisposedException)
        {
            // The call itself reports what went wrong; a broken input ends as a cancel.
            CancelInGuest(queue, id);
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
            await _connection.SendAsync(frame, cancellationToken).ConfigureAwait(false);
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
            await _connection.SendAsync(frame).ConfigureAwait(false);
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

        // Frames for calls that are over (cancelled, timed out, never opened) are dropped.
        if (_calls.TryGetValue(frame.StreamId, out var call)
            && await call.EnqueueAsync(frame, cancellationToken).ConfigureAwait(false) == Enqueued.Overflowed)
        {
            CancelInGuest(call, frame.StreamId);
            call.SignalOverflow();
        }
    }

    private void Account(long bytes)
    {
        var now = Interlocked.Add(ref _bufferedBytes, bytes);
        long seen;
        while (now > (seen = Interlocked.Read(ref _bufferedHighWater)) && Interlocked.CompareExchange(ref _bufferedHighWater, now, seen) != seen)
        {
        }
    }

    private bool TryReserveShared(long cost)
    {
        while (true)
        {
            var now = Interlocked.Read(ref _relayBytes);
            if (now + cost > MaxRelayBufferBytes)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _relayBytes, now + cost, now) == now)
            {
                return true;
            }
        }
    }

    private void ReleaseShared(long cost) => Interlocked.Add(ref _relayBytes, -cost);

    /// <summary>Untrusted text from the guest, made safe for logs and terminals: bounded, no control characters.</summary>
    internal static string Sanitize(string? text, int maxLength)
    {
        var clean = new string((text ?? "").Where(c => !char.IsControl(c) || c == '\n').Take(maxLength).ToArray());
        return clean;
    }

    public async ValueTask DisposeAsync() => await _connection.DisposeAsync().ConfigureAwait(false);

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
                await sink(data).ConfigureAwait(false);
            }
        }
    }

    private enum Enqueued
    {
        Accepted,
        Dropped,
        Overflowed,
    }

    /// <summary>
    /// The frames of one stream between the channel's reader and the stream's consumer, bounded
    /// in bytes. A relay queue never makes the reader wait: past its bound it overflows and is
    /// closed. A local call's queue makes the reader wait (its consumer is this process's own code).
    /// </summary>
    private sealed class StreamQueue(GuestAgentClient owner, bool dropWhenFull)
    {
        private readonly Channel<Frame> _frames = Channel.CreateUnbounded<Frame>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        private readonly Lock _gate = new();
        // Not disposed: a consumer may still hold its token when the stream is dropped.
        private readonly CancellationTokenSource _overflow = new();
        private TaskCompletionSource _space = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private long _bytes;
        private bool _closed;
        private int _cancelled;

        internal bool Overflowed { get; private set; }

        /// <summary>Cancelled once the queue has overflowed, to free a consumer stuck on a stalled client.</summary>
        internal CancellationToken OverflowToken => _overflow.Token;

        /// <summary>Cancels <see cref="OverflowToken"/> off the channel's reader loop (the callbacks close sockets).</summary>
        internal void SignalOverflow() => _ = _overflow.CancelAsync();

        internal async ValueTask<Enqueued> EnqueueAsync(Frame frame, CancellationToken cancellationToken)
        {
            long cost = FrameCodec.HeaderLength + frame.Payload.Length;
            // One terminal frame always fits: it ends the stream, so it cannot repeat.
            var terminal = frame.Type is FrameType.Result or FrameType.Error;
            while (true)
            {
                Task wait;
                lock (_gate)
                {
                    if (_closed)
                    {
                        return Enqueued.Dropped;
                    }

                    var fits = terminal || _bytes == 0 || _bytes + cost <= owner.StreamBufferBytes;
                    if (fits && dropWhenFull && !owner.TryReserveShared(cost))
                    {
                        fits = terminal;
                        if (fits)
                        {
                            Interlocked.Add(ref owner._relayBytes, cost);
                        }
                    }

                    if (fits)
                    {
                        _bytes += cost;
                        owner.Account(cost);
                        _frames.Writer.TryWrite(frame);
                        if (terminal)
                        {
                            _closed = true;
                            _frames.Writer.TryComplete();
                        }

                        return Enqueued.Accepted;
                    }

                    if (dropWhenFull)
                    {
                        Overflowed = true;
                        _closed = true;
                        _frames.Writer.TryComplete();
                        return Enqueued.Overflowed;
                    }

                    wait = _space.Task;
                }

                await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        /// <summary>The next frame, or null once the stream is closed and drained.</summary>
        internal async ValueTask<Frame?> ReadAsync(CancellationToken cancellationToken)
        {
            while (await _frames.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                if (_frames.Reader.TryRead(out var frame))
                {
                    Release(frame);
                    return frame;
                }
            }

            return null;
        }

        /// <summary>Ends the stream from the consumer's side: later frames are dropped, held ones freed.</summary>
        internal void Close()
        {
            TaskCompletionSource waiting;
            lock (_gate)
            {
                _closed = true;
                _frames.Writer.TryComplete();
                waiting = _space;
            }

            waiting.TrySetResult();
            while (_frames.Reader.TryRead(out var frame))
            {
                Release(frame);
            }
        }

        /// <summary>True the first time only: one cancel per stream is enough.</summary>
        internal bool MarkCancelled() => Interlocked.Exchange(ref _cancelled, 1) == 0;

        private void Release(in Frame frame)
        {
            long cost = FrameCodec.HeaderLength + frame.Payload.Length;
            TaskCompletionSource released;
            lock (_gate)
            {
                _bytes -= cost;
                released = _space;
                _space = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }

            owner.Account(-cost);
            if (dropWhenFull)
            {
                owner.ReleaseShared(cost);
            }

            released.TrySetResult();
        }
    }

    /// <summary>
    /// The host-side deadlines of one call: a total (exec: its timeout plus a margin) and an idle
    /// limit (no frame for so long while we wait for the guest = dead). Time a consumer spends on a
    /// frame is paused out: a slow client is not the guest's fault.
    /// </summary>
    private sealed class Watchdog : IDisposable
    {
        private readonly CancellationTokenSource _total = new();
        private readonly CancellationTokenSource _idle = new();
        private readonly CancellationTokenSource _linked;
        private readonly TimeSpan? _totalLimit;
        private readonly TimeSpan? _idleLimit;

        internal Watchdog(CallLimits limits, AgentRequest request, CancellationToken cancellationToken)
        {
            (_totalLimit, _idleLimit) = limits.For(request);
            if (_totalLimit is { } total)
            {
                _total.CancelAfter(total);
            }

            _linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _total.Token, _idle.Token);
        }

        internal CancellationToken Token => _linked.Token;

        internal bool Expired => _total.IsCancellationRequested || _idle.IsCancellationRequested;

        internal void Resume() => Progress();

        internal void Progress() => Arm(_idleLimit ?? Timeout.InfiniteTimeSpan);

        internal void Pause() => Arm(Timeout.InfiniteTimeSpan);

        internal GuestChannelException Failure(AgentRequest request)
        {
            var op = Sanitize(request.Op, 32);
            return _total.IsCancellationRequested
                ? new GuestChannelException("guest_unresponsive", request.Op == AgentOps.Exec
                    ? $"the guest did not finish the command within {limitsText(_totalLimit)} (its timeout plus a margin); the VM is considered broken"
                    : $"the guest did not finish {op} within {limitsText(_totalLimit)}; the operation was cancelled")
                : new GuestChannelException("guest_unresponsive", $"the guest sent nothing on {op} for {limitsText(_idleLimit)}; the operation was cancelled and the VM may be broken: check the workspace's status, and stop it if it stays stuck");

            static string limitsText(TimeSpan? limit) => limit is { } l ? $"{l.TotalSeconds:0.#} s" : "its limit";
        }

        private void Arm(TimeSpan after)
        {
            try
            {
                _idle.CancelAfter(after);
            }
            catch (ObjectDisposedException)
            {
                // A stdin pump reporting progress after the call ended.
            }
        }

        public void Dispose()
        {
            _linked.Dispose();
            _total.Dispose();
            _idle.Dispose();
        }
    }
}

/// <summary>
/// How long the host waits for the guest, per kind of operation. Exec is bounded by its own
/// timeout plus a margin; transfers by progress (no byte for so long = dead), because a large
/// tree may take minutes but never goes quiet while it moves.
/// </summary>
internal sealed record CallLimits
{
    internal static CallLimits Default { get; } = new();

    /// <summary>Beyond an exec's own timeout (which the agent enforces), how long the host still waits.</summary>
    internal TimeSpan ExecMargin { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>files.* and tar.*: longest silence while the host waits for the guest.</summary>
    internal TimeSpan TransferIdle { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>sync flushes the guest's disks, which can be slow under TCG.</summary>
    internal TimeSpan SyncIdle { get; init; } = TimeSpan.FromSeconds(300);

    /// <summary>hello: longer than any boot timeout, which is what really bounds it.</summary>
    internal TimeSpan HelloTotal { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>shutdown and anything else.</summary>
    internal TimeSpan OtherIdle { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>The total and idle deadlines of one request.</summary>
    internal (TimeSpan? Total, TimeSpan? Idle) For(AgentRequest request) => request.Op switch
    {
        // An exec without a timeout still ends on the host: a day is the longest RunRequest allows.
        AgentOps.Exec => (TimeSpan.FromMilliseconds(request.Exec is { TimeoutMs: > 0 } exec ? exec.TimeoutMs : 86_400_000) + ExecMargin, null),
        AgentOps.FilesList or AgentOps.FilesRead or AgentOps.FilesWrite or AgentOps.FilesDelete or AgentOps.TarIn or AgentOps.TarOut => (null, TransferIdle),
        AgentOps.Sync => (null, SyncIdle),
        // The first hello waits for the guest to boot, which its caller bounds with the boot timeout; this is only a backstop.
        AgentOps.Hello => (HelloTotal, null),
        // A TCP connection lives as long as its two ends want; silence is normal, not a dead guest.
        AgentOps.TcpConnect => (null, null),
        _ => (null, OtherIdle),
    };
}
