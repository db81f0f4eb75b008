using System.Buffers;
using System.Collections.Concurrent;
using System.Threading.Channels;
using PyroMcp.Protocol;

namespace PyroMcp.Tests;

/// <summary>
/// The guest end of an in-memory channel: records what the host sends (requests, cancels) and
/// sends whatever a test tells it to, well-formed or not.
/// </summary>
internal sealed class FakeGuest : IAsyncDisposable
{
    private readonly FrameConnection _connection;
    private readonly Stream _stream;
    private readonly Channel<Frame> _requests = Channel.CreateUnbounded<Frame>();
    private readonly ConcurrentDictionary<uint, TaskCompletionSource> _cancels = new();
    private readonly Func<FakeGuest, Frame, AgentRequest, Task>? _serve;

    /// <param name="stream">The guest side of a <see cref="DuplexPipe"/>.</param>
    /// <param name="serve">When set, answers each request (run on its own task); otherwise requests wait in <see cref="NextRequestAsync"/>.</param>
    internal FakeGuest(Stream stream, Func<FakeGuest, Frame, AgentRequest, Task>? serve = null)
    {
        _stream = stream;
        _serve = serve;
        _connection = new FrameConnection(stream, OnFrameAsync);
        _connection.Start();
    }

    internal Task<Exception> Closed => _connection.Closed;

    internal ValueTask SendAsync(Frame frame, CancellationToken cancellationToken = default) => _connection.SendAsync(frame, cancellationToken);

    /// <summary>Completes when the host has cancelled <paramref name="streamId"/>.</summary>
    internal Task CancelledAsync(uint streamId) => Cancel(streamId).Task;

    internal bool WasCancelled(uint streamId) => Cancel(streamId).Task.IsCompleted;

    internal async Task<Frame> NextRequestAsync()
        => await _requests.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));

    /// <summary>Stdout chunks on <paramref name="streamId"/> until the host cancels it (at most <paramref name="maxBytes"/>), then an error.</summary>
    internal async Task StreamUntilCancelledAsync(uint streamId, long maxBytes)
    {
        var chunk = new byte[64 * 1024];
        for (long sent = 0; sent < maxBytes && !WasCancelled(streamId); sent += chunk.Length)
        {
            await SendAsync(new Frame(streamId, FrameType.Stdout, chunk));
        }

        await SendAsync(new Frame(streamId, FrameType.Error, ProtocolJsonContext.Encode(new AgentError("cancelled", "the operation was cancelled"))));
    }

    /// <summary>Writes raw bytes, bypassing the codec (for frames no codec would make).</summary>
    internal static async Task WriteRawAsync(Stream stream, ReadOnlyMemory<byte> bytes)
    {
        await stream.WriteAsync(bytes);
        await stream.FlushAsync();
    }

    internal static byte[] Encode(Frame frame)
    {
        var writer = new ArrayBufferWriter<byte>();
        FrameCodec.Write(writer, frame);
        return writer.WrittenSpan.ToArray();
    }

    private TaskCompletionSource Cancel(uint streamId)
        => _cancels.GetOrAdd(streamId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

    private ValueTask OnFrameAsync(Frame frame, CancellationToken cancellationToken)
    {
        switch (frame.Type)
        {
            case FrameType.Cancel:
                Cancel(frame.StreamId).TrySetResult();
                break;
            case FrameType.Request when _serve is not null:
                var request = ProtocolJsonContext.Decode<AgentRequest>(frame.Payload);
                _ = Task.Run(() => _serve(this, frame, request), CancellationToken.None);
                break;
            case FrameType.Request:
                _requests.Writer.TryWrite(frame);
                break;
        }

        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await _connection.DisposeAsync();
        await _stream.DisposeAsync();
    }
}
