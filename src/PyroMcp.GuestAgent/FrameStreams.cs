using System.Threading.Channels;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent;

/// <summary>Writes become Stdout frames of at most 64 KiB, so a tar can stream out with constant memory.</summary>
internal sealed class FrameWriteStream(FrameConnection connection, uint streamId, CancellationToken cancellationToken) : Stream
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

/// <summary>
/// Exactly <c>length</c> bytes of a file: the tar header is written before the data, so a file
/// that grows or shrinks while it is packed must not change how many bytes follow it (a short
/// file is padded with zeros). Seekable only so TarWriter reads the length up front.
/// </summary>
internal sealed class FixedLengthReadStream(Stream inner, long length) : Stream
{
    private long _position;

    public override bool CanRead => true;
    public override bool CanSeek => true;
    public override bool CanWrite => false;
    public override long Length => length;

    public override long Position
    {
        get => _position;
        set => throw new NotSupportedException();
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var want = (int)Math.Min(buffer.Length, length - _position);
        if (want <= 0)
        {
            return 0;
        }

        var read = await inner.ReadAsync(buffer[..want], cancellationToken);
        if (read == 0)
        {
            buffer.Span[..want].Clear();
            read = want;
        }

        _position += read;
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
    {
        var want = (int)Math.Min(count, length - _position);
        if (want <= 0)
        {
            return 0;
        }

        var read = inner.Read(buffer, offset, want);
        if (read == 0)
        {
            Array.Clear(buffer, offset, want);
            read = want;
        }

        _position += read;
        return read;
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override void Flush()
    {
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync();
        await base.DisposeAsync();
    }
}
