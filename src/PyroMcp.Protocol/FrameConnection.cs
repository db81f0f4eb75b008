using System.Buffers;
using System.IO.Pipelines;
using System.Threading.Channels;

namespace PyroMcp.Protocol;

/// <summary>
/// Moves frames over one byte stream in both directions: one writer loop drains a queue, one
/// reader loop hands each incoming frame to a callback in arrival order. The first failure
/// aborts the connection and is the reason every later call sees. Both directions are bounded
/// in bytes: the outgoing queue by <see cref="MaxQueuedBytes"/>, the incoming buffer by one
/// frame of at most <see cref="FrameCodec.MaxPayloadLength"/>.
/// </summary>
public sealed class FrameConnection : IAsyncDisposable
{
    /// <summary>Default byte budget of the outgoing queue.</summary>
    public const int DefaultMaxQueuedBytes = 4 * 1024 * 1024;

    private readonly Stream _stream;
    private readonly Func<Frame, CancellationToken, ValueTask> _onFrame;
    // Unbounded in count, bounded in bytes by the budget below: a frame costs its header too,
    // so empty frames (cancel, stdin end) cannot pile up for free either.
    private readonly Channel<Frame> _outgoing = Channel.CreateUnbounded<Frame>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _aborted = new();
    private readonly TaskCompletionSource<Exception> _abortReason = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _budget = new();
    private TaskCompletionSource _space = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _queuedBytes;
    private long _queuedHighWater;
    private long _receiveHighWater;
    private Task? _reader;
    private Task? _writer;

    /// <summary>Creates a connection; nothing moves until <see cref="Start"/>.</summary>
    public FrameConnection(Stream stream, Func<Frame, CancellationToken, ValueTask> onFrame)
        : this(stream, onFrame, DefaultMaxQueuedBytes)
    {
    }

    /// <summary>Creates a connection whose outgoing queue holds at most <paramref name="maxQueuedBytes"/> (headers included).</summary>
    public FrameConnection(Stream stream, Func<Frame, CancellationToken, ValueTask> onFrame, int maxQueuedBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxQueuedBytes, FrameCodec.HeaderLength + FrameCodec.MaxPayloadLength);
        _stream = stream;
        _onFrame = onFrame;
        MaxQueuedBytes = maxQueuedBytes;
    }

    /// <summary>Completes with the reason once the connection is aborted (by either side, or by an error).</summary>
    public Task<Exception> Closed => _abortReason.Task;

    /// <summary>Whether the connection is still usable.</summary>
    public bool IsOpen => !_aborted.IsCancellationRequested;

    /// <summary>The byte budget of the outgoing queue.</summary>
    public int MaxQueuedBytes { get; }

    /// <summary>Most bytes the outgoing queue ever held at once (a measured figure for tests).</summary>
    public long QueuedBytesHighWater => Interlocked.Read(ref _queuedHighWater);

    /// <summary>Most bytes the incoming buffer ever held at once, waiting for a whole frame.</summary>
    public long ReceiveBufferHighWater => Interlocked.Read(ref _receiveHighWater);

    /// <summary>Starts the reader and writer loops.</summary>
    public void Start()
    {
        _reader = Task.Run(ReadLoopAsync);
        _writer = Task.Run(WriteLoopAsync);
    }

    /// <summary>Queues one frame. Waits while the queue is over its byte budget, so a slow peer slows the sender.</summary>
    public async ValueTask SendAsync(Frame frame, CancellationToken cancellationToken = default)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _aborted.Token);
        var cost = Cost(frame);
        var reserved = false;
        try
        {
            while (true)
            {
                Task wait;
                lock (_budget)
                {
                    // An empty queue always takes one frame, so a frame of any legal size gets through.
                    if (_queuedBytes == 0 || _queuedBytes + cost <= MaxQueuedBytes)
                    {
                        _queuedBytes += cost;
                        _queuedHighWater = Math.Max(_queuedHighWater, _queuedBytes);
                        reserved = true;
                        break;
                    }

                    wait = _space.Task;
                }

                await wait.WaitAsync(linked.Token).ConfigureAwait(false);
            }

            if (!_outgoing.Writer.TryWrite(frame))
            {
                throw new ChannelClosedException();
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ChannelClosedException)
        {
            if (reserved)
            {
                Release(cost);
            }

            if (_aborted.IsCancellationRequested)
            {
                throw new IOException("the channel is closed: " + _abortReason.Task.Result.Message, _abortReason.Task.Result);
            }

            throw;
        }
    }

    /// <summary>Closes the connection; the first reason given wins.</summary>
    public void Abort(Exception reason)
    {
        if (!_abortReason.TrySetResult(reason))
        {
            return;
        }

        _outgoing.Writer.TryComplete();
        _aborted.Cancel();
        try
        {
            _stream.Dispose();
        }
        catch (IOException)
        {
            // The stream is being torn down anyway.
        }
    }

    private static long Cost(in Frame frame) => FrameCodec.HeaderLength + frame.Payload.Length;

    private void Release(long cost)
    {
        TaskCompletionSource released;
        lock (_budget)
        {
            _queuedBytes -= cost;
            released = _space;
            _space = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        released.TrySetResult();
    }

    private async Task ReadLoopAsync()
    {
        var reader = PipeReader.Create(_stream, new StreamPipeReaderOptions(bufferSize: 64 * 1024));
        try
        {
            while (true)
            {
                var read = await reader.ReadAsync(_aborted.Token).ConfigureAwait(false);
                var buffer = read.Buffer;
                if (buffer.Length > _receiveHighWater)
                {
                    Interlocked.Exchange(ref _receiveHighWater, buffer.Length);
                }

                while (FrameCodec.TryRead(ref buffer, out var frame))
                {
                    await _onFrame(frame, _aborted.Token).ConfigureAwait(false);
                }

                reader.AdvanceTo(buffer.Start, buffer.End);
                if (read.IsCompleted)
                {
                    Abort(new EndOfStreamException(buffer.IsEmpty ? "the peer closed the channel" : "the peer closed the channel in the middle of a frame"));
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (_aborted.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            Abort(ex);
        }
        finally
        {
            await reader.CompleteAsync().ConfigureAwait(false);
        }
    }

    private async Task WriteLoopAsync()
    {
        var buffer = new ArrayBufferWriter<byte>(64 * 1024);
        try
        {
            while (await _outgoing.Reader.WaitToReadAsync(_aborted.Token).ConfigureAwait(false))
            {
                // Batch whatever is queued into one write: fewer syscalls, same order.
                long batched = 0;
                while (buffer.WrittenCount < 512 * 1024 && _outgoing.Reader.TryRead(out var frame))
                {
                    FrameCodec.Write(buffer, frame);
                    batched += Cost(frame);
                }

                await _stream.WriteAsync(buffer.WrittenMemory, _aborted.Token).ConfigureAwait(false);
                await _stream.FlushAsync(_aborted.Token).ConfigureAwait(false);
                buffer.ResetWrittenCount();
                Release(batched);
            }
        }
        catch (OperationCanceledException) when (_aborted.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            Abort(ex);
        }
    }

    /// <summary>Aborts the connection and waits for both loops to finish.</summary>
    public async ValueTask DisposeAsync()
    {
        Abort(new ObjectDisposedException(nameof(FrameConnection)));
        foreach (var loop in new[] { _reader, _writer })
        {
            if (loop is not null)
            {
                await loop.ConfigureAwait(false);
            }
        }

        // _aborted is not disposed: late senders (a cancel racing the close) must still see it cancelled.
    }
}
