using System.Buffers;
using System.Buffers.Binary;

namespace PyroMcp.Protocol;

/// <summary>Encodes and decodes frames. Decoding never trusts the peer: lengths and types are checked before any allocation.</summary>
public static class FrameCodec
{
    /// <summary>Bytes in a frame header: u32 payload length, u32 stream id, u8 type, all big-endian.</summary>
    public const int HeaderLength = 9;

    /// <summary>Largest payload a frame may carry. A peer that announces more is broken or hostile.</summary>
    public const int MaxPayloadLength = 256 * 1024;

    /// <summary>Writes one frame into <paramref name="writer"/>.</summary>
    public static void Write(IBufferWriter<byte> writer, in Frame frame)
    {
        if (frame.Payload.Length > MaxPayloadLength)
        {
            throw new ArgumentException($"Frame payload of {frame.Payload.Length} bytes is over the limit of {MaxPayloadLength}.", nameof(frame));
        }

        var span = writer.GetSpan(HeaderLength + frame.Payload.Length);
        BinaryPrimitives.WriteUInt32BigEndian(span, (uint)frame.Payload.Length);
        BinaryPrimitives.WriteUInt32BigEndian(span[4..], frame.StreamId);
        span[8] = (byte)frame.Type;
        frame.Payload.Span.CopyTo(span[HeaderLength..]);
        writer.Advance(HeaderLength + frame.Payload.Length);
    }

    /// <summary>
    /// Takes one whole frame off the front of <paramref name="buffer"/> when one is there.
    /// Throws <see cref="ProtocolViolationException"/> on a length over the limit or an unknown type.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> buffer, out Frame frame)
    {
        frame = default;
        if (buffer.Length < HeaderLength)
        {
            return false;
        }

        Span<byte> header = stackalloc byte[HeaderLength];
        buffer.Slice(0, HeaderLength).CopyTo(header);
        var length = BinaryPrimitives.ReadUInt32BigEndian(header);
        var streamId = BinaryPrimitives.ReadUInt32BigEndian(header[4..]);
        var type = header[8];
        if (length > MaxPayloadLength)
        {
            throw new ProtocolViolationException($"peer announced a frame of {length} bytes; the limit is {MaxPayloadLength}");
        }

        if (type is < (byte)FrameType.Request or > (byte)FrameType.Ack)
        {
            throw new ProtocolViolationException($"peer sent unknown frame type {type}");
        }

        if (buffer.Length < HeaderLength + length)
        {
            return false;
        }

        var payload = buffer.Slice(HeaderLength, length).ToArray();
        frame = new Frame(streamId, (FrameType)type, payload);
        buffer = buffer.Slice(HeaderLength + length);
        return true;
    }
}

/// <summary>The peer broke the framing or message rules; the channel cannot be trusted any more.</summary>
public sealed class ProtocolViolationException(string message) : Exception(message);
