using PyroMcp.Environments;
using PyroMcp.Networking;
using PyroMcp.Protocol;
using PyroMcp.Server;
using PyroMcp.Vmm;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// Guest networking without a guest: the options that keep a guest off its host, what a hostile
/// guest may claim about its lease, the store forgetting a guest's network with its run, and the
/// operator's ceiling on what a tool call may ask for. The guest tests (NetworkTests) prove the
/// same against real guests in network namespaces.
/// </summary>
public sealed class NetworkingTests : IDisposable
{
    private readonly string _state = Directory.CreateTempSubdirectory("pyro-net-unit-").FullName;

    public void Dispose() => Directory.Delete(_state, recursive: true);

    [Fact]
    public void PasstKeepsTheGatewayOffTheHostAndForwardsNothingIn()
    {
        foreach (var runAs in new[] { null, "pyro-qemu" })
        {
            var args = PasstCommandLine.Build(PasstProcess.SocketName, runAs);
            Assert.Contains("--no-map-gw", args);
            Assert.Equal("none", args[args.ToList().IndexOf("--tcp-ports") + 1]);
            Assert.Equal("none", args[args.ToList().IndexOf("--udp-ports") + 1]);
            Assert.Contains("--foreground", args);
            Assert.DoesNotContain(args, a => a is "all" or "-t" or "-u" or "-T" or "-U");
            // A relative name: passt binds it in its own directory after dropping from root.
            Assert.Equal(PasstProcess.SocketName, args[args.ToList().IndexOf("--socket") + 1]);
            Assert.Equal(runAs is not null, args.Contains("--runas"));
        }
    }

    [Fact]
    public void OnlyAGuestWithANetworkGetsANetworkDevice()
    {
        var dir = Path.Combine(_state, "vm,x");
        var plain = QemuCommandLine.Build(new QemuLaunch("0123456789ab", new VmSpec(1, 512, Accelerator.Tcg), "/k", "/i", Path.Combine(dir, "disk.qcow2"), Path.Combine(dir, "agent.sock"), null));
        Assert.DoesNotContain("-netdev", plain);
        Assert.DoesNotContain(plain, a => a.Contains("virtio-net", StringComparison.Ordinal) || a.Contains("pyro.net", StringComparison.Ordinal));

        var socket = Path.Combine(dir, "net", "passt.sock");
        var networked = QemuCommandLine.Build(new QemuLaunch("0123456789ab", new VmSpec(1, 512, Accelerator.Tcg), "/k", "/i", Path.Combine(dir, "disk.qcow2"), Path.Combine(dir, "agent.sock"), null, NetworkSocketPath: socket)).ToList();
        var netdev = networked[networked.IndexOf("-netdev") + 1];
        // The comma in the directory is doubled: it cannot add an option to the netdev.
        Assert.Equal($"stream,id=net0,server=off,addr.type=unix,addr.path={socket.Replace(",", ",,", StringComparison.Ordinal)}", netdev);
        Assert.Contains("virtio-net-device,netdev=net0", networked);
        Assert.Contains(" pyro.net=dhcp", networked[networked.IndexOf("-append") + 1], StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("off", NetworkPolicy.Off)]
    [InlineData("egress", NetworkPolicy.Egress)]
    [InlineData("egress+published-ports", NetworkPolicy.EgressPublishedPorts)]
    [InlineData(" Egress ", NetworkPolicy.Egress)]
    public void PolicyNamesParse(string name, NetworkPolicy expected)
    {
        Assert.Equal(expected, NetworkPolicyNames.Parse(name));
        Assert.Equal(expected, NetworkPolicyNames.Parse(expected.ToName()));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("on")]
    [InlineData("egress+published")]
    [InlineData("published-ports")]
    [InlineData("egress,published-ports")]
    [InlineData("all")]
    public void UnknownPoliciesAreRefusedWithTheChoices(string? name)
    {
        var error = Assert.Throws<PyroInputException>(() => NetworkPolicyNames.Parse(name));
        Assert.Equal("network_policy_invalid", error.Code);
        Assert.Equal(nameof(WorkspaceCreateRequest.NetworkPolicy), error.Field);
        Assert.Contains("egress+published-ports", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AHostileLeaseCannotPutTextIntoStatus()
    {
        var hostile = new[]
        {
            new GuestNetworkReply { Address = "10.0.0.1; rm -rf /", PrefixLength = 24 },
            new GuestNetworkReply { Address = "999.1.1.1", PrefixLength = 24 },
            new GuestNetworkReply { Address = "::1", PrefixLength = 64 },
            new GuestNetworkReply { Address = "10.0.0.1\nState: running", PrefixLength = 24 },
            new GuestNetworkReply { Address = "10.0.0.1", PrefixLength = 0 },
            new GuestNetworkReply { Address = "10.0.0.1", PrefixLength = 33 },
            new GuestNetworkReply { Address = "010.000.000.001", PrefixLength = 24 },
            new GuestNetworkReply { Address = new string('1', 100_000), PrefixLength = 24 },
            new GuestNetworkReply { Address = null, PrefixLength = 24, Error = "\u001b[2J no lease \u0007" },
        };
        var passed = hostile.Count(reply => GuestLease.Read(reply) is not null);
        Assert.Equal(0, passed);
        var problem = GuestLease.Problem(hostile[^1], expected: true)!;
        Assert.DoesNotContain('\u001b', problem);
        Assert.DoesNotContain('\u0007', problem);

        var noisy = GuestLease.Read(new GuestNetworkReply
        {
            Address = "10.231.7.1",
            PrefixLength = 30,
            Gateway = "10.231.7.2\nInjected: yes",
            Dns = [.. Enumerable.Range(0, 100).Select(i => $"10.0.0.{i}").Prepend("not-an-ip").Prepend("8.8.8.8 8.8.4.4")],
        })!;
        Assert.Equal("10.231.7.1", noisy.Address);
        Assert.Null(noisy.Gateway);
        Assert.True(noisy.DnsServers.Count <= 4, $"{noisy.DnsServers.Count} name servers kept");
        Assert.All(noisy.DnsServers, d => Assert.Matches(@"^\d+\.\d+\.\d+\.\d+$", d));
        Assert.Equal("10.231.7.1/30, dns " + string.Join(' ', noisy.DnsServers), noisy.ToString());
        Figures.Record("hostile guest leases", $"{hostile.Length + 1} leases tried, {passed} hostile fields reached status, name servers capped at {noisy.DnsServers.Count}");
    }

    [Fact]
    public void TheStoreForgetsLeaseAndPortsWhenTheWorkspaceStopsRunning()
    {
        var store = new WorkspaceStore(_state);
        var pid = Environment.ProcessId;
        var lease = new GuestNetwork { Address = "10.231.7.1", PrefixLength = 30, Gateway = "10.231.7.2", DnsServers = ["10.231.7.2"] };
        PublishedPort[] ports = [new() { HostPort = 18080, GuestPort = 8080 }];

        store.Insert(Record("aaaaaaaaaaaa", NetworkPolicy.EgressPublishedPorts));
        Assert.True(store.RegisterSupervisor("aaaaaaaaaaaa", pid));
        Assert.True(store.MarkBooted("aaaaaaaaaaaa", pid, lease));
        // Not running yet: a supervisor cannot record ports for a workspace still being created.
        Assert.False(store.SetPublishedPorts("aaaaaaaaaaaa", pid, ports));
        Assert.True(store.TryMove("aaaaaaaaaaaa", WorkspaceTransition.CreateCompleted, WorkspaceState.Creating, null));
        Assert.False(store.SetPublishedPorts("aaaaaaaaaaaa", pid + 1, ports), "another process is not the supervisor");
        Assert.True(store.SetPublishedPorts("aaaaaaaaaaaa", pid, ports));

        var running = store.Get("aaaaaaaaaaaa");
        Assert.Equal(NetworkPolicy.EgressPublishedPorts, running.NetworkPolicy);
        Assert.Equal(lease.ToString(), running.GuestNetwork?.ToString());
        Assert.Equal(ports, running.PublishedPorts);

        Assert.True(store.TryMove("aaaaaaaaaaaa", WorkspaceTransition.StopBegins, WorkspaceState.Running, null));
        var stopping = store.Get("aaaaaaaaaaaa");
        Assert.Null(stopping.GuestNetwork);
        Assert.Empty(stopping.PublishedPorts);
        Assert.Equal(NetworkPolicy.EgressPublishedPorts, stopping.NetworkPolicy);

        // Every way out of running forgets them: crash, reset, delete.
        foreach (var (transition, id) in new[] { (WorkspaceTransition.Crash, "bbbbbbbbbbbb"), (WorkspaceTransition.ResetBegins, "cccccccccccc"), (WorkspaceTransition.DeleteBegins, "dddddddddddd") })
        {
            store.Insert(Record(id, NetworkPolicy.EgressPublishedPorts));
            Assert.True(store.RegisterSupervisor(id, pid));
            Assert.True(store.MarkBooted(id, pid, lease));
            Assert.True(store.TryMove(id, WorkspaceTransition.CreateCompleted, WorkspaceState.Creating, null));
            Assert.True(store.SetPublishedPorts(id, pid, ports));
            Assert.True(store.TryMove(id, transition, WorkspaceState.Running, "test"), transition.Name);
            Assert.Empty(store.Get(id).PublishedPorts);
            Assert.Null(store.Get(id).GuestNetwork);
        }
    }

    [Fact]
    public async Task PublishingNeedsThePolicyAndAValidPortBeforeAnythingIsAsked()
    {
        var options = new PyroOptions { StateDir = _state, RunDir = Path.Combine(_state, "run") };
        var manager = new WorkspaceManager(options, new EnvironmentStore(options));
        StoreSeed.Insert(manager.Store, Record("eeeeeeeeeeee", NetworkPolicy.Egress) with { State = WorkspaceState.Stopped });
        var pyro = new Pyro(options);

        var refused = await Assert.ThrowsAsync<PyroInputException>(() => pyro.PublishPortAsync("eeeeeeeeeeee", "8080"));
        Assert.Equal("publish_not_allowed", refused.Code);
        foreach (var bad in new[] { "0", "65536", "80:8080", "8080:", ":8080", "a:b", "8080/udp", "127.0.0.1:18080:8080", "-1" })
        {
            var error = await Assert.ThrowsAsync<PyroInputException>(() => pyro.PublishPortAsync("eeeeeeeeeeee", bad));
            Assert.Equal("port_invalid", error.Code);
        }
    }

    [Fact]
    public async Task TheOperatorCapsTheNetworkAToolCallMayAskFor()
    {
        await using (var closed = await InProcessMcp.StartAsync("workspace-full", new McpServerPolicy { MaxNetworkPolicy = NetworkPolicy.Off }))
        {
            await closed.ErrorAsync("vm_run", "network_policy_not_allowed", new() { ["environment"] = "debian:12", ["command"] = "true", ["network"] = true });
            await closed.ErrorAsync("vm_create", "network_policy_not_allowed", new() { ["environment"] = "debian:12", ["network"] = true });
            await closed.ErrorAsync("workspace_create", "network_policy_not_allowed", new() { ["environment"] = "debian:12", ["network_policy"] = "egress" });
            await closed.ErrorAsync("workspace_create", "network_policy_invalid", new() { ["environment"] = "debian:12", ["network_policy"] = "everything" });
        }

        await using var egressOnly = await InProcessMcp.StartAsync("workspace-full", new McpServerPolicy { MaxNetworkPolicy = NetworkPolicy.Egress });
        var text = await egressOnly.ErrorAsync("workspace_create", "network_policy_not_allowed", new() { ["environment"] = "debian:12", ["network_policy"] = "egress+published-ports" });
        Assert.Contains("--max-network-policy", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DoctorStartsPasstForItsNetworkingVerdict()
    {
        var report = await new Pyro(PyroScratch.Options).DoctorAsync();
        Assert.True(report.Networking.PasstStarts, report.Networking.Detail);
        Assert.NotNull(report.Networking.PasstPath);
        Assert.Equal(report.Capabilities.VmBoot, report.Capabilities.GuestNetwork);
        // The check cleans up after itself.
        Assert.Empty(Directory.Exists(Repo.RunDir) ? Directory.GetDirectories(Repo.RunDir, "doctor-net-*") : []);
    }

    private static WorkspaceRecord Record(string id, NetworkPolicy policy) => new()
    {
        Id = id, Environment = "debian:12", VcpuCount = 1, MemMib = 512, TtlSeconds = 600,
        CreatedAt = DateTimeOffset.UtcNow, ExpiresAt = DateTimeOffset.UtcNow.AddMinutes(10), State = WorkspaceState.Creating,
        NetworkPolicy = policy,
    };
}

/// <summary>Which name servers a guest gets when the host's resolver sits on loopback.</summary>
public sealed class HostResolverTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pyro-resolv-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string File(string name, string text)
    {
        var path = Path.Combine(_dir, name);
        System.IO.File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void ALoopbackResolverIsReplacedByItsUpstreamsAndARealOneIsLeftToPasst()
    {
        var upstream = File("upstream", "# resolved\nnameserver 192.0.2.53\nnameserver 127.0.0.1\nnameserver 2001:db8::53\nnameserver 198.51.100.53\n");
        Assert.Empty(HostResolvers.ForPasst(File("plain", "nameserver 10.255.255.53\n"), upstream));
        Assert.Null(HostResolvers.Problem(File("plain2", "nameserver 10.255.255.53\n"), upstream));

        var stub = File("stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n");
        Assert.Equal(["192.0.2.53", "198.51.100.53"], HostResolvers.ForPasst(stub, upstream));
        Assert.Null(HostResolvers.Problem(stub, upstream));

        Assert.Empty(HostResolvers.ForPasst(stub, Path.Combine(_dir, "missing")));
        Assert.Contains("loopback", HostResolvers.Problem(stub, Path.Combine(_dir, "missing")), StringComparison.Ordinal);
        Assert.Contains("no name server", HostResolvers.Problem(File("empty", "# nothing\n"), Path.Combine(_dir, "missing")), StringComparison.Ordinal);
    }

    [Fact]
    public void ExplicitNameServersReachPasstAsDnsOptions()
    {
        var args = PasstCommandLine.Build(PasstProcess.SocketName, null, ["192.0.2.53"]).ToList();
        Assert.Equal("192.0.2.53", args[args.IndexOf("--dns") + 1]);
        Assert.DoesNotContain("--dns", PasstCommandLine.Build(PasstProcess.SocketName, null));
    }
}
