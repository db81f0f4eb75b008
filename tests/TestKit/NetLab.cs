using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace PyroMcp.TestKit;

/// <summary>
/// One network lab per test: two namespaces of its own joined by a veth pair and nothing else.
/// The client namespace (<see cref="Client"/>, 10.231.N.1/30, default route via the test host) is
/// "the host" pyro runs on; the test-host namespace (<see cref="TestHost"/>, 10.231.N.2/30) holds
/// the servers a guest may reach. The test host has no other route and forwards nothing, so no
/// packet from the lab ever reaches the machine's real network, gateway or resolver.
/// Needs root and <c>ip</c> (iproute2).
/// </summary>
internal sealed partial class NetLab : IAsyncDisposable
{
    /// <summary>An address routed out of the client namespace into the test host, which drops it: a resolver there never answers.</summary>
    internal const string SilentAddress = "198.51.100.53";

    private static readonly Lock Gate = new();
    private static readonly HashSet<int> Taken = [];
    private static int _serial;
    private readonly List<IAsyncDisposable> _servers = [];

    private NetLab(int subnet, string suffix)
    {
        Subnet = subnet;
        Client = $"pyro-c-{suffix}";
        TestHost = $"pyro-h-{suffix}";
    }

    /// <summary>The namespace pyro runs in ("the host" of the guests).</summary>
    internal string Client { get; }

    /// <summary>The namespace of the lab's servers, the client's gateway.</summary>
    internal string TestHost { get; }

    /// <summary>N in 10.231.N.0/30.</summary>
    internal int Subnet { get; }

    /// <summary>The client namespace's address, 10.231.N.1 (a guest with egress mirrors it).</summary>
    internal string ClientAddress => $"10.231.{Subnet}.1";

    /// <summary>The test host's address, 10.231.N.2: the client's gateway and the lab's servers.</summary>
    internal string HostAddress => $"10.231.{Subnet}.2";

    /// <summary>The file <c>ip netns exec</c> mounts over /etc/resolv.conf in the client namespace.</summary>
    internal string ResolvConf => Path.Combine("/etc/netns", Client, "resolv.conf");

    /// <summary>Makes a lab after removing the leftovers of crashed earlier runs; its resolver is the test host (<see cref="StartDnsServer"/> to answer there).</summary>
    internal static async Task<NetLab> StartAsync()
    {
        Assert.True(Environment.IsPrivilegedProcess, "the network lab needs root (ip netns add)");
        await ReapStaleAsync();
        for (var attempt = 0; ; attempt++)
        {
            var subnet = await PickSubnetAsync();
            var lab = new NetLab(subnet, $"{Environment.ProcessId}-{Interlocked.Increment(ref _serial)}-{subnet}");
            try
            {
                await lab.BuildAsync();
                return lab;
            }
            catch when (attempt < 3)
            {
                await lab.DisposeAsync();
            }
        }
    }

    /// <summary>Writes the client namespace's resolv.conf: one <c>nameserver</c> line per address, then <paramref name="extra"/> lines as they are.</summary>
    internal void UseResolver(IEnumerable<string> nameservers, params string[] extra)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(ResolvConf)!);
        File.WriteAllLines(ResolvConf, [.. nameservers.Select(n => "nameserver " + n), .. extra]);
    }

    /// <summary>An HTTP server on <see cref="HostAddress"/>:<paramref name="port"/> in the test host.</summary>
    internal HttpServer StartHttpServer(int port = 80)
        => Track(new HttpServer(NetNamespace.Listen(TestHost, IPAddress.Parse(HostAddress), port)));

    /// <summary>A DNS server on <see cref="HostAddress"/>:53 in the test host answering names under <paramref name="suffix"/> with <see cref="HostAddress"/>.</summary>
    internal DnsServer StartDnsServer(string suffix = "pyro.test")
        => Track(new DnsServer(NetNamespace.BindUdp(TestHost, IPAddress.Parse(HostAddress), 53), suffix, IPAddress.Parse(HostAddress)));

    /// <summary>A listener in the client namespace (the guests' host) on <paramref name="address"/>:<paramref name="port"/>, 0 = a free port.</summary>
    internal LocalServer StartClientServer(IPAddress address, int port = 0)
        => Track(new LocalServer(NetNamespace.Listen(Client, address, port)));

    /// <summary>A listener in the test host on <see cref="HostAddress"/>:<paramref name="port"/> that answers one line and counts connections: a target a guest with egress must reach.</summary>
    internal LocalServer StartTestHostServer(int port = 0)
        => Track(new LocalServer(NetNamespace.Listen(TestHost, IPAddress.Parse(HostAddress), port)));

    /// <summary>Whether a TCP connection from the client namespace to <paramref name="target"/> is accepted within <paramref name="deadline"/> (default 3 s).</summary>
    internal Task<bool> CanConnectFromClientAsync(IPEndPoint target, TimeSpan? deadline = null)
        => NetNamespace.CanConnectAsync(Client, target, deadline ?? TimeSpan.FromSeconds(3));

    /// <summary>The arguments of <c>ip</c> that run <paramref name="program"/> in the client namespace.</summary>
    internal IReadOnlyList<string> InClient(string program, IEnumerable<string> args) => ["netns", "exec", Client, program, .. args];

    /// <summary>Runs the built CLI in the client namespace with this run's scratch environment and <paramref name="env"/> on top.</summary>
    internal Task<ProcessResult> PyroAsync(IEnumerable<string> args, IDictionary<string, string>? env = null, TimeSpan? timeout = null)
    {
        var list = args.ToList();
        return Processes.RunAsync("ip", InClient(Repo.Cli, list), env: WithScratch(env), timeout: timeout);
    }

    /// <summary>Like <see cref="PyroAsync"/>, and the command must exit 0.</summary>
    internal async Task<ProcessResult> PyroOkAsync(IEnumerable<string> args, IDictionary<string, string>? env = null, TimeSpan? timeout = null)
    {
        var list = args.ToList();
        var result = await PyroAsync(list, env, timeout);
        Assert.True(result.ExitCode == 0, $"[{Client}] pyro {string.Join(' ', list)}\n{result}");
        return result;
    }

    /// <summary>Runs a host-side program (a probe) in the client namespace.</summary>
    internal Task<ProcessResult> ExecAsync(string program, IEnumerable<string> args, TimeSpan? timeout = null)
        => Processes.RunAsync("ip", InClient(program, args), timeout: timeout ?? TimeSpan.FromMinutes(1));

    /// <summary>The processes running in <paramref name="ns"/> now (<c>ip netns pids</c>).</summary>
    internal static async Task<IReadOnlyList<int>> PidsAsync(string ns)
    {
        var result = await Processes.RunAsync("ip", ["netns", "pids", ns], timeout: TimeSpan.FromSeconds(30));
        return result.ExitCode != 0
            ? []
            : [.. result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p => int.Parse(p, CultureInfo.InvariantCulture)).Where(p => p != Environment.ProcessId)];
    }

    /// <summary>The lab namespaces that exist now (<c>ip netns list</c>, names starting pyro-c- or pyro-h-).</summary>
    internal static async Task<IReadOnlyList<string>> LabNamespacesAsync()
    {
        var result = await Processes.RunAsync("ip", ["netns", "list"], timeout: TimeSpan.FromSeconds(30));
        return [.. result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')[0]).Where(n => LabName().IsMatch(n))];
    }

    /// <summary>Stops the servers, kills every process left in both namespaces, deletes them and /etc/netns/CLIENT.</summary>
    public async ValueTask DisposeAsync()
    {
        foreach (var server in _servers)
        {
            await server.DisposeAsync();
        }

        _servers.Clear();
        await RemoveAsync(Client);
        await RemoveAsync(TestHost);
        lock (Gate)
        {
            Taken.Remove(Subnet);
        }
    }

    private T Track<T>(T server)
        where T : IAsyncDisposable
    {
        _servers.Add(server);
        return server;
    }

    private async Task BuildAsync()
    {
        var client = $"10.231.{Subnet}.1/30";
        var host = $"10.231.{Subnet}.2/30";
        await IpAsync("netns", "add", Client);
        await IpAsync("netns", "add", TestHost);

        // The pair is born inside the client namespace and its peer moved straight to the test
        // host: no interface of the lab ever exists in the machine's own namespace.
        await IpAsync("-n", Client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", TestHost);
        await IpAsync("-n", Client, "addr", "add", client, "dev", "eth0");
        await IpAsync("-n", TestHost, "addr", "add", host, "dev", "eth0");
        foreach (var ns in new[] { Client, TestHost })
        {
            await IpAsync("-n", ns, "link", "set", "lo", "up");
            await IpAsync("-n", ns, "link", "set", "eth0", "up");
        }

        await IpAsync("-n", Client, "route", "add", "default", "via", HostAddress);

        // New namespaces start with forwarding off; say so anyway, the lab's walls rest on it.
        var off = await Processes.RunAsync("ip", ["netns", "exec", TestHost, "sysctl", "-qw", "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"], timeout: TimeSpan.FromSeconds(30));
        if (off.ExitCode != 0)
        {
            throw new InvalidOperationException($"sysctl in {TestHost}: {off}");
        }

        // Always a resolv.conf of the lab's own: without one, ip netns exec leaves the machine's
        // real /etc/resolv.conf visible and passt would hand its resolver to the guest.
        UseResolver([HostAddress]);
    }

    private static async Task IpAsync(params string[] args)
    {
        var result = await Processes.RunAsync("ip", args, timeout: TimeSpan.FromSeconds(30));
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"ip {string.Join(' ', args)}: {result}");
        }
    }

    private static async Task<int> PickSubnetAsync()
    {
        // Labs are independent (nothing routes between them), but distinct subnets keep logs and
        // guest addresses unambiguous when two labs overlap, and keep clear of anything the
        // machine itself routes in 10.231.0.0/16.
        var inUse = new HashSet<int>();
        foreach (var name in await LabNamespacesAsync())
        {
            inUse.Add(int.Parse(name[(name.LastIndexOf('-') + 1)..], CultureInfo.InvariantCulture));
        }

        var routes = await Processes.RunAsync("ip", ["-4", "route", "show", "table", "all"], timeout: TimeSpan.FromSeconds(30));
        var addresses = await Processes.RunAsync("ip", ["-4", "addr"], timeout: TimeSpan.FromSeconds(30));
        foreach (Match m in OurRange().Matches(routes.Stdout + addresses.Stdout))
        {
            inUse.Add(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
        }

        lock (Gate)
        {
            var free = Enumerable.Range(1, 250).Where(n => !inUse.Contains(n) && !Taken.Contains(n)).ToList();
            Assert.True(free.Count > 0, "no free 10.231.N.0/30 subnet for a network lab");
            var pick = free[Random.Shared.Next(free.Count)];
            Taken.Add(pick);
            return pick;
        }
    }

    /// <summary>Removes lab namespaces whose creating test process is gone (a crashed or killed earlier run).</summary>
    private static async Task ReapStaleAsync()
    {
        foreach (var name in await LabNamespacesAsync())
        {
            var pid = int.Parse(LabName().Match(name).Groups[1].Value, CultureInfo.InvariantCulture);
            if (!Directory.Exists($"/proc/{pid}"))
            {
                await RemoveAsync(name);
            }
        }
    }

    private static async Task RemoveAsync(string ns)
    {
        if (!File.Exists(Path.Combine("/var/run/netns", ns)))
        {
            DeleteEtc(ns);
            return;
        }

        // Kill until the namespace is empty: a supervisor may spawn QEMU or passt while we kill.
        for (var round = 0; round < 50; round++)
        {
            var pids = await PidsAsync(ns);
            if (pids.Count == 0)
            {
                break;
            }

            foreach (var pid in pids)
            {
                try
                {
                    using var process = Process.GetProcessById(pid);
                    process.Kill();
                }
                catch (ArgumentException)
                {
                }
                catch (InvalidOperationException)
                {
                }
            }

            await Task.Delay(100);
        }

        await Processes.RunAsync("ip", ["netns", "del", ns], timeout: TimeSpan.FromSeconds(30));
        DeleteEtc(ns);
    }

    private static void DeleteEtc(string ns)
    {
        try
        {
            Directory.Delete(Path.Combine("/etc/netns", ns), recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }

        // /etc/netns itself goes too once no namespace has files there (it did not exist before labs).
        try
        {
            Directory.Delete("/etc/netns");
        }
        catch (IOException)
        {
        }
    }

    [GeneratedRegex(@"^pyro-[ch]-(\d+)-\d+-\d+$")]
    private static partial Regex LabName();

    [GeneratedRegex(@"10\.231\.(\d+)\.")]
    private static partial Regex OurRange();

    private static Dictionary<string, string> WithScratch(IDictionary<string, string>? env)
    {
        var all = Repo.ScratchEnvironment;
        foreach (var (key, value) in env ?? new Dictionary<string, string>())
        {
            all[key] = value;
        }

        return all;
    }
}
