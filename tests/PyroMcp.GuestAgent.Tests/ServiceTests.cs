using System.Globalization;
using System.Net;
using System.Net.Sockets;
using PyroMcp.GuestAgent.Services;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent.Tests;

/// <summary>service.* through a real <see cref="AgentServer"/> on this host, with the host's busybox as the agent's.</summary>
public sealed class ServiceTests : IAsyncLifetime
{
    private const string Busybox = "/bin/busybox";
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private AgentHarness _agent = null!;

    public Task InitializeAsync()
    {
        Assert.True(File.Exists(Busybox), "these tests need busybox (apt-get install busybox)");
        _agent = new AgentHarness(Busybox);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _agent.DisposeAsync();

    [Fact]
    public async Task FileReadyServiceStartsAndListsRunning()
    {
        var started = (await StartAsync("web", "echo hello; touch .ready; exec sleep 1000", new ReadinessProbe { Type = "file", Target = ".ready" })).Ok.Service!;

        Assert.Equal(("running", _agent.Root), (started.State, started.Cwd));
        Assert.StartsWith("found: ", started.LastProbe, StringComparison.Ordinal);
        Assert.True(Directory.Exists($"/proc/{started.Pid}"), "the service process runs");
        Assert.Equal(started.Pid, GroupOf(started.Pid));
        var listed = Assert.Single((await _agent.ServiceAsync(AgentOps.ServiceList, new ServiceRequest())).Ok.Services!);
        Assert.Equal(("web", "running"), (listed.Name, listed.State));
        Assert.True(File.Exists(Path.Combine(_agent.StateDir, "web", "service.json")), "metadata is kept in the state dir");
        Assert.DoesNotContain(Directory.GetFiles(_agent.Root), f => !f.EndsWith(".ready", StringComparison.Ordinal));

        var stopped = (await _agent.ServiceAsync(AgentOps.ServiceStop, new ServiceRequest { Name = "web" })).Ok.Service!;
        Assert.Equal(("stopped", "stopped on request"), (stopped.State, stopped.Reason));
        Assert.Empty(GroupMembers(started.Pid));
    }

    [Fact]
    public async Task TcpAndHttpReadinessWaitForTheServerTheServiceStarts()
    {
        File.WriteAllText(_agent.InRoot("index.html"), "ok");
        var tcpPort = FreePort();
        var tcp = (await StartAsync("tcp", $"sleep 0.5; exec busybox httpd -f -p 127.0.0.1:{tcpPort} -h .", new ReadinessProbe { Type = "tcp", Target = $"127.0.0.1:{tcpPort}" })).Ok.Service!;
        Assert.Equal(("running", $"connected to 127.0.0.1:{tcpPort}"), (tcp.State, tcp.LastProbe));
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(IPAddress.Loopback, tcpPort);
        }

        var httpPort = FreePort();
        var http = (await StartAsync("http", $"sleep 0.5; exec busybox httpd -f -p 127.0.0.1:{httpPort} -h .", new ReadinessProbe { Type = "http", Target = $"http://127.0.0.1:{httpPort}/index.html" })).Ok.Service!;
        Assert.Equal(("running", "HTTP 200"), (http.State, http.LastProbe));

        var missingPort = FreePort();
        var notFound = await StartAsync("http404", $"exec busybox httpd -f -p 127.0.0.1:{missingPort} -h .", new ReadinessProbe { Type = "http", Target = $"http://127.0.0.1:{missingPort}/missing" }, readyTimeoutMs: 1500);
        Assert.Equal("service_not_ready", notFound.FailureCode);
        Assert.Contains("last probe: HTTP 404", notFound.Error!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReadinessTimeoutStopsTheWholeGroupAndFails()
    {
        var reply = await StartAsync("slow", "echo booting; echo 'config missing' >&2; sleep 1000 & sleep 1000", new ReadinessProbe { Type = "file", Target = "never" }, readyTimeoutMs: 1500);

        Assert.Equal("service_not_ready", reply.FailureCode);
        Assert.Contains("last probe: not found: " + _agent.InRoot("never"), reply.Error!.Message, StringComparison.Ordinal);
        Assert.Contains("config missing", reply.Error.Message, StringComparison.Ordinal);
        Assert.Contains("booting", reply.Error.Message, StringComparison.Ordinal);
        var info = (await _agent.ServiceAsync(AgentOps.ServiceStatus, new ServiceRequest { Name = "slow" })).Ok.Service!;
        Assert.Equal("failed", info.State);
        Assert.True(info.Pid > 1);
        Assert.Empty(GroupMembers(info.Pid));
        Assert.False(Directory.Exists($"/proc/{info.Pid}"), "the service's shell was reaped");
    }

    [Fact]
    public async Task ServiceThatExitsDuringReadinessReportsItsExitCode()
    {
        var reply = await StartAsync("broken", "echo 'bad config' >&2; exit 3", new ReadinessProbe { Type = "command", Target = "test -e never" });

        Assert.Equal("service_exited", reply.FailureCode);
        Assert.Contains("exited with code 3", reply.Error!.Message, StringComparison.Ordinal);
        Assert.Contains("bad config", reply.Error.Message, StringComparison.Ordinal);
        var info = (await _agent.ServiceAsync(AgentOps.ServiceStatus, new ServiceRequest { Name = "broken" })).Ok.Service!;
        Assert.Equal(("exited", 3, "exited with code 3"), (info.State, info.ExitCode, info.Reason));
    }

    [Fact]
    public async Task CancellingTheStartStopsTheServiceAsFailed()
    {
        var (stream, done) = await _agent.BeginAsync(new AgentRequest
        {
            Op = AgentOps.ServiceStart,
            Service = new ServiceRequest { Name = "waiter", Command = "exec sleep 1000", Readiness = new ReadinessProbe { Type = "file", Target = "never" }, ReadyTimeoutMs = 600_000, ReadyIntervalMs = 100 },
        });
        var clock = System.Diagnostics.Stopwatch.StartNew();
        ServiceInfo probing;
        while ((probing = (await _agent.ServiceAsync(AgentOps.ServiceStatus, new ServiceRequest { Name = "waiter" })).Response?.Service!) is not { LastProbe: not null })
        {
            Assert.True(clock.Elapsed < Deadline, "the first probe never ran");
            await Task.Delay(50);
        }

        Assert.Equal("starting", probing.State);
        await _agent.CancelAsync(stream);
        var reply = await done.WaitAsync(Deadline);

        Assert.Equal("cancelled", reply.FailureCode);
        var info = (await _agent.ServiceAsync(AgentOps.ServiceStatus, new ServiceRequest { Name = "waiter" })).Ok.Service!;
        Assert.Equal("failed", info.State);
        Assert.Empty(GroupMembers(info.Pid));
    }

    [Fact]
    public async Task StopKillsAChildThatIgnoresTerm()
    {
        var started = (await StartAsync("stubborn", "trap '' TERM; sleep 1000 & echo up > up; wait", new ReadinessProbe { Type = "file", Target = "up" })).Ok.Service!;
        Assert.True(GroupMembers(started.Pid).Count >= 2, "the shell and its sleep share the group");

        var stopped = (await _agent.ServiceAsync(AgentOps.ServiceStop, new ServiceRequest { Name = "stubborn", StopGraceMs = 500 })).Ok.Service!;

        Assert.Equal("stopped", stopped.State);
        Assert.Equal(137, stopped.ExitCode);
        Assert.Empty(GroupMembers(started.Pid));
        var again = (await _agent.ServiceAsync(AgentOps.ServiceStop, new ServiceRequest { Name = "stubborn" })).Ok.Service!;
        Assert.Equal(stopped, again);
    }

    [Fact]
    public async Task LogsKeepTheTailAndRotationBoundsTheFiles()
    {
        // About 3.5 MiB of stdout: more than three rotations.
        const string Script = "i=0; while [ $i -lt 40000 ]; do echo \"line $i ................................................................................\"; i=$((i+1)); done; echo 'err end' >&2; touch done; exec sleep 1000";
        await StartAsync("chatty", Script, new ReadinessProbe { Type = "file", Target = "done" }, readyTimeoutMs: 120_000);

        var tail = (await _agent.ServiceAsync(AgentOps.ServiceLogs, new ServiceRequest { Name = "chatty", TailLines = 3 })).Ok.ServiceLogs!;
        var lines = tail.Stdout.TrimEnd('\n').Split('\n');
        Assert.Equal(["line 39997", "line 39998", "line 39999"], lines.Select(l => l[..l.IndexOf(' ', 5)]));
        Assert.Equal("err end\n", tail.Stderr);
        Assert.True(tail.Truncated);

        var most = (await _agent.ServiceAsync(AgentOps.ServiceLogs, new ServiceRequest { Name = "chatty", TailLines = ServiceManager.MaxTailLines })).Ok.ServiceLogs!;
        Assert.True(most.Stdout.Length <= ServiceManager.MaxTailBytes, "the tail is capped so the reply fits a frame");
        Assert.StartsWith("line ", most.Stdout, StringComparison.Ordinal);
        Assert.EndsWith("line 39999 " + new string('.', 80) + "\n", most.Stdout, StringComparison.Ordinal);

        var onDisk = Directory.GetFiles(Path.Combine(_agent.StateDir, "chatty"), "stdout.log*").Sum(f => new FileInfo(f).Length);
        Assert.InRange(onDisk, 1, 2 * ServiceLog.RotateBytes);
        Figures.Record("service logs", $"{40000L * 92 / 1024} KiB written, {onDisk / 1024} KiB kept on disk (bound {2 * ServiceLog.RotateBytes / 1024} KiB)");
    }

    [Fact]
    public async Task DeletedLogFilesNeitherBlockTheServiceNorStopItsLogging()
    {
        await StartAsync("ticker", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.02; done", null);
        var log = Path.Combine(_agent.StateDir, "ticker", "stdout.log");
        await WaitLogAsync(text => text.StartsWith("tick ", StringComparison.Ordinal));

        File.Delete(log);
        await WaitLogAsync(text => text.Length > 0);
        Directory.Delete(Path.Combine(_agent.StateDir, "ticker"), recursive: true);
        await WaitLogAsync(text => text.Length > 0);
        Assert.True(File.Exists(log), "logging went on in a new file");

        Assert.Equal("running", (await _agent.ServiceAsync(AgentOps.ServiceStatus, new ServiceRequest { Name = "ticker" })).Ok.Service!.State);

        async Task WaitLogAsync(Func<string, bool> done)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!done((await _agent.ServiceAsync(AgentOps.ServiceLogs, new ServiceRequest { Name = "ticker", TailLines = 1 })).Ok.ServiceLogs!.Stdout))
            {
                Assert.True(clock.Elapsed < Deadline, "the log never moved on");
                await Task.Delay(50);
            }
        }
    }

    [Fact]
    public async Task ANewManagerOverTheSameStateShowsTheOldServiceStopped()
    {
        var started = (await StartAsync("keep", "exec sleep 1000", null)).Ok.Service!;
        Assert.Equal("running", started.State);

        var rebooted = new ServiceManager(new AgentOptions("test", Busybox, _agent.Root, _agent.StateDir), new WorkspacePaths(_agent.Root));
        var seen = Assert.Single(rebooted.List());

        Assert.Equal(("keep", "stopped", "the workspace was stopped or restarted"), (seen.Name, seen.State, seen.Reason));
        Assert.Equal(started.Command, seen.Command);
        var onDisk = ProtocolJsonContext.Decode<ServiceInfo>(File.ReadAllBytes(Path.Combine(_agent.StateDir, "keep", "service.json")));
        Assert.Equal("stopped", onDisk.State);
    }

    [Fact]
    public async Task TwoCallersStartingTheSameNameExactlyOneWins()
    {
        for (var round = 0; round < 5; round++)
        {
            var name = "dup" + round.ToString(CultureInfo.InvariantCulture);
            var replies = await Task.WhenAll(StartAsync(name, "exec sleep 1000", null), StartAsync(name, "exec sleep 1000", null));
            Assert.Single(replies, r => r.Response is not null);
            Assert.Equal("service_exists", Assert.Single(replies, r => r.Error is not null).FailureCode);
        }

        Assert.Equal(5, (await _agent.ServiceAsync(AgentOps.ServiceList, new ServiceRequest())).Ok.Services!.Count(s => s.State == "running"));
    }

    [Fact]
    public async Task TheLimitForgetsEndedServicesAndRefusesOnlyWhenAllRun()
    {
        for (var i = 0; i < ServiceManager.MaxServices; i++)
        {
            Assert.Equal("running", (await StartAsync("s" + i.ToString(CultureInfo.InvariantCulture), "exec sleep 1000", null)).Ok.Service!.State);
        }

        Assert.Equal("service_limit", (await StartAsync("one-more", "exec sleep 1000", null)).FailureCode);
        await _agent.ServiceAsync(AgentOps.ServiceStop, new ServiceRequest { Name = "s7" });
        Assert.Equal("running", (await StartAsync("one-more", "exec sleep 1000", null)).Ok.Service!.State);

        var names = (await _agent.ServiceAsync(AgentOps.ServiceList, new ServiceRequest())).Ok.Services!.Select(s => s.Name).ToList();
        Assert.Equal(ServiceManager.MaxServices, names.Count);
        Assert.DoesNotContain("s7", names);
        Assert.False(Directory.Exists(Path.Combine(_agent.StateDir, "s7")), "a forgotten service's files go");
    }

    [Fact]
    public async Task ListClipsLongCommandsAndStatusHasThemWhole()
    {
        var command = ": " + new string('x', 8000) + "; exec sleep 1000";
        Assert.Equal(command, (await StartAsync("long", command, null)).Ok.Service!.Command);

        var listed = Assert.Single((await _agent.ServiceAsync(AgentOps.ServiceList, new ServiceRequest())).Ok.Services!);
        Assert.True(listed.Command.Length <= ServiceManager.MaxListedCommandChars + 3, $"{listed.Command.Length} chars listed");
        Assert.Equal(command, (await _agent.ServiceAsync(AgentOps.ServiceStatus, new ServiceRequest { Name = "long" })).Ok.Service!.Command);
    }

    [Fact]
    public async Task BadRequestsGetTheirCodes()
    {
        var cases = new (ServiceRequest Request, string Code)[]
        {
            (new() { Name = "../etc", Command = "true" }, "service_name_invalid"),
            (new() { Name = "", Command = "true" }, "service_name_invalid"),
            (new() { Name = "a b", Command = "true" }, "service_name_invalid"),
            (new() { Name = new string('a', 65), Command = "true" }, "service_name_invalid"),
            (new() { Name = "-x", Command = "true" }, "service_name_invalid"),
            (new() { Name = "ok", Command = "" }, "bad_request"),
            (new() { Name = "ok", Command = new string('x', ServiceRequest.MaxCommandBytes + 1) }, "bad_request"),
            (new() { Name = "ok", Command = "true", Cwd = "no/such/dir" }, "cwd_not_found"),
            (new() { Name = "ok", Command = "true", ReadyTimeoutMs = -1 }, "bad_request"),
            (new() { Name = "ok", Command = "true", ReadyTimeoutMs = 600_001 }, "bad_request"),
            (new() { Name = "ok", Command = "true", ReadyIntervalMs = 10 }, "bad_request"),
            (new() { Name = "ok", Command = "true", Readiness = new() { Type = "tcp", Target = "nohost" } }, "readiness_invalid"),
            (new() { Name = "ok", Command = "true", Readiness = new() { Type = "tcp", Target = "127.0.0.1:99999" } }, "readiness_invalid"),
            (new() { Name = "ok", Command = "true", Readiness = new() { Type = "http", Target = "https://127.0.0.1/" } }, "readiness_invalid"),
            (new() { Name = "ok", Command = "true", Readiness = new() { Type = "magic", Target = "x" } }, "readiness_invalid"),
            (new() { Name = "ok", Command = "true", Readiness = new() { Type = "file", Target = " " } }, "readiness_invalid"),
        };
        foreach (var (request, code) in cases)
        {
            var reply = await _agent.ServiceAsync(AgentOps.ServiceStart, request);
            Assert.True(reply.Error?.Code == code, $"{request.Name}/{request.Readiness?.Target}: expected {code}, got {reply.Error?.Code ?? "a result"}");
        }

        Assert.Equal("service_not_found", (await _agent.ServiceAsync(AgentOps.ServiceStatus, new ServiceRequest { Name = "ghost" })).FailureCode);
        Assert.Equal("bad_request", (await _agent.ServiceAsync(AgentOps.ServiceLogs, new ServiceRequest { Name = "ghost", TailLines = 5001 })).FailureCode);
        Assert.Empty((await _agent.ServiceAsync(AgentOps.ServiceList, new ServiceRequest())).Ok.Services!);
    }

    [Fact]
    public async Task StopAllEndsEveryServiceAsTheWorkspaceStops()
    {
        var manager = new ServiceManager(new AgentOptions("test", Busybox, _agent.Root, Path.Combine(_agent.StateDir, "other")), new WorkspacePaths(_agent.Root));
        var a = await manager.StartAsync(new ServiceRequest { Name = "a", Command = "exec sleep 1000" }, CancellationToken.None);
        var b = await manager.StartAsync(new ServiceRequest { Name = "b", Command = "trap '' TERM; sleep 1000 & wait" }, CancellationToken.None);

        await manager.StopAllAsync("the workspace was stopped");

        Assert.All(manager.List(), s => Assert.Equal(("stopped", "the workspace was stopped"), (s.State, s.Reason)));
        Assert.Empty(GroupMembers(a.Pid));
        Assert.Empty(GroupMembers(b.Pid));
    }

    private Task<Reply> StartAsync(string name, string command, ReadinessProbe? readiness, int readyTimeoutMs = 20_000)
        => _agent.ServiceAsync(AgentOps.ServiceStart, new ServiceRequest { Name = name, Command = command, Readiness = readiness, ReadyTimeoutMs = readyTimeoutMs, ReadyIntervalMs = 100 });

    private static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    /// <summary>Live processes of process group <paramref name="group"/>, from /proc.</summary>
    internal static List<int> GroupMembers(int group)
    {
        var members = new List<int>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(dir), out var pid) && Stat(pid) is { } stat && stat.Group == group && stat.State != 'Z')
            {
                members.Add(pid);
            }
        }

        return members;
    }

    internal static int GroupOf(int pid) => Stat(pid)?.Group ?? -1;

    internal static (char State, int Group, int Session)? Stat(int pid)
    {
        try
        {
            var text = File.ReadAllText($"/proc/{pid}/stat");
            var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
            return (fields[0][0], int.Parse(fields[2], CultureInfo.InvariantCulture), int.Parse(fields[3], CultureInfo.InvariantCulture));
        }
        catch (IOException)
        {
            return null;
        }
    }
}
