using PyroMcp.Protocol.Files;
using System.Threading.Channels;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent;

/// <summary>
/// Writes become Stdout frames of at most 64 KiB, so a tar can stream out with constant memory.
/// With a <paramref name="window"/>, each frame waits for the host's acknowledgements first.
/// </summary>
internal sealed class FrameWriteStream(FrameConnection connection, uint streamId, CancellationToken cancellationToken, SendWindow? window = null) : Stream
{
    // Well under FrameCodec.MaxPayloadLength, and large enough to keep per-frame overhead low.
    private const int ChunkSize = 64 * 1024;
    private byte[] _buffer = new byte[ChunkSize];
    private int _filled;

    /// <summary>Bytes written so far, sent or not.</summary>
    internal long Written { get; private set; }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken token = default)
    {
        while (!buffer.IsEmpty)
        {
            var count = Math.Min(buffer.Length, ChunkSize - _filled);
            buffer[..count].CopyTo(_buffer.AsMemory(_filled));
            _filled += count;
            Written += count;
            buffer = buffer[count..];
            if (_filled == ChunkSize)
            {
                await SendAsync(token);
            }
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken token)
        => WriteAsync(buffer.AsMemory(offset, count), token).AsTask();

    // TarWriter's async paths never call this; it is here so a stray synchronous write still
    // works instead of throwing, at the price of blocking while the send queue is full.
    public override void Write(byte[] buffer, int offset, int count)
        => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override async Task FlushAsync(CancellationToken token)
    {
        if (_filled > 0)
        {
            await SendAsync(token);
        }
    }

    // Frames go out whole in FlushAsync; a synchronous flush has nothing to do.
    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    private async ValueTask SendAsync(CancellationToken token)
    {
        // The connection queues the frame and owns its payload, so the buffer is handed over.
        var payload = _filled == ChunkSize ? _buffer : _buffer.AsSpan(0, _filled).ToArray();
        if (_filled == ChunkSize)
        {
            _buffer = new byte[ChunkSize];
        }

        _filled = 0;
        var effective = token.CanBeCanceled ? token : cancellationToken;
        if (window is not null)
        {
            await window.TakeAsync(FrameCodec.HeaderLength + payload.Length, effective);
        }

        await connection.SendAsync(new Frame(streamId, FrameType.Stdout, payload), effective);
    }
}

/// <summary>Reads the bytes of a stream's Stdin frames, in order, until the host sends StdinEnd.</summary>
internal sealed class ChannelReadStream(ChannelReader<ReadOnlyMemory<byte>> reader, CancellationToken cancellationToken) : Stream
{
    private ReadOnlyMemory<byte> _current;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken token = default)
    {
        if (buffer.IsEmpty)
        {
            return 0;
        }

        var effective = token.CanBeCanceled ? token : cancellationToken;
        while (_current.IsEmpty)
        {
            if (!reader.TryRead(out _current) && !await reader.WaitToReadAsync(effective))
            {
                return 0;
            }
        }

        var count = Math.Min(buffer.Length, _current.Length);
        _current[..count].CopyTo(buffer);
        _current = _current[count..];
        return count;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken token)
        => ReadAsync(buffer.AsMemory(offset, count), token).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
        => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    /// <summary>Reads and drops whatever the host still sends (tar padding after the end marker) until StdinEnd.</summary>
    internal async Task DrainAsync()
    {
        _current = default;
        await foreach (var _ in reader.ReadAllAsync(cancellationToken))
        {
        }
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
