using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace PyroMcp.Tests;

/// <summary>
/// The network lab the guest networking tests stand on, proved without a guest: traffic from the
/// client namespace reaches the lab's servers, names resolve through the lab's own resolver,
/// nothing leaves the lab, and disposing leaves nothing behind.
/// </summary>
public sealed class NetLabTests
{
    [Fact]
    public async Task WgetFromTheClientReachesTheLabHttpServer()
    {
        await using var lab = await NetLab.StartAsync();
        var http = lab.StartHttpServer();
        var blob = RandomNumberGenerator.GetBytes(256 * 1024);
        http.Serve("/blob.bin", blob);

        var got = await lab.ExecAsync("sh", ["-c", $"busybox wget -q -O- {http.Url("/blob.bin")} | sha256sum"]);
        Assert.True(got.ExitCode == 0, got.ToString());
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(blob)), got.Stdout.Split(' ')[0]);
        Assert.Equal(1, http.Requests("/blob.bin"));

        var missing = await lab.ExecAsync("busybox", ["wget", "-q", "-O-", http.Url("/nothing-here")]);
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Equal(1, http.Requests("/nothing-here"));
        Assert.Equal(2, http.TotalRequests);

        // The client really is 10.231.N.1 with the test host as its only way out.
        var route = await lab.ExecAsync("ip", ["-4", "route"]);
        Assert.Contains($"default via {lab.HostAddress} dev eth0", route.Stdout);
        Assert.Contains($"src {lab.ClientAddress}", route.Stdout);
    }

    [Fact]
    public async Task NamesResolveThroughTheLabResolverAndOnlyThere()
    {
        await using var lab = await NetLab.StartAsync();
        var dns = lab.StartDnsServer("pyro.test");
        Assert.Equal($"nameserver {lab.HostAddress}\n", File.ReadAllText(lab.ResolvConf));

        var found = await lab.ExecAsync("getent", ["hosts", "files.pyro.test"]);
        Assert.True(found.ExitCode == 0, found.ToString());
        Assert.Equal($"{lab.HostAddress}", found.Stdout.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0]);
        Assert.True(dns.QueriesFor("files.pyro.test") >= 1, string.Join('\n', dns.Queries));

        // A name outside the suffix is NXDOMAIN from the lab server: it was asked, and said no.
        var outside = await lab.ExecAsync("getent", ["hosts", "www.example.com"]);
        Assert.Equal(2, outside.ExitCode);
        Assert.True(dns.QueriesFor("www.example.com") >= 1, string.Join('\n', dns.Queries));

        // busybox's resolver talks to the same server.
        var nslookup = await lab.ExecAsync("busybox", ["nslookup", "git.pyro.test"]);
        Assert.Contains(lab.HostAddress, nslookup.Stdout);

        // A resolver that never answers: resolution fails, and the lab server is not asked.
        var before = dns.Queries.Count;
        lab.UseResolver([NetLab.SilentAddress], "options timeout:1 attempts:1");
        var silent = await lab.ExecAsync("getent", ["hosts", "files.pyro.test"]);
        Assert.NotEqual(0, silent.ExitCode);
        Assert.Equal(before, dns.Queries.Count);
    }

    [Fact]
    public async Task NothingInTheLabReachesAnAddressOutsideIt()
    {
        // A listener in the machine's own namespace on all addresses, reachable from here (the
        // positive control), is the thing the lab must never reach; so is the real gateway.
        using var outside = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        outside.Bind(new IPEndPoint(IPAddress.Any, 0));
        outside.Listen(16);
        var port = ((IPEndPoint)outside.LocalEndPoint!).Port;
        var accepted = 0;
        var acceptLoop = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    using var s = await outside.AcceptAsync();
                    Interlocked.Increment(ref accepted);
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
        });

        var routeGet = await Processes.RunAsync("ip", ["-4", "route", "get", "192.0.2.1"]);
        var machine = IPAddress.Parse(Regex.Match(routeGet.Stdout, @"src (\S+)").Groups[1].Value);
        var defaultRoute = await Processes.RunAsync("ip", ["-4", "route", "show", "default"]);
        var gateway = Regex.Match(defaultRoute.Stdout, @"via (\S+)") is { Success: true } m ? IPAddress.Parse(m.Groups[1].Value) : null;

        using (var control = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await control.ConnectAsync(new IPEndPoint(machine, port));
        }

        await WaitForAsync(() => Volatile.Read(ref accepted) == 1, "the positive control reached the outside listener");

        await using var lab = await NetLab.StartAsync();
        var http = lab.StartHttpServer();
        Assert.True(await lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Parse(lab.HostAddress), http.Port)), "the client cannot reach its own test host: the probe itself is broken");

        var targets = new List<IPEndPoint> { new(machine, port), new(IPAddress.Loopback, port) };
        if (gateway is not null)
        {
            targets.AddRange([new(gateway, 53), new(gateway, 80), new(gateway, 443), new(gateway, port)]);
        }

        var probes = targets.SelectMany(t => new[]
        {
            (From: lab.Client, To: t, Reached: lab.CanConnectFromClientAsync(t)),
            (From: lab.TestHost, To: t, Reached: NetNamespace.CanConnectAsync(lab.TestHost, t, TimeSpan.FromSeconds(3))),
        }).ToList();
        await Task.WhenAll(probes.Select(p => p.Reached));
        var escaped = probes.Where(p => p.Reached.Result).Select(p => $"{p.From} -> {p.To}").ToList();

        // The test host routes nowhere but the lab's own /30 and forwards nothing.
        var hostRoutes = await Processes.RunAsync("ip", ["-n", lab.TestHost, "-4", "route"]);
        Assert.Equal([$"10.231.{lab.Subnet}.0/30 dev eth0 proto kernel scope link src {lab.HostAddress}"], hostRoutes.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim()));
        var forward = await Processes.RunAsync("ip", ["netns", "exec", lab.TestHost, "sysctl", "-n", "net.ipv4.ip_forward"]);
        Assert.Equal("0", forward.Stdout.Trim());

        outside.Dispose();
        await acceptLoop;
        Figures.Record("network lab walls", $"{probes.Count} probes from the lab to the machine and its gateway, {escaped.Count} connected, {accepted - 1} reached the outside listener");
        Assert.Empty(escaped);
        Assert.Equal(1, accepted);
    }

    [Fact]
    public async Task DisposeLeavesNoNamespaceNoEtcDirectoryNoProcess()
    {
        // A lab of a test process that died: its namespaces must go when the next lab starts.
        var pidMax = int.Parse(File.ReadAllText("/proc/sys/kernel/pid_max").Trim(), CultureInfo.InvariantCulture);
        var stale = $"pyro-c-{pidMax}-1-251";
        Processes.Check("ip", ["netns", "add", stale]);
        Directory.CreateDirectory(Path.Combine("/etc/netns", stale));

        var lab = await NetLab.StartAsync();
        Assert.DoesNotContain(stale, await NetLab.LabNamespacesAsync());
        Assert.False(Directory.Exists(Path.Combine("/etc/netns", stale)));

        var names = new[] { lab.Client, lab.TestHost };
        Assert.Equal(names.Order(), (await NetLab.LabNamespacesAsync()).Where(names.Contains).Order());
        Assert.True(File.Exists(lab.ResolvConf));
        lab.StartHttpServer();
        lab.StartDnsServer();
        lab.StartClientServer(IPAddress.Loopback);
        using var sleeper = Processes.Start("ip", lab.InClient("sleep", ["600"]));
        using var hostSleeper = Processes.Start("ip", ["netns", "exec", lab.TestHost, "sleep", "600"]);
        await WaitForAsync(async () => (await NetLab.PidsAsync(lab.Client)).Count == 1 && (await NetLab.PidsAsync(lab.TestHost)).Count == 1, "the sleepers entered the namespaces");

        await lab.DisposeAsync();

        var left = await NetLab.LabNamespacesAsync();
        Assert.DoesNotContain(lab.Client, left);
        Assert.DoesNotContain(lab.TestHost, left);
        Assert.False(Directory.Exists(Path.Combine("/etc/netns", lab.Client)));
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await sleeper.WaitForExitAsync(deadline.Token);
        await hostSleeper.WaitForExitAsync(deadline.Token);
        Assert.NotEqual(0, sleeper.ExitCode);
        Assert.NotEqual(0, hostSleeper.ExitCode);
    }

    private static Task WaitForAsync(Func<bool> done, string what) => WaitForAsync(() => Task.FromResult(done()), what);

    private static async Task WaitForAsync(Func<Task<bool>> done, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!await done())
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), $"timed out waiting until {what}");
            await Task.Delay(50);
        }
    }
}
