using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using System.Threading.Channels;
using PyroMcp.Protocol;
using PyroMcp.Vmm;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// Random and mutated frames, from a fixed seed, against the host's parser, the guest channel
/// client and the supervisor's relay. Nothing may throw out of the host side, hang, or buffer
/// past its bound; the figure line says how much was tried and the most that was ever buffered.
/// </summary>
public sealed class FrameFuzzTests
{
    private const int Seed = 20261201;
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    private sealed class Tally
    {
        internal long Frames;
        internal long Crashes;
        internal long Hangs;
        internal long MaxBuffered;
        internal readonly List<string> Failures = [];

        internal void Buffered(long bytes) => MaxBuffered = Math.Max(MaxBuffered, bytes);

        internal void Crash(string where, Exception ex)
        {
            Crashes++;
            if (Failures.Count < 10)
            {
                Failures.Add($"{where}: {ex.GetType().Name}: {ex.Message}");
            }
        }
    }

    [Fact]
    public async Task RandomAndMutatedFramesNeverCrashHangOrBufferWithoutBound()
    {
        var random = new Random(Seed);
        var tally = new Tally();

        FuzzCodec(random, tally, 3000);
        for (var round = 0; round < 120; round++)
        {
            await FuzzClientAsync(random, tally, round);
        }

        for (var round = 0; round < 40; round++)
        {
            await FuzzSupervisorAsync(random, tally, round);
        }

        Figures.Record("guest frame fuzzing", $"{tally.Frames} frames, {tally.Crashes} crashes, {tally.Hangs} hangs, max bytes buffered {tally.MaxBuffered}");
        Assert.True(tally.Crashes == 0, string.Join('\n', tally.Failures));
        Assert.Equal(0, tally.Hangs);
        // One stream's buffer, one frame of slack per stream, the reader's one frame, the writers' budgets: a few MiB, never the input size.
        Assert.InRange(tally.MaxBuffered, 1, 16L * 1024 * 1024);
    }

    private static void FuzzCodec(Random random, Tally tally, int cases)
    {
        for (var i = 0; i < cases; i++)
        {
            var bytes = i % 3 == 0 ? RandomBytes(random, random.Next(0, 64)) : Concat(Enumerable.Range(0, random.Next(1, 6)).Select(_ => HostileFrame(random, [1, 2, 3])));
            var sequence = new ReadOnlySequence<byte>(bytes);
            try
            {
                while (FrameCodec.TryRead(ref sequence, out var frame))
                {
                    tally.Frames++;
                    Assert.True(frame.Payload.Length <= FrameCodec.MaxPayloadLength);
                }
            }
            catch (ProtocolViolationException)
            {
                tally.Frames++;
            }
            catch (Exception ex)
            {
                tally.Crash("codec", ex);
            }
        }
    }

    /// <summary>One client with three calls in flight (a local exec, a local read, a relay whose consumer stalls) against a hostile guest.</summary>
    private static async Task FuzzClientAsync(Random random, Tally tally, int round)
    {
        var pipe = new DuplexPipe();
        var client = GuestAgentClient.Over(pipe.Host);
        client.StreamBufferBytes = 1024 * 1024;
        client.Limits = CallLimits.Default with { TransferIdle = TimeSpan.FromSeconds(5), OtherIdle = TimeSpan.FromSeconds(5), ExecMargin = TimeSpan.FromSeconds(5) };
        using var end = new CancellationTokenSource();
        var stallRelay = random.Next(2) == 0;
        var calls = new (string Name, Task Task)[]
        {
            ("exec", client.ExecAsync(new ExecRequest { Argv = ["x"], TimeoutMs = 1000 }, _ => ValueTask.CompletedTask, _ => ValueTask.CompletedTask, 64 * 1024, CancellationToken.None)),
            ("files.read", client.CallAsync(new AgentRequest { Op = AgentOps.FilesRead, Files = new FilesRequest { Path = "/workspace/f" } }, _ => ValueTask.CompletedTask, null, CancellationToken.None)),
            ("relay", client.RelayAsync(new AgentRequest { Op = AgentOps.TarOut }, "{\"op\":\"tar.out\"}"u8.ToArray(), Channel.CreateUnbounded<Frame>().Reader,
                async (_, token) =>
                {
                    if (stallRelay)
                    {
                        await Task.Delay(Timeout.Infinite, token);
                    }
                }, end.Token)),
        };

        try
        {
            var count = random.Next(1, 40);
            for (var i = 0; i < count && client.Connection.IsOpen; i++)
            {
                await FakeGuest.WriteRawAsync(pipe.Guest, HostileFrame(random, [1, 2, 3]));
                tally.Frames++;
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException)
        {
            // The host closed the channel on a bad frame: what it should do.
        }

        // The guest goes away; whatever is still open must end now, with a pyro error.
        pipe.Guest.Dispose();
        end.CancelAfter(TimeSpan.FromSeconds(1));
        foreach (var (name, task) in calls)
        {
            try
            {
                await task.WaitAsync(Deadline);
            }
            catch (TimeoutException)
            {
                tally.Hangs++;
            }
            catch (PyroException)
            {
            }
            catch (OperationCanceledException) when (name == "relay")
            {
            }
            catch (Exception ex)
            {
                tally.Crash($"round {round} {name}", ex);
            }
        }

        tally.Buffered(client.BufferedBytesHighWater + client.Connection.ReceiveBufferHighWater + client.Connection.QueuedBytesHighWater);
        await client.DisposeAsync();
    }

    /// <summary>A supervisor session between a hostile client and a hostile guest; afterwards a good client must still be served.</summary>
    private static async Task FuzzSupervisorAsync(Random random, Tally tally, int round)
    {
        var agentPipe = new DuplexPipe();
        var agent = GuestAgentClient.Over(agentPipe.Host);
        agent.StreamBufferBytes = 1024 * 1024;
        var garbage = round % 4 >= 2;
        await using var guest = new FakeGuest(agentPipe.Guest, async (g, frame, request) =>
        {
            if (request.Exec?.Argv is ["true"])
            {
                await g.SendAsync(new Frame(frame.StreamId, FrameType.Result, ProtocolJsonContext.Encode(new AgentResponse { Exec = new ExecExit { ExitCode = 0 } })));
                return;
            }

            // Half the rounds: a reply the host will not accept; the others: output until cancelled (or 6 MiB), then an error.
            if (garbage)
            {
                await g.SendAsync(new Frame(frame.StreamId, FrameType.Result, "\"not an object\""u8.ToArray()));
                return;
            }

            await g.StreamUntilCancelledAsync(frame.StreamId, 6L * 1024 * 1024);
        });

        var hostilePipe = new DuplexPipe();
        var hostile = new ClientSession(hostilePipe.Guest, agent, _ => { }, TimeSpan.FromSeconds(1));
        hostile.Start();
        // The hostile client reads every other round, so both the stalled and the reading paths are fuzzed.
        var drain = round % 2 == 0 ? hostilePipe.Host.CopyToAsync(Stream.Null) : Task.CompletedTask;
        try
        {
            var count = random.Next(1, 30);
            for (var i = 0; i < count && hostile.Connection.IsOpen; i++)
            {
                var frame = random.Next(3) == 0
                    ? FakeGuest.Encode(new Frame((uint)random.Next(1, 4), FrameType.Request, ProtocolJsonContext.Encode(new AgentRequest { Op = AgentOps.Exec, Exec = new ExecRequest { Argv = ["yes"], TimeoutMs = 5000 } })))
                    : HostileFrame(random, [1, 2, 3], fromClient: true);
                await FakeGuest.WriteRawAsync(hostilePipe.Host, frame);
                tally.Frames++;
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException)
        {
        }

        await hostilePipe.Host.DisposeAsync();
        try
        {
            await hostile.Closed.WaitAsync(Deadline);
            await drain.WaitAsync(Deadline);
        }
        catch (TimeoutException)
        {
            tally.Hangs++;
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException)
        {
        }

        // The workspace's one channel survived whatever that client and the guest did: another client is served.
        var goodPipe = new DuplexPipe();
        await using (var good = new ClientSession(goodPipe.Guest, agent, _ => { }, TimeSpan.FromSeconds(10)))
        {
            good.Start();
            await using var goodClient = GuestAgentClient.Over(goodPipe.Host);
            try
            {
                var exit = await goodClient.ExecAsync(new ExecRequest { Argv = ["true"], TimeoutMs = 5000 }, null, null, 1024, CancellationToken.None).WaitAsync(Deadline);
                Assert.Equal(0, exit.ExitCode);
            }
            catch (TimeoutException)
            {
                tally.Hangs++;
            }
            catch (Exception ex)
            {
                tally.Crash($"supervisor round {round}: good client", ex);
            }
        }

        tally.Buffered(agent.BufferedBytesHighWater + agent.Connection.ReceiveBufferHighWater + hostile.Connection.QueuedBytesHighWater);
        await hostile.DisposeAsync();
        await agent.DisposeAsync();
    }

    /// <summary>One frame, valid or broken in one of the ways a hostile peer can break it.</summary>
    private static byte[] HostileFrame(Random random, uint[] openStreams, bool fromClient = false)
    {
        var stream = random.Next(4) == 0 ? (uint)random.Next() : openStreams[random.Next(openStreams.Length)];
        var types = fromClient
            ? new[] { FrameType.Request, FrameType.Stdin, FrameType.StdinEnd, FrameType.Cancel, FrameType.Result, FrameType.Stdout }
            : new[] { FrameType.Stdout, FrameType.Stderr, FrameType.Result, FrameType.Error };
        var type = types[random.Next(types.Length)];
        switch (random.Next(14))
        {
            case 0:
                // A length over the cap (the header alone; the host must refuse before reading on).
                return Header((uint)random.NextInt64(FrameCodec.MaxPayloadLength + 1L, uint.MaxValue + 1L), stream, (byte)type);
            case 1:
                // Exactly at the cap.
                return FakeGuest.Encode(new Frame(stream, FrameType.Stdout, RandomBytes(random, FrameCodec.MaxPayloadLength)));
            case 2:
                // An unknown type.
                return [.. Header(4, stream, (byte)random.Next(9, 256)), 1, 2, 3, 4];
            case 3:
                // Truncated: a header promising more than follows.
                return Header((uint)random.Next(10, 1000), stream, (byte)type).Concat(RandomBytes(random, random.Next(0, 9))).ToArray();
            case 4:
                // Huge JSON: a message of almost the cap.
                return FakeGuest.Encode(new Frame(stream, type is FrameType.Error ? FrameType.Error : FrameType.Result,
                    Encoding.UTF8.GetBytes("{\"code\":\"x\",\"message\":\"" + new string('A', FrameCodec.MaxPayloadLength - 64) + "\"}")));
            case 5:
                // Invalid UTF-8 inside a JSON string.
                byte[] invalid = [.. "{\"code\":\""u8, 0xC3, 0x28, 0xFF, .. "\",\"message\":\"m\"}"u8];
                return FakeGuest.Encode(new Frame(stream, type, invalid));
            case 6:
                // Deep nesting.
                var depth = random.Next(65, 100_000);
                return FakeGuest.Encode(new Frame(stream, type, Encoding.ASCII.GetBytes(new string('[', depth) + new string(']', depth))));
            case 7:
                // A well-formed result (a second one for the same stream is a duplicate).
                return FakeGuest.Encode(new Frame(stream, FrameType.Result, ProtocolJsonContext.Encode(new AgentResponse { Exec = new ExecExit { ExitCode = random.Next(256) } })));
            case 8:
                return FakeGuest.Encode(new Frame(stream, FrameType.Error, ProtocolJsonContext.Encode(new AgentError("bad\u001b", new string('\u0007', 100)))));
            case 9:
                // A zero-length frame of any type byte.
                return Header(0, stream, (byte)random.Next(0, 256));
            case 10:
                // A valid frame with one byte flipped somewhere, header included.
                var valid = FakeGuest.Encode(new Frame(stream, type, RandomBytes(random, random.Next(0, 200))));
                valid[random.Next(valid.Length)] ^= (byte)(1 << random.Next(8));
                return valid;
            default:
                // Ordinary output, small or large.
                return FakeGuest.Encode(new Frame(stream, type, RandomBytes(random, random.Next(0, 2) == 0 ? random.Next(0, 100) : 64 * 1024)));
        }
    }

    private static byte[] Header(uint length, uint stream, byte type)
    {
        var header = new byte[FrameCodec.HeaderLength];
        BinaryPrimitives.WriteUInt32BigEndian(header, length);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(4), stream);
        header[8] = type;
        return header;
    }

    private static byte[] RandomBytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    private static byte[] Concat(IEnumerable<byte[]> parts) => parts.SelectMany(p => p).ToArray();
}
