using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using PyroMcp.Protocol;
using PyroMcp.Workspaces;

namespace PyroMcp.GuestTests;

/// <summary>
/// One client of a real workspace starts a command with endless output and never reads it.
/// The others must be served as if it were not there; it is cut off, its command is killed in the
/// guest, and the workspace stays usable.
/// </summary>
public sealed class StalledClientTests : GuestTest
{
    // Long enough that the other clients' ten execs finish well inside it on a loaded 2-core
    // machine (a few seconds), short enough that waiting for the cut-off does not dominate the test.
    private const int StallSeconds = 30;
    private const int Rounds = 10;
    [Fact]
    public async Task AClientThatNeverReadsDelaysNoOtherClientAndIsCutOff()
    {
        var id = await CreateWorkspaceAsync(env: new Dictionary<string, string> { ["PYRO_CLIENT_STALL_SECONDS"] = StallSeconds.ToString(CultureInfo.InvariantCulture) });
        var pyro = new Pyro(PyroScratch.Options);
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(5));

        var normal = await RoundTripsAsync(pyro, id, deadline.Token);

        using var stalled = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await stalled.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(Repo.StateDir, "workspaces", id, WorkspaceSupervisor.SocketName)), deadline.Token);
        var yes = new RunRequest { Environment = "debian:12", Command = ["yes"], TimeoutSeconds = 600 }.ToExecRequest("/workspace");
        await stalled.SendAsync(Encode(new Frame(1, FrameType.Request, ProtocolJsonContext.Encode(new AgentRequest { Op = AgentOps.Exec, Exec = yes with { MaxOutputBytes = 1L << 40 } }))));
        // The stall is real once the supervisor has filled this socket's receive buffer and we still read nothing.
        while (stalled.Available < 32 * 1024)
        {
            await Task.Delay(50, deadline.Token);
        }

        var during = await RoundTripsAsync(pyro, id, deadline.Token);
        // Every exec above completed while the stalled client was connected and unread: a send to a closed peer fails.
        await stalled.SendAsync(Encode(new Frame(2, FrameType.Request, ProtocolJsonContext.Encode(new AgentRequest { Op = WorkspaceSupervisor.PingOp }))));
        Assert.Equal(Rounds, during.Count);

        var normalMs = Median(normal);
        var duringMs = Median(during);
        Figures.Record("stalled client", string.Create(CultureInfo.InvariantCulture,
            $"other clients' exec round trip {duringMs:0} ms vs {normalMs:0} ms normal (ratio {duringMs / normalMs:0.00}), {Rounds} execs each, median"));

        // Cut off: the supervisor closes the connection, and our next send fails.
        var cutOff = false;
        while (!cutOff)
        {
            await Task.Delay(500, deadline.Token);
            try
            {
                await stalled.SendAsync(Encode(new Frame(3, FrameType.Cancel, ReadOnlyMemory<byte>.Empty)));
            }
            catch (SocketException)
            {
                cutOff = true;
            }
        }

        // Its command was cancelled in the guest, and the workspace serves as before.
        var check = await pyro.ExecWorkspaceAsync(id, new WorkspaceExecRequest
        {
            Command = ["n=0; for c in /proc/[0-9]*/comm; do [ \"$(cat $c 2>/dev/null)\" = yes ] && n=$((n+1)); done; echo $n"],
        }, deadline.Token);
        Assert.Equal(0, check.ExitCode);
        Assert.Equal("0", check.Stdout.Trim());
        Assert.Equal(WorkspaceState.Running, (await pyro.GetWorkspaceAsync(id, deadline.Token)).State);
    }

    private static async Task<List<double>> RoundTripsAsync(Pyro pyro, string id, CancellationToken cancellationToken)
    {
        var times = new List<double>();
        for (var i = 0; i < Rounds; i++)
        {
            var clock = Stopwatch.StartNew();
            var result = await pyro.ExecWorkspaceAsync(id, new WorkspaceExecRequest { Command = ["true"] }, cancellationToken);
            times.Add(clock.Elapsed.TotalMilliseconds);
            Assert.Equal(0, result.ExitCode);
        }

        return times;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }

    private static byte[] Encode(Frame frame)
    {
        var writer = new ArrayBufferWriter<byte>();
        FrameCodec.Write(writer, frame);
        return writer.WrittenSpan.ToArray();
    }
}
