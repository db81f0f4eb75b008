using System.Buffers.Binary;
using PyroMcp.Protocol;

namespace PyroMcp.Vmm;

internal sealed partial class GuestAgentClient
{
    /// <summary>
    /// One tcp.connect stream to 127.0.0.1:<paramref name="guestPort"/> in the guest: the bytes of
    /// <paramref name="input"/> go to the guest socket (its end becomes StdinEnd), the guest
    /// socket's bytes go to <paramref name="onOutput"/>, and an empty chunk there says the guest
    /// finished sending. Output is acknowledged as <paramref name="onOutput"/> takes it, so the agent
    /// stays within <see cref="TcpConnectRequest.WindowBytes"/> of the consumer and a consumer that
    /// stops only stops its own connection. The queue never makes the channel's reader wait: an
    /// agent that ignores its window overflows it (<see cref="StreamBufferBytes"/>, and the shared
    /// relay budget) and loses the connection with <c>client_too_slow</c>.
    /// Returns the agent's summary, or null when the agent's reply could not be read.
    /// Throws <see cref="GuestOperationException"/> when the guest refuses or resets the connection.
    /// </summary>
    internal async Task<TcpSummary?> TcpConnectAsync(int guestPort, Stream input, Func<ReadOnlyMemory<byte>, CancellationToken, ValueTask> onOutput,
        CancellationToken cancellationToken)
    {
        var request = new AgentRequest { Op = AgentOps.TcpConnect, Tcp = new TcpConnectRequest { Port = guestPort } };
        var id = (uint)Interlocked.Increment(ref _nextStreamId);
        var queue = new StreamQueue(this, dropWhenFull: true);
        _calls[id] = queue;
        using var watchdog = new Watchdog(Limits, request, cancellationToken);
        using var consumer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, queue.OverflowToken);
        var finished = false;
        try
        {
            await SendAsync(new Frame(id, FrameType.Request, ProtocolJsonContext.Encode(request)), watchdog.Token).ConfigureAwait(false);
            using var cancel = watchdog.Token.Register(() => CancelInGuest(queue, id));
            _ = PumpStdinAsync(id, queue, input, watchdog);
            long unacknowledged = 0;
            while (true)
            {
                var frame = await NextAsync(queue, watchdog, request, cancellationToken).ConfigureAwait(false);
                switch (frame.Type)
                {
                    case FrameType.Stdout:
                        await onOutput(frame.Payload, consumer.Token).ConfigureAwait(false);
                        unacknowledged += FrameCodec.HeaderLength + frame.Payload.Length;
                        if (unacknowledged >= TcpConnectRequest.WindowBytes / 4)
                        {
                            await SendAsync(Ack(id, unacknowledged), watchdog.Token).ConfigureAwait(false);
                            unacknowledged = 0;
                        }

                        break;
                    case FrameType.Result:
                        finished = true;
                        // The summary is only a tally: a garbled one costs this connection nothing,
                        // and must not cost the other connections their channel.
                        return TryDecode<AgentResponse>(frame)?.Tcp;
                    case FrameType.Error:
                        finished = true;
                        var error = TryDecode<AgentError>(frame);
                        throw new GuestOperationException(Sanitize(error?.Code ?? "guest_protocol", 64),
                            Sanitize(error?.Message ?? "the guest agent ended the connection with a malformed error", 2000));
                    default:
                        // Stderr has no meaning on a TCP stream: dropped.
                        break;
                }
            }
        }
        catch (OperationCanceledException) when (queue.Overflowed && !cancellationToken.IsCancellationRequested)
        {
            throw new GuestOperationException("client_too_slow",
                $"the guest sent more than {StreamBufferBytes / (1024 * 1024)} MiB ahead of what the client of port {guestPort} read, past its window; the connection was closed");
        }
        finally
        {
            _calls.TryRemove(id, out _);
            queue.Close();
            if (!finished)
            {
                CancelInGuest(queue, id);
            }
            else
            {
                // The input pump ends when its socket closes after this; the stream is over, so no cancel.
                queue.MarkCancelled();
            }
        }
    }

    private static Frame Ack(uint id, long bytes)
    {
        var payload = new byte[sizeof(uint)];
        BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)Math.Min(bytes, uint.MaxValue));
        return new Frame(id, FrameType.Ack, payload);
    }

    private static T? TryDecode<T>(Frame frame) where T : class
    {
        try
        {
            return ProtocolJsonContext.Decode<T>(frame.Payload);
        }
        catch (ProtocolViolationException)
        {
            return null;
        }
    }
}
