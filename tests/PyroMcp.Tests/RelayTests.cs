using System.Threading.Channels;
using PyroMcp.Protocol;
using PyroMcp.Vmm;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// The supervisor's relay against a fake guest: one client that stops reading must not delay any
/// other stream, and every guest call ends on the host (consumer failure, silence, deadline).
/// </summary>
public sealed class RelayTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private static AgentRequest Exec(params string[] argv) => new() { Op = AgentOps.Exec, Exec = new ExecRequest { Argv = argv, TimeoutMs = 60_000 } };

    private static Frame ExitFrame(uint streamId, int code)
        => new(streamId, FrameType.Result, ProtocolJsonContext.Encode(new AgentResponse { Exec = new ExecExit { ExitCode = code } }));

    /// <summary>A guest that streams for "yes" until cancelled and answers anything else at once.</summary>
    private static async Task Respond(FakeGuest guest, Frame frame, AgentRequest request)
    {
        if (request.Exec?.Argv is ["yes", ..])
        {
            await guest.StreamUntilCancelledAsync(frame.StreamId, 512L * 1024 * 1024);
            return;
        }

        await guest.SendAsync(ExitFrame(frame.StreamId, 0));
    }

    [Fact]
    public async Task AClientThatStopsReadingDelaysNoOtherStream()
    {
        var pipe = new DuplexPipe();
        await using var client = GuestAgentClient.Over(pipe.Host);
        await using var guest = new FakeGuest(pipe.Guest);
        using var end = new CancellationTokenSource();
        var noInput = Channel.CreateUnbounded<Frame>().Reader;

        var stalled = client.RelayAsync(Exec("yes"), ProtocolJsonContext.Encode(Exec("yes")), noInput,
            async (_, token) => await Task.Delay(Timeout.Infinite, token), end.Token);
        var first = await guest.NextRequestAsync();
        var delivered = new List<Frame>();
        var other = client.RelayAsync(Exec("true"), ProtocolJsonContext.Encode(Exec("true")), noInput,
            (frame, _) => { delivered.Add(frame); return ValueTask.CompletedTask; }, end.Token);
        var second = await guest.NextRequestAsync();

        // Twice its buffer for the client that reads nothing, then the other stream's answer behind it.
        var send = Task.Run(async () =>
        {
            var chunk = new byte[64 * 1024];
            for (var i = 0; i < 2 * client.StreamBufferBytes / chunk.Length; i++)
            {
                await guest.SendAsync(new Frame(first.StreamId, FrameType.Stdout, chunk));
            }

            await guest.SendAsync(ExitFrame(second.StreamId, 0));
        });

        await Task.WhenAll(send, other).WaitAsync(Deadline);
        Assert.Equal(FrameType.Result, Assert.Single(delivered).Type);
        await guest.CancelledAsync(first.StreamId).WaitAsync(Deadline);
        Assert.False(guest.WasCancelled(second.StreamId));
        Assert.InRange(client.BufferedBytesHighWater, 1, client.StreamBufferBytes + FrameCodec.HeaderLength + FrameCodec.MaxPayloadLength);

        end.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stalled.WaitAsync(Deadline));
    }

    [Fact]
    public async Task AConsumerThatFailsCancelsTheGuestOperation()
    {
        var pipe = new DuplexPipe();
        await using var client = GuestAgentClient.Over(pipe.Host);
        await using var guest = new FakeGuest(pipe.Guest);

        var call = client.CallAsync(new AgentRequest { Op = AgentOps.TarOut, Tar = new TarRequest { Path = "/workspace" } },
            _ => throw new InvalidDataException("not a tar archive"), null, CancellationToken.None);
        var request = await guest.NextRequestAsync();
        var streaming = guest.StreamUntilCancelledAsync(request.StreamId, 256L * 1024 * 1024);

        await Assert.ThrowsAsync<InvalidDataException>(() => call.WaitAsync(Deadline));
        await guest.CancelledAsync(request.StreamId).WaitAsync(Deadline);
        await streaming.WaitAsync(Deadline);
    }

    [Fact]
    public async Task AGuestThatGoesQuietOnATransferIsGivenUpOnAndCancelled()
    {
        var pipe = new DuplexPipe();
        await using var client = GuestAgentClient.Over(pipe.Host);
        // Long enough that a loaded machine (the fast tests run in parallel) delivers the request
        // and the first 1000 bytes well inside it; the point is what happens after them.
        client.Limits = CallLimits.Default with { TransferIdle = TimeSpan.FromSeconds(5) };
        await using var guest = new FakeGuest(pipe.Guest);
        long received = 0;

        var call = client.CallAsync(new AgentRequest { Op = AgentOps.FilesRead, Files = new FilesRequest { Path = "/workspace/big" } },
            data => { received += data.Length; return ValueTask.CompletedTask; }, null, CancellationToken.None);
        var request = await guest.NextRequestAsync();
        await guest.SendAsync(new Frame(request.StreamId, FrameType.Stdout, new byte[1000]));

        var ex = await Assert.ThrowsAsync<GuestChannelException>(() => call.WaitAsync(Deadline));
        Assert.Equal("guest_unresponsive", ex.Code);
        Assert.Equal(1000, received);
        await guest.CancelledAsync(request.StreamId).WaitAsync(Deadline);
    }

    [Fact]
    public async Task AnExecTheGuestNeverFinishesEndsAtItsTimeoutPlusTheMargin()
    {
        var pipe = new DuplexPipe();
        await using var client = GuestAgentClient.Over(pipe.Host);
        client.Limits = CallLimits.Default with { ExecMargin = TimeSpan.FromMilliseconds(500) };
        await using var guest = new FakeGuest(pipe.Guest);

        var call = client.ExecAsync(new ExecRequest { Argv = ["sleep", "infinity"], TimeoutMs = 500 }, null, null, 1024, CancellationToken.None);
        var request = await guest.NextRequestAsync();

        var ex = await Assert.ThrowsAsync<GuestChannelException>(() => call.WaitAsync(Deadline));
        Assert.Equal("guest_unresponsive", ex.Code);
        await guest.CancelledAsync(request.StreamId).WaitAsync(Deadline);
    }

    [Fact]
    public async Task OthersAreServedWhileASupervisorClientLeavesItsOutputUnread()
    {
        var agentPipe = new DuplexPipe();
        await using var agent = GuestAgentClient.Over(agentPipe.Host);
        await using var guest = new FakeGuest(agentPipe.Guest, Respond);

        // Long enough never to fire here: this test is about the others, not the cut-off.
        var stalledPipe = new DuplexPipe();
        await using var stalled = new ClientSession(stalledPipe.Guest, agent, _ => { }, TimeSpan.FromMinutes(30));
        stalled.Start();
        await FakeGuest.WriteRawAsync(stalledPipe.Host, FakeGuest.Encode(new Frame(1, FrameType.Request, ProtocolJsonContext.Encode(Exec("yes")))));
        // The guest stream of the first relayed request is 1; its cancel means the stalled client's buffer overflowed.
        await guest.CancelledAsync(1).WaitAsync(Deadline);

        var goodPipe = new DuplexPipe();
        await using var good = new ClientSession(goodPipe.Guest, agent, _ => { }, TimeSpan.FromMinutes(30));
        good.Start();
        await using var goodClient = GuestAgentClient.Over(goodPipe.Host);
        for (var i = 0; i < 20; i++)
        {
            var exit = await goodClient.ExecAsync(new ExecRequest { Argv = ["true"], TimeoutMs = 5000 }, null, null, 1024, CancellationToken.None).WaitAsync(Deadline);
            Assert.Equal(0, exit.ExitCode);
        }

        Assert.False(stalled.Closed.IsCompleted, "the stalled client is still connected, and still not reading");
        Assert.InRange(agent.BufferedBytesHighWater, 1, agent.StreamBufferBytes + FrameCodec.HeaderLength + FrameCodec.MaxPayloadLength);
    }

    [Fact]
    public async Task ASupervisorClientThatReadsNothingIsCutOffAndItsOperationCancelled()
    {
        var agentPipe = new DuplexPipe();
        await using var agent = GuestAgentClient.Over(agentPipe.Host);
        await using var guest = new FakeGuest(agentPipe.Guest, Respond);

        var stalledPipe = new DuplexPipe();
        await using var stalled = new ClientSession(stalledPipe.Guest, agent, _ => { }, TimeSpan.FromSeconds(1));
        stalled.Start();
        await FakeGuest.WriteRawAsync(stalledPipe.Host, FakeGuest.Encode(new Frame(1, FrameType.Request, ProtocolJsonContext.Encode(Exec("yes")))));

        var reason = await stalled.Closed.WaitAsync(Deadline);
        Assert.IsType<TimeoutException>(reason);
        Assert.Contains("cut off", reason.Message);
        await guest.CancelledAsync(1).WaitAsync(Deadline);

        // The workspace stays usable.
        var goodPipe = new DuplexPipe();
        await using var good = new ClientSession(goodPipe.Guest, agent, _ => { });
        good.Start();
        await using var goodClient = GuestAgentClient.Over(goodPipe.Host);
        var exit = await goodClient.ExecAsync(new ExecRequest { Argv = ["true"], TimeoutMs = 5000 }, null, null, 1024, CancellationToken.None).WaitAsync(Deadline);
        Assert.Equal(0, exit.ExitCode);
    }
}
