using System.Buffers.Binary;
using System.Text;

namespace PyroMcp.Protocol.Files;

/// <summary>
/// An archive asked for more than pyro accepts: too many bytes, or a metadata record or name too
/// long. Not an <see cref="InvalidDataException"/> (sealed): callers tell "too large" from "corrupt".
/// </summary>
public sealed class TarLimitException : IOException
{
    /// <summary>Creates the exception with a message that names the limit.</summary>
    public TarLimitException(string message) : base(message)
    {
    }
}

/// <summary>
/// Sits between an untrusted tar stream and <see cref="System.Formats.Tar.TarReader"/>. TarReader
/// allocates a buffer as large as a pax extended header or a GNU long name says it is before it
/// reads a byte of it, so a 512-byte header can make the reader allocate gigabytes. This stream
/// walks the same 512-byte header structure as the bytes go by, and throws before the header
/// that asks for too much reaches the reader: pax records (<c>x</c>, <c>g</c>) over
/// <see cref="MaxMetadataBytes"/>, GNU long names (<c>L</c>, <c>K</c>) and pax path values over
/// <see cref="MaxNameBytes"/>, and more than the caller's byte limit in all, counting headers,
/// padding and data alike.
/// </summary>
/// <remarks>
/// The walk must find the headers exactly where TarReader does, or a header could pass unseen
/// inside what one of them took for data. So it follows the reader's framing (a pax <c>size</c>
/// record replaces the size of the entry after it) and refuses anything whose framing it is not
/// sure of: metadata headers in an order TarReader does not pair the same way, numbers it cannot
/// read the way TarReader would, and a <c>size</c> record that is not a plain decimal number.
/// The inner stream is never disposed.
/// </remarks>
public sealed class TarGuardStream : Stream
{
    /// <summary>The largest pax extended header (<c>x</c> or <c>g</c>) accepted, in bytes.</summary>
    public const int MaxMetadataBytes = 64 * 1024;

    /// <summary>The longest name accepted (PATH_MAX, with its terminating NUL), in bytes: GNU long names and pax path values.</summary>
    public const int MaxNameBytes = 4096;

    private const int Block = 512;

    private readonly Stream _inner;
    private readonly long _maxBytes;
    private readonly byte[] _header = new byte[Block];
    private int _headerFill;

    // Where the walk is in the archive: BytesRead may already hold more of a read than was walked.
    private long _position;

    // The data section (with its padding) still to go by before the next header.
    private long _remaining;

    // A metadata record being collected, and its length without padding.
    private byte[]? _metadata;
    private int _metadataLength;
    private int _metadataFill;
    private byte _metadataType;

    // What the headers just seen say about the next one.
    private byte _pending;
    private long? _paxSize;
    private Exception? _failure;

    /// <param name="inner">The untrusted tar stream.</param>
    /// <param name="maxBytes">Most bytes to read from <paramref name="inner"/> in all; more throws <see cref="TarLimitException"/>.</param>
    public TarGuardStream(Stream inner, long maxBytes)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytes);
        _inner = inner;
        _maxBytes = maxBytes;
    }

    /// <summary>Bytes read from the inner stream so far.</summary>
    public long BytesRead { get; private set; }

    /// <inheritdoc />
    public override bool CanRead => true;
    /// <inheritdoc />
    public override bool CanSeek => false;
    /// <inheritdoc />
    public override bool CanWrite => false;
    /// <inheritdoc />
    public override long Length => throw new NotSupportedException();

    /// <inheritdoc />
    public override long Position
    {
        get => BytesRead;
        set => throw new NotSupportedException();
    }

    /// <inheritdoc />
    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    /// <inheritdoc />
    public override int Read(Span<byte> buffer)
    {
        ThrowIfFailed();
        var read = _inner.Read(buffer);
        Observe(buffer[..read]);
        return read;
    }

    /// <inheritdoc />
    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ThrowIfFailed();
        var read = await _inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        Observe(buffer.Span[..read]);
        return read;
    }

    /// <inheritdoc />
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <inheritdoc />
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    /// <inheritdoc />
    public override void SetLength(long value) => throw new NotSupportedException();
    /// <inheritdoc />
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    /// <inheritdoc />
    public override void Flush()
    {
    }

    private void ThrowIfFailed()
    {
        if (_failure is not null)
        {
            // The reader is out of step with the archive after a refusal: nothing more goes through.
            throw _failure is TarLimitException ? new TarLimitException(_failure.Message) : new InvalidDataException(_failure.Message);
        }
    }

    private void Observe(ReadOnlySpan<byte> bytes)
    {
        try
        {
            BytesRead += bytes.Length;
            if (BytesRead > _maxBytes)
            {
                throw new TarLimitException($"the archive holds more than {_maxBytes} bytes, the limit");
            }

            while (!bytes.IsEmpty)
            {
                if (_remaining > 0)
                {
                    var take = (int)Math.Min(_remaining, bytes.Length);
                    if (_metadata is not null && _metadataFill < _metadataLength)
                    {
                        var keep = Math.Min(take, _metadataLength - _metadataFill);
                        bytes[..keep].CopyTo(_metadata.AsSpan(_metadataFill));
                        _metadataFill += keep;
                    }

                    _remaining -= take;
                    _position += take;
                    bytes = bytes[take..];
                    if (_remaining == 0 && _metadata is not null)
                    {
                        EndMetadata();
                    }

                    continue;
                }

                var part = Math.Min(Block - _headerFill, bytes.Length);
                bytes[..part].CopyTo(_header.AsSpan(_headerFill));
                _headerFill += part;
                _position += part;
                bytes = bytes[part..];
                if (_headerFill == Block)
                {
                    _headerFill = 0;
                    OnHeader();
                }
            }
        }
        catch (Exception ex) when (ex is InvalidDataException or TarLimitException)
        {
            _failure = ex;
            throw;
        }
    }

    private void OnHeader()
    {
        var header = _header.AsSpan();
        var checksumField = header.Slice(148, 8);
        if (!checksumField.ContainsAnyExcept((byte)0) || ParseOctal(checksumField, "checksum") == 0)
        {
            // TarReader ends the archive here and reads no further.
            _pending = 0;
            _paxSize = null;
            return;
        }

        var type = header[156];
        var size = ParseSize(header.Slice(124, 12));
        if (type is (byte)'x' or (byte)'g' or (byte)'L' or (byte)'K')
        {
            BeginMetadata(type, size);
            return;
        }

        if (_pending == (byte)'x' && _paxSize is { } paxSize)
        {
            size = paxSize;
        }

        _pending = 0;
        _paxSize = null;
        if (size > 0 && type is (byte)'1' or (byte)'2' or (byte)'3' or (byte)'4' or (byte)'5' or (byte)'6')
        {
            // TarReader refuses these too; refusing first keeps the two walks in step.
            throw new InvalidDataException($"a link, directory, device or fifo entry claims {size} bytes of data");
        }

        Expect(size);
    }

    private void BeginMetadata(byte type, long size)
    {
        // Only the sequences TarReader reads as one entry: x, g, L, K, L then K, K then L.
        var allowed = type switch
        {
            (byte)'L' => _pending is 0 or (byte)'K',
            (byte)'K' => _pending is 0 or (byte)'L',
            _ => _pending == 0,
        };
        if (!allowed)
        {
            throw new InvalidDataException($"a '{(char)type}' metadata header follows a '{(char)_pending}' one; pyro does not read that sequence");
        }

        var limit = type is (byte)'L' or (byte)'K' ? MaxNameBytes : MaxMetadataBytes;
        if (size > limit)
        {
            var what = type is (byte)'L' or (byte)'K' ? "a GNU long name" : "a pax extended header";
            throw new TarLimitException($"the archive has {what} of {size} bytes; pyro accepts at most {limit}");
        }

        _metadataType = type;
        _metadataLength = (int)size;
        _metadataFill = 0;
        _metadata = new byte[_metadataLength];
        Expect(size);
        if (size == 0)
        {
            EndMetadata();
        }
    }

    private void EndMetadata()
    {
        var data = _metadata.AsSpan(0, _metadataLength);
        _metadata = null;
        switch (_metadataType)
        {
            case (byte)'x':
                _paxSize = ReadPaxRecords(data);
                _pending = (byte)'x';
                break;
            case (byte)'g':
                // TarReader hands a global header over as an entry of its own; nothing carries to the next one.
                ReadPaxRecords(data);
                _pending = 0;
                break;
            default:
                _pending = _pending == 0 ? _metadataType : (byte)'B';
                break;
        }
    }

    /// <summary>Checks every record as TarReader parses them ("LENGTH KEY=VALUE\n"); returns the <c>size</c> record, if any.</summary>
    private static long? ReadPaxRecords(ReadOnlySpan<byte> data)
    {
        long? size = null;
        while (!data.IsEmpty)
        {
            var newline = data.IndexOf((byte)'\n');
            var space = newline < 0 ? -1 : data[..newline].IndexOf((byte)' ');
            if (space <= 0 || !int.TryParse(data[..space], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var length)
                || length != newline + 1)
            {
                throw new InvalidDataException("a pax extended header has a malformed record");
            }

            var record = data[(space + 1)..newline];
            var equals = record.IndexOf((byte)'=');
            if (equals < 0)
            {
                throw new InvalidDataException("a pax extended header has a record without '='");
            }

            var key = record[..equals];
            var value = record[(equals + 1)..];
            if ((key.SequenceEqual("path"u8) || key.SequenceEqual("linkpath"u8) || key.SequenceEqual("GNU.sparse.name"u8)) && value.Length >= MaxNameBytes)
            {
                throw new TarLimitException($"the archive has a pax {Encoding.UTF8.GetString(key)} of {value.Length} bytes; pyro accepts names shorter than {MaxNameBytes}");
            }

            if (key.SequenceEqual("size"u8))
            {
                if (size is not null)
                {
                    throw new InvalidDataException("a pax extended header has two size records");
                }

                size = ParseDecimal(value);
            }

            data = data[(newline + 1)..];
        }

        return size;
    }

    private static long ParseDecimal(ReadOnlySpan<byte> value)
    {
        long result = 0;
        foreach (var b in value)
        {
            if (b is < (byte)'0' or > (byte)'9' || result > (long.MaxValue - 9) / 10)
            {
                throw new InvalidDataException("a pax size record is not a plain decimal number pyro can read");
            }

            result = (result * 10) + (b - '0');
        }

        return value.IsEmpty
            ? throw new InvalidDataException("a pax size record is empty")
            : result;
    }

    /// <summary>The size field: octal, or GNU base-256 when the first byte is 0x80.</summary>
    private static long ParseSize(ReadOnlySpan<byte> field)
    {
        if (field[0] == 0x80)
        {
            var rest = field[1..];
            if (rest[..3].ContainsAnyExcept((byte)0) || (rest[3] & 0x80) != 0)
            {
                throw new TarLimitException("an entry's size field is larger than any archive pyro accepts");
            }

            return BinaryPrimitives.ReadInt64BigEndian(rest[3..]);
        }

        return ParseOctal(field, "size");
    }

    /// <summary>
    /// Octal as every TarReader version reads it alike: leading spaces, digits, then only NULs and
    /// spaces. Anything else is refused rather than guessed at.
    /// </summary>
    private static long ParseOctal(ReadOnlySpan<byte> field, string name)
    {
        var i = 0;
        while (i < field.Length && field[i] == (byte)' ')
        {
            i++;
        }

        long value = 0;
        for (; i < field.Length && field[i] is >= (byte)'0' and <= (byte)'7'; i++)
        {
            if (value > long.MaxValue >> 3)
            {
                throw new TarLimitException($"an entry's {name} field is larger than any archive pyro accepts");
            }

            value = (value << 3) | (long)(field[i] - '0');
        }

        if (field[i..].ContainsAnyExcept((byte)0, (byte)' '))
        {
            throw new InvalidDataException($"an entry's {name} field is not an octal number");
        }

        return value;
    }

    private void Expect(long size)
    {
        // Padding to the next 512-byte block is read too, and counted.
        var padded = size > long.MaxValue - Block ? long.MaxValue : (size + Block - 1) / Block * Block;
        if (padded > _maxBytes - _position)
        {
            throw new TarLimitException($"the archive holds more than {_maxBytes} bytes, the limit");
        }

        _remaining = padded;
    }
}
