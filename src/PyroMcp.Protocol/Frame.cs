namespace PyroMcp.Protocol;

/// <summary>What a frame carries. The numbers are on the wire: never renumber.</summary>
public enum FrameType : byte
{
    /// <summary>Host to guest: a JSON <see cref="AgentRequest"/> that opens the stream.</summary>
    Request = 1,
    /// <summary>Guest to host: raw bytes the command wrote to stdout.</summary>
    Stdout = 2,
    /// <summary>Guest to host: raw bytes the command wrote to stderr.</summary>
    Stderr = 3,
    /// <summary>Host to guest: raw bytes for the command's stdin.</summary>
    Stdin = 4,
    /// <summary>Host to guest: no more stdin.</summary>
    StdinEnd = 5,
    /// <summary>Guest to host: a JSON <see cref="AgentResponse"/>; closes the stream.</summary>
    Result = 6,
    /// <summary>Guest to host: a JSON <see cref="AgentError"/>; closes the stream.</summary>
    Error = 7,
    /// <summary>Host to guest: stop the operation of this stream.</summary>
    Cancel = 8,
    /// <summary>
    /// Host to guest: the host has passed on this many more bytes of the stream's Stdout frames,
    /// headers included (payload: u32 big-endian). Only tcp.connect streams and requests with
    /// <see cref="AgentRequest.Windowed"/> wait for it: they keep
    /// at most <see cref="TcpConnectRequest.WindowBytes"/> unacknowledged, so a TCP client that
    /// stops reading stops the guest's sender instead of filling the host.
    /// </summary>
    Ack = 9,
}

/// <summary>One unit on the channel: a header of 9 bytes (payload length, stream id, type) and the payload.</summary>
/// <remarks>The payload array is owned by the frame; frames are small (see <see cref="FrameCodec.MaxPayloadLength"/>).</remarks>
public readonly record struct Frame(uint StreamId, FrameType Type, ReadOnlyMemory<byte> Payload);
