using PyroMcp.Vmm;
using Agent = PyroMcp.GuestAgent;

namespace PyroMcp.Tests;

/// <summary>
/// The real guest agent served in this process over an in-memory pipe, with a temporary
/// workspace root, and the host's client of it.
/// </summary>
internal sealed class InProcessAgent : IAsyncDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);
    private readonly Agent.AgentServer _server;
    private readonly Task _serving;

    internal InProcessAgent(string name)
    {
        var pipe = new DuplexPipe();
        Root = Directory.CreateTempSubdirectory($"pyro-{name}-test-").FullName;
        // Service records stay inside the test's own directory, never in the host's /var/lib.
        _server = new Agent.AgentServer(pipe.Guest, new Agent.AgentOptions("test", "/bin/false", Root) { ServiceStateDir = Path.Combine(Root, ".services") });
        _serving = _server.RunAsync();
        Client = GuestAgentClient.Over(pipe.Host);
    }

    /// <summary>The agent's workspace root.</summary>
    internal string Root { get; }

    /// <summary>The host end of the channel.</summary>
    internal GuestAgentClient Client { get; }

    public async ValueTask DisposeAsync()
    {
        await Client.DisposeAsync();
        await _serving.WaitAsync(Deadline);
        await _server.DisposeAsync();
        Directory.Delete(Root, recursive: true);
    }
}
