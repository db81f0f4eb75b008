using System.Buffers;
using System.Buffers.Binary;
using PyroMcp.Protocol;
using PyroMcp.Vmm;

namespace PyroMcp.Tests;

/// <summary>
/// The host end of the guest channel against a fake guest that misbehaves. Whatever the guest
/// sends, the host process keeps running and the call fails with a pyro error.
/// </summary>
public sealed class HostileGuestTests
{
    private static readonly ExecRequest Exec = new() { Argv = ["true"], TimeoutMs = 5000 };

    [Fact]
    public async Task AnOversizedFrameClosesTheChannelAndFailsTheCall()
    {
        var pipe = new DuplexPipe();
        await using var client = GuestAgentClient.Over(pipe.Host);
        var call = client.ExecAsync(Exec, null, null, 1024, CancellationToken.None);
        await ReadRequestAsync(pipe.Guest);

        var header = new byte[FrameCodec.HeaderLength];
        BinaryPrimitives.WriteUInt32BigEndian(header, 1u << 30);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(4), 1);
        header[8] = (byte)FrameType.Stdout;
        await pipe.Guest.WriteAsync(header);
        await pipe.Guest.FlushAsync();

        var ex = await Assert.ThrowsAsync<GuestChannelException>(() => call);
        Assert.Equal("guest_channel_closed", ex.Code);
        Assert.IsType<ProtocolViolationException>(await client.Closed);
    }

    [Fact]
    public async Task AGuestThatSendsHostOnlyFramesLosesItsChannel()
    {
        var pipe = new DuplexPipe();
        await using var client = GuestAgentClient.Over(pipe.Host);
        var call = client.ExecAsync(Exec, null, null, 1024, CancellationToken.None);
        await ReadRequestAsync(pipe.Guest);

        await SendAsync(pipe.Guest, new Frame(1, FrameType.Request, ProtocolJsonContext.Encode(new AgentRequest { Op = "exec" })));

        await Assert.ThrowsAsync<GuestChannelException>(() => call);
        Assert.Contains("only the host may send", (await client.Closed).Message);
    }

    [Fact]
    public async Task AMalformedResultIsAProtocolError()
    {
        var pipe = new DuplexPipe();
        await using var client = GuestAgentClient.Over(pipe.Host);
        var call = client.ExecAsync(Exec, null, null, 1024, CancellationToken.None);
        await ReadRequestAsync(pipe.Guest);

        await SendAsync(pipe.Guest, new Frame(1, FrameType.Result, "{\"exec\": [1,2,3]}"u8.ToArray()));

        var ex = await Assert.ThrowsAsync<GuestChannelException>(() => call);
        Assert.Equal("guest_protocol", ex.Code);
    }

    [Fact]
    public async Task OutputBeyondTheCapIsDroppedOnTheHostWhateverTheGuestClaims()
    {
        var pipe = new DuplexPipe();
        await using var client = GuestAgentClient.Over(pipe.Host);
        long received = 0;
        var call = client.ExecAsync(Exec, data => { received += data.Length; return ValueTask.CompletedTask; }, null, 100_000, CancellationToken.None);
        await ReadRequestAsync(pipe.Guest);

        // 5 MB of stdout from a guest that ignores the cap, then a result claiming nothing was cut.
        var chunk = new byte[64 * 1024];
        for (var i = 0; i < 80; i++)
        {
            await SendAsync(pipe.Guest, new Frame(1, FrameType.Stdout, chunk));
        }

        await SendAsync(pipe.Guest, new Frame(1, FrameType.Result, ProtocolJsonContext.Encode(new AgentResponse { Exec = new ExecExit { ExitCode = 0, StdoutTruncated = false } })));
        var exit = await call;

        Assert.Equal(100_000, received);
        Assert.True(exit.StdoutTruncated);
    }

    [Fact]
    public async Task GuestErrorTextIsBoundedAndStrippedOfControlCharacters()
    {
        var pipe = new DuplexPipe();
        await using var client = GuestAgentClient.Over(pipe.Host);
        var call = client.ExecAsync(Exec, null, null, 1024, CancellationToken.None);
        await ReadRequestAsync(pipe.Guest);

        var hostile = "\u001b]0;pwned\u0007\u001b[2J" + new string('A', 10_000);
        await SendAsync(pipe.Guest, new Frame(1, FrameType.Error, ProtocolJsonContext.Encode(new AgentError("bad\u001bcode", hostile))));

        var ex = await Assert.ThrowsAsync<GuestOperationException>(() => call);
        Assert.DoesNotContain('\u001b', ex.Message);
        Assert.DoesNotContain('\u0007', ex.Message);
        Assert.True(ex.Message.Length <= 2000);
        Assert.Equal("badcode", ex.Code);
    }

    [Fact]
    public async Task TheSignalNameAGuestReportsIsBoundedAndStripped()
    {
        var pipe = new DuplexPipe();
        await using var client = GuestAgentClient.Over(pipe.Host);
        var call = client.ExecAsync(Exec, null, null, 1024, CancellationToken.None);
        await ReadRequestAsync(pipe.Guest);

        var exit = new ExecExit { ExitCode = 137, Signal = "SIG\u001b]0;pwned\u0007KILL" + new string('X', 500) };
        await SendAsync(pipe.Guest, new Frame(1, FrameType.Result, ProtocolJsonContext.Encode(new AgentResponse { Exec = exit })));

        var signal = (await call).Signal!;
        Assert.DoesNotContain('\u001b', signal);
        Assert.DoesNotContain('\u0007', signal);
        Assert.Equal(16, signal.Length);
    }

    [Fact]
    public async Task FramesForUnknownStreamsAreIgnored()
    {
        var pipe = new DuplexPipe();
        await using var client = GuestAgentClient.Over(pipe.Host);
        var call = client.ExecAsync(Exec, null, null, 1024, CancellationToken.None);
        await ReadRequestAsync(pipe.Guest);

        await SendAsync(pipe.Guest, new Frame(999, FrameType.Stdout, "stray"u8.ToArray()));
        await SendAsync(pipe.Guest, new Frame(1, FrameType.Result, ProtocolJsonContext.Encode(new AgentResponse { Exec = new ExecExit { ExitCode = 5 } })));

        Assert.Equal(5, (await call).ExitCode);
    }

    private static async Task<Frame> ReadRequestAsync(Stream guest)
    {
        var buffer = new byte[64 * 1024];
        var filled = 0;
        while (true)
        {
            filled += await guest.ReadAsync(buffer.AsMemory(filled));
            var sequence = new ReadOnlySequence<byte>(buffer, 0, filled);
            if (FrameCodec.TryRead(ref sequence, out var frame))
            {
                Assert.Equal(FrameType.Request, frame.Type);
                return frame;
            }
        }
    }

    private static async Task SendAsync(Stream guest, Frame frame)
    {
        var writer = new ArrayBufferWriter<byte>();
        FrameCodec.Write(writer, frame);
        await guest.WriteAsync(writer.WrittenMemory);
        await guest.FlushAsync();
    }
}
