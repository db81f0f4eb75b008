using System.Buffers;
using System.IO.Pipelines;
using System.Threading.Channels;

namespace PyroMcp.Protocol;

/// <summary>
/// Moves frames over one byte stream in both directions: one writer loop drains a queue, one
/// reader loop hands each incoming frame to a callback in arrival order. The first failure
/// aborts the connection and is the reason every later call sees.
/// </summary>
public sealed class FrameConnection : IAsyncDisposable
{
    private readonly Stream _stream;
    private readonly Func<Frame, CancellationToken, ValueTask> _onFrame;
    private readonly Channel<Frame> _outgoing = Channel.CreateBounded<Frame>(new BoundedChannelOptions(256) { SingleReader = true });
    private readonly CancellationTokenSource _aborted = new();
    private readonly TaskCompletionSource<Exception> _abortReason = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _reader;
    private Task? _writer;

    /// <summary>Creates a connection; nothing moves until <see cref="Start"/>.</summary>
    public FrameConnection(Stream stream, Func<Frame, CancellationToken, ValueTask> onFrame)
    {
        _stream = stream;
        _onFrame = onFrame;
    }

    /// <summary>Completes with the reason once the connection is aborted (by either side, or by an error).</summary>
    public Task<Exception> Closed => _abortReason.Task;

    /// <summary>Whether the connection is still usable.</summary>
    public bool IsOpen => !_aborted.IsCancellationRequested;

    /// <summary>Starts the reader and writer loops.</summary>
    public void Start()
    {
        _reader = Task.Run(ReadLoopAsync);
        _writer = Task.Run(WriteLoopAsync);
    }

    /// <summary>Queues one frame. Waits when the queue is full, so a slow peer slows the sender.</summary>
    public async ValueTask SendAsync(Frame frame, CancellationToken cancellationToken = default)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _aborted.Token);
        try
        {
            await _outgoing.Writer.WriteAsync(frame, linked.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or ChannelClosedException && _aborted.IsCancellationRequested)
        {
            throw new IOException("the channel is closed: " + _abortReason.Task.Result.Message, _abortReason.Task.Result);
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

    private async Task ReadLoopAsync()
    {
        var reader = PipeReader.Create(_stream, new StreamPipeReaderOptions(bufferSize: 64 * 1024));
        try
        {
            while (true)
            {
                var read = await reader.ReadAsync(_aborted.Token).ConfigureAwait(false);
                var buffer = read.Buffer;
                while (FrameCodec.TryRead(ref buffer, out var frame))
                {
                    await _onFrame(frame, _aborted.Token).ConfigureAwait(false);
                }

                reader.AdvanceTo(buffer.Start, buffer.End);
                if (read.IsCompleted)
                {
                    Abort(new EndOfStreamException("the peer closed the channel"));
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
                while (buffer.WrittenCount < 512 * 1024 && _outgoing.Reader.TryRead(out var frame))
                {
                    FrameCodec.Write(buffer, frame);
                }

                await _stream.WriteAsync(buffer.WrittenMemory, _aborted.Token).ConfigureAwait(false);
                await _stream.FlushAsync(_aborted.Token).ConfigureAwait(false);
                buffer.ResetWrittenCount();
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

        _aborted.Dispose();
    }
}
