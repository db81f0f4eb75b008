using System.Net;
using System.Net.Sockets;
using System.Text;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Networking;
using PyroMcp.Protocol;
using PyroMcp.Runtime;
using PyroMcp.Vmm;

namespace PyroMcp.GuestTests;

/// <summary>
/// The published-port mechanism against a real guest, below the workspace layer: a
/// <see cref="PortForwarder"/> over a booted VM's own agent channel, to busybox httpd on the
/// guest's 127.0.0.1. (The workspace-level published-port tests go through the CLI.)
/// </summary>
public sealed class PortForwarderGuestSmokeTests : GuestTest
{
    [Fact]
    public async Task AForwarderReachesAServerOnTheGuestsLoopback()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var options = new PyroOptions { AgentPath = Path.Combine(Path.GetDirectoryName(Repo.CliDll)!, "guest", "pyro-agent") };
        var environment = await new EnvironmentStore(options).PullAsync(EnvironmentCatalog.Resolve("debian:12"), null, timeout.Token);
        var bundle = await RuntimeBundle.EnsureAsync(options, null, timeout.Token);
        var accelerator = KvmProbe.Detect().Choose(options.Accelerator).Chosen;
        await using var vm = await QemuVm.StartAsync(QemuVm.NewId(), new VmSpec(1, 512, accelerator), environment.RootfsImage, bundle, options, timeout.Token);
        vm.DiscardOnDispose = true;
        var started = await vm.Agent.ExecAsync(new ExecRequest
        {
            Shell = "mkdir -p /tmp/www && echo 'hello from the guest' > /tmp/www/hello.txt && /run/pyro/busybox httpd -p 127.0.0.1:8080 -h /tmp/www",
            TimeoutMs = 30_000,
        }, null, null, 4096, timeout.Token);
        Assert.Equal(0, started.ExitCode);

        await using var forwarder = PortForwarder.Open(vm.Agent, null, 8080);
        string response;
        using (var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await client.ConnectAsync(new IPEndPoint(IPAddress.Loopback, forwarder.Published.HostPort), timeout.Token);
            await client.SendAsync("GET /hello.txt HTTP/1.0\r\nHost: x\r\n\r\n"u8.ToArray(), timeout.Token);
            var all = new MemoryStream();
            var buffer = new byte[4096];
            int read;
            while ((read = await client.ReceiveAsync(buffer, timeout.Token)) > 0)
            {
                all.Write(buffer, 0, read);
            }

            response = Encoding.ASCII.GetString(all.ToArray());
        }

        Assert.StartsWith("HTTP/1.", response);
        Assert.Contains(" 200 ", response.Split('\n')[0]);
        Assert.EndsWith("hello from the guest\n", response);
        Assert.Equal(0, forwarder.FailedConnections);
        Figures.Record("published port real guest", $"GET through {forwarder.Published} to busybox httpd in a booted guest: {response.Length} bytes, status line '{response.Split('\r')[0]}'");
    }
}
