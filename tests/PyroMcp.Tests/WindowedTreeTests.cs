using System.Security.Cryptography;
using PyroMcp.Protocol;
using PyroMcp.Vmm;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// tar.out and files.read through the supervisor's relay to a client that reads slowly: the real agent sends
/// only as far ahead as the client has acknowledged, so the relay's buffer stays near the window
/// instead of filling to its cap and cutting the client off (client_too_slow).
/// </summary>
public sealed class WindowedTreeTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(120);
    private readonly InProcessAgent _guest;
    private readonly GuestAgentClient _agent;

    public WindowedTreeTests()
    {
        _guest = new InProcessAgent("window");
        _agent = _guest.Client;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _guest.DisposeAsync();

    [Fact]
    public async Task ASlowReaderOfABigTreeSlowsTheGuestInsteadOfBeingCutOff()
    {
        var content = RandomNumberGenerator.GetBytes(24 * 1024 * 1024);
        await File.WriteAllBytesAsync(Path.Combine(_guest.Root, "big.bin"), content);
        using var tar = new MemoryStream(await ReadSlowlyThroughTheRelayAsync(new AgentRequest { Op = AgentOps.TarOut, Tar = new TarRequest { Path = "big.bin" } }));
        using var reader = new System.Formats.Tar.TarReader(tar);
        var entry = reader.GetNextEntry()!;
        using var extracted = new MemoryStream();
        await entry.DataStream!.CopyToAsync(extracted);
        var highWater = _agent.BufferedBytesHighWater;
        Figures.Record("windowed tree transfer", $"24 MiB tar.out through the relay to a reader sleeping 8 ms every 4 chunks: arrived intact, relay buffer high-water {highWater / 1024} KiB (window {TcpConnectRequest.WindowBytes / 1024} KiB, per-stream cap {GuestAgentClient.DefaultStreamBufferBytes / (1024 * 1024)} MiB)");
        Assert.Equal(SHA256.HashData(content), SHA256.HashData(extracted.ToArray()));
        Assert.InRange(highWater, 0, TcpConnectRequest.WindowBytes + 2 * 65 * 1024);
    }

    [Fact]
    public async Task ASlowReaderOfABigFileSlowsTheGuestInsteadOfBeingCutOff()
    {
        var content = RandomNumberGenerator.GetBytes(24 * 1024 * 1024);
        await File.WriteAllBytesAsync(Path.Combine(_guest.Root, "big.bin"), content);
        var read = await ReadSlowlyThroughTheRelayAsync(new AgentRequest { Op = AgentOps.FilesRead, Files = new FilesRequest { Path = "big.bin" } });
        var highWater = _agent.BufferedBytesHighWater;
        Figures.Record("windowed file read", $"24 MiB files.read through the relay to a reader sleeping 8 ms every 4 chunks: arrived intact, relay buffer high-water {highWater / 1024} KiB (window {TcpConnectRequest.WindowBytes / 1024} KiB, per-stream cap {GuestAgentClient.DefaultStreamBufferBytes / (1024 * 1024)} MiB)");
        Assert.Equal(SHA256.HashData(content), SHA256.HashData(read));
        Assert.InRange(highWater, 0, TcpConnectRequest.WindowBytes + 2 * 65 * 1024);
    }

    /// <summary>The request's output, read through a supervisor relay by a client much slower than the guest.</summary>
    private async Task<byte[]> ReadSlowlyThroughTheRelayAsync(AgentRequest request)
    {
        var clientPipe = new DuplexPipe();
        await using var session = new ClientSession(clientPipe.Guest, _agent, _ => { });
        session.Start();
        await using var client = GuestAgentClient.Over(clientPipe.Host);

        using var output = new MemoryStream();
        var chunks = 0;
        await client.CallAsync(request, async data =>
        {
            output.Write(data.Span);
            // A disk much slower than the guest: 24 MiB at 2 ms a chunk would leave the
            // unwindowed guest 20 MiB ahead, five times the relay's 4 MiB per-stream cap.
            if (++chunks % 4 == 0)
            {
                await Task.Delay(8);
            }
        }, null, CancellationToken.None).WaitAsync(Deadline);
        return output.ToArray();
    }
}
