using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace PyroMcp.GuestTests;

/// <summary>The probes of every test of <see cref="NetworkTests"/>, printed once as the "network walls" figure.</summary>
public sealed class NetworkWallsTally : IDisposable
{
    private readonly HashSet<string> _policies = [];
    private int _probes;
    private int _reached;

    internal void Add(string policy, int probes, int reached)
    {
        lock (_policies)
        {
            _policies.Add(policy);
            _probes += probes;
            _reached += reached;
        }
    }

    public void Dispose()
    {
        if (_probes > 0)
        {
            Figures.Record("network walls", $"{_probes} probes from {_policies.Count} policies ({string.Join(", ", _policies.Order())}), {_reached} reached the host");
        }
    }
}

/// <summary>
/// Guest networking against real guests, every one inside a <see cref="NetLab"/>: pyro (so QEMU
/// and passt) runs in the lab's client namespace, the only servers a guest may reach are the
/// lab's, and the client namespace's own listeners stand in for the host's services. The
/// published ports test runs in a lane beside the other, with a lab and scratch of its own.
/// </summary>
[TestCaseOrderer(LaneOrderer.Name, LaneOrderer.Assembly)]
public sealed class NetworkTests(NetworkWallsTally tally, Lanes lanes) : LabGuestTest, IClassFixture<NetworkWallsTally>, IClassFixture<Lanes>
{
    private const string Blob = "/blob.bin";

    public override Task InitializeAsync()
    {
        lanes.Begin(GetType(), key => key == nameof(PublishedPortsReachTheGuestFromLoopbackOnlyAndCloseWithTheVm)
            ? () => PublishedPortsLaneAsync(tally)
            : throw new ArgumentException($"no lane {key}", nameof(key)));
        return base.InitializeAsync();
    }

    /// <summary>
    /// off: no network device, no download. egress (pyro run --network, and a VM made over MCP
    /// with network=true): downloads from the lab with the right bytes, resolves names through
    /// the lab resolver, and reports its network over MCP. Under each policy the guest tries the
    /// host's services and reaches none, while the same services answer the host itself.
    /// </summary>
    [Fact]
    public async Task OffHasNoNetworkEgressDownloadsFromTheLabAndNoGuestReachesItsHost()
    {
        var http = Lab.StartHttpServer();
        var dns = Lab.StartDnsServer("pyro.test");
        var blob = RandomNumberGenerator.GetBytes(512 * 1024);
        var sha = Convert.ToHexStringLower(SHA256.HashData(blob));
        http.Serve(Blob, blob);
        var walls = await HostServicesAsync(Lab);

        // 1. off (the default): no device but lo, nothing downloads, nothing reaches the host.
        var off = await RunAsync(Lab, [], $"""
            echo "net: $(ls /sys/class/net | tr '\n' ' ')"
            if /run/pyro/busybox wget -q -T 5 -O /dev/null {http.Url(Blob)}; then echo "download: ok"; else echo "download: failed"; fi
            {walls.Script}
            """);
        Assert.Equal("lo", Line(off, "net"));
        Assert.Equal("failed", Line(off, "download"));
        Assert.Equal(0, http.Requests(Blob));
        walls.Check("off", off, tally, egress: false);

        // 2. pyro run --network: the blob by address and by name, the name from the lab resolver.
        var run = await RunAsync(Lab, ["--network"], $"""
            echo "net: $(ls /sys/class/net | tr '\n' ' ')"
            echo "sha: $(/run/pyro/busybox wget -q -O- {http.Url(Blob)} | sha256sum | cut -d' ' -f1)"
            echo "getent: $(getent hosts files.pyro.test)"
            echo "byname: $(/run/pyro/busybox wget -q -O- http://files.pyro.test:{http.Port}{Blob} | sha256sum | cut -d' ' -f1)"
            {walls.Script}
            """);
        Assert.Equal("eth0 lo", Line(run, "net"));
        Assert.Equal(sha, Line(run, "sha"));
        Assert.Equal(Lab.HostAddress, Line(run, "getent").Split(' ', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault());
        Assert.Equal(sha, Line(run, "byname"));
        Assert.Equal(2, http.Requests(Blob));
        Assert.True(dns.QueriesFor("files.pyro.test") >= 2, "the guest's names did not come from the lab resolver: " + string.Join(", ", dns.Queries));
        walls.Check("egress", run, tally, egress: true);

        // 3. A VM made over MCP with network=true, inside the lab: vm_network_info tells the
        // guest's address, gateway and resolver as passt handed them out.
        await using var mcp = await McpClient.CreateAsync(new StdioClientTransport(new StdioClientTransportOptions
        {
            Name = "pyro-in-lab",
            Command = "ip",
            Arguments = [.. Lab.InClient(Repo.Cli, ["mcp", "serve", "--profile", "workspace-full"])],
            EnvironmentVariables = Repo.ScratchEnvironment.ToDictionary(e => e.Key, e => (string?)e.Value),
        }));
        var created = await CallOkAsync(mcp, "vm_create", new() { ["environment"] = "debian:12", ["network"] = true });
        var vm = created.GetProperty("vm_id").GetString()!;
        DeleteAfterwards(vm);
        var info = await CallOkAsync(mcp, "vm_network_info", new() { ["vm_id"] = vm });
        Assert.Equal(vm, info.GetProperty("vm_id").GetString());
        Assert.Equal("egress", info.GetProperty("network_policy").GetString());
        var network = info.GetProperty("network");
        Assert.Equal("eth0", network.GetProperty("interface").GetString());
        Assert.Equal(Lab.ClientAddress, network.GetProperty("address").GetString());
        Assert.Equal(30, network.GetProperty("prefix_length").GetInt32());
        Assert.Equal(Lab.HostAddress, network.GetProperty("gateway").GetString());
        Assert.Equal([Lab.HostAddress], network.GetProperty("dns_servers").EnumerateArray().Select(d => d.GetString()));
        Assert.Empty(info.GetProperty("published_ports").EnumerateArray());

        // The same VM through the CLI: status names the policy and the network, publishing is refused.
        var status = await Lab.PyroOkAsync(["workspace", "status", vm]);
        Assert.Contains("Network policy: egress\n", status.Stdout);
        Assert.Contains($"Guest network: {Lab.ClientAddress}/30 via {Lab.HostAddress}, dns {Lab.HostAddress}", status.Stdout);
        // Plain egress cannot publish, so status has no ports line at all.
        Assert.DoesNotContain("Published ports:", status.Stdout);
        await ErrorAsync(Lab, null, ["workspace", "publish", vm, "8080", "--json"], "publish_not_allowed");

        var egress = await ExecAsync(Lab, null, vm, $"""
            echo "sha: $(/run/pyro/busybox wget -q -O- {http.Url(Blob)} | sha256sum | cut -d' ' -f1)"
            {walls.Script}
            """);
        Assert.Equal(sha, Line(egress, "sha"));
        Assert.Equal(3, http.Requests(Blob));
        walls.Check("egress", egress, tally, egress: true);

        var deleted = await CallOkAsync(mcp, "vm_delete", new() { ["vm_id"] = vm });
        Assert.True(deleted.GetProperty("deleted").GetBoolean());
        Forget(vm);
        await walls.CheckHostStillAnswersAsync();
    }

    /// <summary>
    /// egress+published-ports: a guest server published on the host's 127.0.0.1 only, refused
    /// twice and below 1024, and gone after stop, reset, a QEMU crash and delete; a start brings
    /// the policy and the network back, and with a resolver that never answers a lookup fails
    /// instead of hanging the exec.
    /// </summary>
    [Fact]
    [Lane(1)]
    public Task PublishedPortsReachTheGuestFromLoopbackOnlyAndCloseWithTheVm() => lanes.RunAsync(nameof(PublishedPortsReachTheGuestFromLoopbackOnlyAndCloseWithTheVm), () => PublishedPortsLaneAsync(tally));

    private static async Task PublishedPortsLaneAsync(NetworkWallsTally tally)
    {
        await using var scratch = new LaneScratch("published");
        var toDelete = new List<string>();
        await using (var lab = await NetLab.StartAsync())
        {
            try
            {
                await PublishedPortsAsync(lab, scratch.Env, tally, toDelete);
            }
            finally
            {
                // Cleanup, not a check: what a failed run left, deleted before its lab (where its supervisor runs) goes.
                foreach (var id in toDelete)
                {
                    await lab.PyroAsync(["workspace", "delete", id], scratch.Env);
                }
            }
        }

        await scratch.AssertCleanAsync();
    }

    /// <summary>The published ports scenario in <paramref name="lab"/> with <paramref name="env"/>; <paramref name="toDelete"/> holds its workspace until it deleted it itself.</summary>
    private static async Task PublishedPortsAsync(NetLab lab, IDictionary<string, string> env, NetworkWallsTally tally, List<string> toDelete)
    {
        var http = lab.StartHttpServer();
        var blob = RandomNumberGenerator.GetBytes(64 * 1024);
        var sha = Convert.ToHexStringLower(SHA256.HashData(blob));
        http.Serve(Blob, blob);
        var walls = await HostServicesAsync(lab);
        var page = "pyro-published-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));

        var id = (await lab.PyroOkAsync(["workspace", "create", "debian:12", "--network-policy", "egress+published-ports", "--id-only"], env, TimeSpan.FromMinutes(5))).Stdout.Trim();
        toDelete.Add(id);

        // A server in the guest on its own loopback, and the walls under this policy.
        var first = await ExecAsync(lab, env, id, $"""
            mkdir -p /workspace/www && echo {page} > /workspace/www/index.html
            /run/pyro/busybox httpd -p 127.0.0.1:8080 -h /workspace/www && echo "httpd: started"
            {walls.Script}
            """);
        Assert.Equal("started", Line(first, "httpd"));
        walls.Check("egress+published-ports", first, tally, egress: true);

        var published = (await lab.PyroOkAsync(["workspace", "publish", id, "8080", "--json"], env)).Json;
        Assert.Equal("127.0.0.1", published.GetProperty("host_address").GetString());
        Assert.Equal(8080, published.GetProperty("guest_port").GetInt32());
        Assert.Equal("tcp", published.GetProperty("protocol").GetString());
        var hostPort = published.GetProperty("host_port").GetInt32();
        Assert.InRange(hostPort, 1024, 65535);

        var fetched = await lab.ExecAsync("busybox", ["wget", "-q", "-O-", $"http://127.0.0.1:{hostPort}/"]);
        Assert.True(fetched.ExitCode == 0, fetched.ToString());
        Assert.Equal(page + "\n", fetched.Stdout);

        // Bound to loopback only: the listening socket says so, and the client's own address is refused.
        var listening = await lab.ExecAsync("ss", ["-Htln", $"sport = :{hostPort}"]);
        var locals = listening.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3]).ToList();
        Assert.Equal([$"127.0.0.1:{hostPort}"], locals);
        Assert.False(await lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Parse(lab.ClientAddress), hostPort)), "the published port answers on the host's lab address, not only on 127.0.0.1");

        var status = (await lab.PyroOkAsync(["workspace", "status", id, "--json"], env)).Json;
        Assert.Equal("egress+published-ports", status.GetProperty("network_policy").GetString());
        Assert.Equal([hostPort], status.GetProperty("published_ports").EnumerateArray().Select(p => p.GetProperty("host_port").GetInt32()));
        var human = await lab.PyroOkAsync(["workspace", "status", id], env);
        Assert.Contains("Network policy: egress+published-ports\n", human.Stdout);
        Assert.Contains($"Published ports: 127.0.0.1:{hostPort}->8080/tcp", human.Stdout);

        await ErrorAsync(lab, env, ["workspace", "publish", id, $"{hostPort}:8080", "--json"], "port_in_use");
        await ErrorAsync(lab, env, ["workspace", "publish", id, "80:8080", "--json"], "port_invalid");

        // stop: the port closes with the VM.
        await lab.PyroOkAsync(["workspace", "stop", id], env);
        await AssertClosedAsync(lab, env, id, hostPort, "stop");

        // start, with a resolver that never answers: the policy and the network are back (a
        // download by address works), a lookup fails and the exec ends on its own.
        lab.UseResolver([NetLab.SilentAddress]);
        await lab.PyroOkAsync(["workspace", "start", id], env, TimeSpan.FromMinutes(5));
        status = (await lab.PyroOkAsync(["workspace", "status", id, "--json"], env)).Json;
        Assert.Equal("egress+published-ports", status.GetProperty("network_policy").GetString());
        Assert.Equal(lab.ClientAddress, status.GetProperty("network").GetProperty("address").GetString());
        Assert.Equal([NetLab.SilentAddress], status.GetProperty("network").GetProperty("dns_servers").EnumerateArray().Select(d => d.GetString()));
        var back = await ExecAsync(lab, env, id, $"""echo "sha: $(/run/pyro/busybox wget -q -O- {http.Url(Blob)} | sha256sum | cut -d' ' -f1)" """);
        Assert.Equal(sha, Line(back, "sha"));
        var lookup = await lab.PyroAsync(["workspace", "exec", id, "--json", "--timeout-seconds", "600", "--", "getent", "hosts", "x.pyro.test"], env);
        var lookupJson = lookup.Json;
        Assert.False(lookupJson.GetProperty("timed_out").GetBoolean(), "a lookup with no reachable resolver ran to the exec's timeout:\n" + lookup);
        Assert.NotEqual(0, lookupJson.GetProperty("exit_code").GetInt32());

        // reset: published again (human form), then gone with the reset.
        await ExecAsync(lab, env, id, "/run/pyro/busybox httpd -p 127.0.0.1:8080 -h /workspace/www");
        hostPort = await PublishAsync(lab, env, id);
        Assert.True(await lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Loopback, hostPort)), "the port published after start does not answer");
        await lab.PyroOkAsync(["workspace", "reset", id], env, TimeSpan.FromMinutes(5));
        await AssertClosedAsync(lab, env, id, hostPort, "reset");

        // A crash: kill -9 of the workspace's QEMU.
        hostPort = await PublishAsync(lab, env, id);
        Assert.True(await lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Loopback, hostPort)), "the port published after reset does not answer");
        var qemu = QemuOf(id) ?? throw new InvalidOperationException($"no QEMU process of workspace {id}");
        using (var process = Process.GetProcessById(qemu))
        {
            process.Kill();
        }

        await WaitUntilAsync(async () => (await lab.PyroOkAsync(["workspace", "status", id, "--json"], env)).Json.GetProperty("state").GetString() == "crashed", "the workspace to be crashed after its QEMU was killed");
        await WaitUntilAsync(async () => !await lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Loopback, hostPort)), "the published port to close after the crash");
        await AssertClosedAsync(lab, env, id, hostPort, "a crash");

        // delete.
        await lab.PyroOkAsync(["workspace", "start", id], env, TimeSpan.FromMinutes(5));
        hostPort = await PublishAsync(lab, env, id);
        Assert.True(await lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Loopback, hostPort)), "the port published after the crash does not answer");
        await lab.PyroOkAsync(["workspace", "delete", id], env);
        toDelete.Remove(id);
        Assert.False(await lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Loopback, hostPort)), "the published port outlived delete");
        await walls.CheckHostStillAnswersAsync();
    }

    /// <summary>Publishes guest port 8080 with the human output and returns the host port it names.</summary>
    private static async Task<int> PublishAsync(NetLab lab, IDictionary<string, string>? env, string id)
    {
        var result = await lab.PyroOkAsync(["workspace", "publish", id, "8080"], env);
        var match = Regex.Match(result.Stdout, $@"\[workspace-publish\] workspace_id={id} published=127\.0\.0\.1:(\d+)->8080/tcp");
        Assert.True(match.Success, result.ToString());
        return int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    private static async Task AssertClosedAsync(NetLab lab, IDictionary<string, string>? env, string id, int hostPort, string after)
    {
        Assert.False(await lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Loopback, hostPort)), $"the published port 127.0.0.1:{hostPort} still answers after {after}");
        var status = (await lab.PyroOkAsync(["workspace", "status", id, "--json"], env)).Json;
        Assert.Empty(status.GetProperty("published_ports").EnumerateArray());
        Assert.Equal("egress+published-ports", status.GetProperty("network_policy").GetString());
        Assert.Contains("Published ports: none", (await lab.PyroOkAsync(["workspace", "status", id], env)).Stdout);
    }

    /// <summary><c>pyro run debian:12 [FLAGS] --json -- sh -c SCRIPT</c> in the lab; the guest's stdout.</summary>
    private static async Task<string> RunAsync(NetLab lab, string[] flags, string script)
    {
        var result = await lab.PyroAsync(["run", "debian:12", .. flags, "--json", "--timeout-seconds", "180", "--", "sh", "-c", script], timeout: TimeSpan.FromMinutes(5));
        Assert.True(result.ExitCode == 0, result.ToString());
        return result.Json.GetProperty("stdout").GetString()!;
    }

    /// <summary><c>pyro workspace exec ID --json -- sh -c SCRIPT</c> in the lab, which must exit 0; the guest's stdout.</summary>
    private static async Task<string> ExecAsync(NetLab lab, IDictionary<string, string>? env, string id, string script)
    {
        var result = await lab.PyroAsync(["workspace", "exec", id, "--json", "--timeout-seconds", "180", "--", "sh", "-c", script], env, TimeSpan.FromMinutes(5));
        Assert.True(result.ExitCode == 0, result.ToString());
        return result.Json.GetProperty("stdout").GetString()!;
    }

    /// <summary>A CLI call in the lab that must fail with <paramref name="code"/> in its JSON error.</summary>
    private static async Task ErrorAsync(NetLab lab, IDictionary<string, string>? env, string[] args, string code)
    {
        var result = await lab.PyroAsync(args, env);
        Assert.True(result.ExitCode != 0, $"pyro {string.Join(' ', args)} should have failed with {code}\n{result}");
        Assert.Equal(code, result.Json.GetProperty("error").GetProperty("code").GetString());
    }

    private static async Task<JsonElement> CallOkAsync(McpClient mcp, string tool, Dictionary<string, object?> args)
    {
        var result = await mcp.CallToolAsync(tool, args);
        var text = string.Concat(result.Content.OfType<TextContentBlock>().Select(t => t.Text));
        Assert.True(result.IsError != true, $"{tool} failed: {text}");
        Assert.NotNull(result.StructuredContent);
        return result.StructuredContent!.Value;
    }

    /// <summary>The value after "KEY: " on the guest's output line that starts with it.</summary>
    private static string Line(string stdout, string key)
    {
        var line = stdout.Split('\n').FirstOrDefault(l => l.StartsWith(key + ":", StringComparison.Ordinal));
        Assert.True(line is not null, $"no '{key}:' line in the guest's output:\n{stdout}");
        return line![(key.Length + 1)..].Trim();
    }

    private static int? QemuOf(string id)
    {
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
            {
                continue;
            }

            try
            {
                var exe = new FileInfo(Path.Combine(dir, "exe")).LinkTarget ?? "";
                if (Path.GetFileName(exe).StartsWith("qemu-system", StringComparison.Ordinal) && File.ReadAllText(Path.Combine(dir, "cmdline")).Contains(id, StringComparison.Ordinal))
                {
                    return pid;
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return null;
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> done, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!await done())
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(90), $"timed out waiting for {what}");
            await Task.Delay(200);
        }
    }

    /// <summary>
    /// The host's services a guest must never reach: listeners in the client namespace on
    /// 127.0.0.1:P and 0.0.0.0:Q. The host reaches both first (so the count can move), then
    /// every guest probe must leave their accept counts where the host left them.
    /// </summary>
    private static async Task<Walls> HostServicesAsync(NetLab lab)
    {
        var loopback = lab.StartClientServer(IPAddress.Loopback);
        var any = lab.StartClientServer(IPAddress.Any);
        Assert.True(await lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Loopback, loopback.Port)), "the host cannot reach its own 127.0.0.1 listener");
        Assert.True(await lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Parse(lab.ClientAddress), any.Port)), "the host cannot reach its own 0.0.0.0 listener");
        await WaitForAcceptsAsync(loopback, any);
        return new Walls(lab, loopback, any, lab.StartTestHostServer());
    }

    private static async Task WaitForAcceptsAsync(LocalServer loopback, LocalServer any)
    {
        var deadline = Stopwatch.StartNew();
        while (loopback.Accepted < 1 || any.Accepted < 1)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), "the host's own probes were never accepted");
            await Task.Delay(20);
        }
    }

    private sealed class Walls(NetLab lab, LocalServer loopback, LocalServer any, LocalServer control)
    {
        private int _loopbackSeen = loopback.Accepted;
        private int _anySeen = any.Accepted;
        private int _controlSeen;

        /// <summary>Every address a guest could take for its host, with both host ports.</summary>
        internal IReadOnlyList<string> Targets { get; } =
        [
            .. new[] { "127.0.0.1", lab.HostAddress, lab.ClientAddress, "10.0.2.2", "169.254.1.1" }
                .SelectMany(a => new[] { $"{a} {loopback.Port}", $"{a} {any.Port}" }),
        ];

        /// <summary>
        /// Shell lines that probe every target at once and print "reached T" (the target sent the
        /// lab listeners' banner) or "blocked T" each,
        /// and the same probe of a lab server that a guest with egress must reach (so a broken
        /// probe cannot pass for a wall).
        /// </summary>
        internal string Script => string.Join('\n', Targets.Select(t => Probe("probe", t)).Append(Probe("control", $"{lab.HostAddress} {control.Port}"))) + "\nwait";

        private static string Probe(string key, string target)
            => $"( case \"$(timeout 10 /run/pyro/busybox nc -w 4 {target} </dev/null 2>/dev/null)\" in *pyro-lab*) echo '{key}: reached {target}';; *) echo '{key}: blocked {target}';; esac ) &";

        /// <summary>Counts this policy's probes, and fails if the host's listeners accepted any or the guest says it connected.</summary>
        internal void Check(string policy, string stdout, NetworkWallsTally tally, bool egress)
        {
            var controlSeen = control.Accepted;
            Assert.Equal(egress ? "reached" : "blocked", Line(stdout, "control").Split(' ')[0]);
            Assert.True(egress == (controlSeen > _controlSeen), $"under {policy} the lab's control server accepted {controlSeen - _controlSeen} connections");
            _controlSeen = controlSeen;
            var lines = stdout.Split('\n').Where(l => l.StartsWith("probe: ", StringComparison.Ordinal)).ToList();
            Assert.True(lines.Count == Targets.Count, $"{Targets.Count} probes were to run under {policy}; the guest printed:\n{stdout}");
            var (loopbackNow, anyNow) = (loopback.Accepted, any.Accepted);
            var reachedHost = loopbackNow - _loopbackSeen + anyNow - _anySeen;
            (_loopbackSeen, _anySeen) = (loopbackNow, anyNow);
            var guestConnected = lines.Where(l => l.StartsWith("probe: reached", StringComparison.Ordinal)).ToList();
            tally.Add(policy, Targets.Count, reachedHost);
            Assert.True(reachedHost == 0, $"under {policy} the guest reached the host {reachedHost} times: {string.Join(", ", loopback.Peers.Concat(any.Peers))}");
            Assert.True(guestConnected.Count == 0, $"under {policy} the guest connected to: {string.Join(", ", guestConnected)}");
        }

        /// <summary>The host still reaches both listeners at the end: the walls held because of the guest's side, not a dead listener.</summary>
        internal async Task CheckHostStillAnswersAsync()
        {
            Assert.True(await lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Loopback, loopback.Port)), "the 127.0.0.1 listener died during the test");
            Assert.True(await lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Parse(lab.ClientAddress), any.Port)), "the 0.0.0.0 listener died during the test");
        }
    }
}
