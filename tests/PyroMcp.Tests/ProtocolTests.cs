using System.Buffers;
using System.Buffers.Binary;
using PyroMcp.Protocol;

namespace PyroMcp.Tests;

public sealed class FrameCodecTests
{
    [Fact]
    public void FramesRoundTripAndPartialInputWaits()
    {
        var writer = new ArrayBufferWriter<byte>();
        FrameCodec.Write(writer, new Frame(7, FrameType.Stdout, "hello"u8.ToArray()));
        FrameCodec.Write(writer, new Frame(8, FrameType.Result, "{}"u8.ToArray()));
        var bytes = writer.WrittenMemory.ToArray();

        var partial = new ReadOnlySequence<byte>(bytes, 0, 12);
        Assert.False(FrameCodec.TryRead(ref partial, out _));

        var all = new ReadOnlySequence<byte>(bytes);
        Assert.True(FrameCodec.TryRead(ref all, out var first));
        Assert.Equal((7u, FrameType.Stdout, "hello"), (first.StreamId, first.Type, System.Text.Encoding.UTF8.GetString(first.Payload.Span)));
        Assert.True(FrameCodec.TryRead(ref all, out var second));
        Assert.Equal(8u, second.StreamId);
        Assert.True(all.IsEmpty);
    }

    [Fact]
    public void AnOversizedLengthIsRejectedFromTheHeaderAlone()
    {
        // Only a header: the codec must refuse before it waits for (or allocates) 4 GiB.
        var header = new byte[FrameCodec.HeaderLength];
        BinaryPrimitives.WriteUInt32BigEndian(header, uint.MaxValue);
        header[8] = (byte)FrameType.Stdout;
        var buffer = new ReadOnlySequence<byte>(header);

        var ex = Assert.Throws<ProtocolViolationException>(() => FrameCodec.TryRead(ref buffer, out _));
        Assert.Contains("limit", ex.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(10)]
    [InlineData(255)]
    public void UnknownFrameTypesAreRejected(byte type)
    {
        var header = new byte[FrameCodec.HeaderLength];
        header[8] = type;
        var buffer = new ReadOnlySequence<byte>(header);

        Assert.Throws<ProtocolViolationException>(() => FrameCodec.TryRead(ref buffer, out _));
    }

    [Fact]
    public void MalformedJsonIsAProtocolViolation()
    {
        Assert.Throws<ProtocolViolationException>(() => ProtocolJsonContext.Decode<AgentResponse>("{not json"u8.ToArray()));
        Assert.Throws<ProtocolViolationException>(() => ProtocolJsonContext.Decode<AgentResponse>("null"u8.ToArray()));
    }
}
