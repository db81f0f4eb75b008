using PyroMcp.Networking;
using PyroMcp.Protocol;
using PyroMcp.Shells;
using PyroMcp.Vmm;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// The host side of services and shells without a guest: requests refused before any guest is
/// asked, terminal text made plain, and the guest's answers (claims of a hostile guest) bounded.
/// </summary>
public sealed class ServiceShellHostTests
{
    [Theory]
    [InlineData("\u001b[1;32mgreen\u001b[0m\r\n", "green\n")]
    [InlineData("\u001b]0;user@host: /tmp\u0007prompt$ ", "prompt$ ")]
    [InlineData("\u001b]2;title\u001b\\after", "after")]
    [InlineData("\u001b[?2004hroot@pyro:/workspace# \u001b[?2004l\r\n", "root@pyro:/workspace# \n")]
    [InlineData("tty\r\n\u001b[?2004l\r/dev/pts/0\r\n", "tty\n/dev/pts/0\n")]
    [InlineData("50%\r100%\n", "50%\n100%\n")]
    [InlineData("abc\b\bX\n", "aX\n")]
    [InlineData("\u009b31mred", "red")]
    [InlineData("cut at the end \u001b[", "cut at the end ")]
    [InlineData("\u001b(Bline\u001b=\u0000\u0007\n", "line\n")]
    [InlineData("tab\tkept\n", "tab\tkept\n")]
    public void PlainTextHasNoEscapesOrCarriageReturns(string raw, string plain)
        => Assert.Equal(plain, TerminalText.Plain(raw));

    [Fact]
    public async Task BadRequestsAreRefusedBeforeAnyWorkspaceIsLookedUp()
    {
        var pyro = new Pyro(PyroScratch.Options);
        const string nowhere = "000000000000";
        async Task<string> CodeOf(Func<Task> call) => (await Assert.ThrowsAsync<PyroInputException>(call)).Code;

        Assert.Equal("service_name_invalid", await CodeOf(() => pyro.StartServiceAsync(nowhere, new ServiceStartRequest { Name = "../etc", Command = "true" })));
        Assert.Equal("service_name_invalid", await CodeOf(() => pyro.StartServiceAsync(nowhere, new ServiceStartRequest { Name = new string('a', 65), Command = "true" })));
        Assert.Equal("bad_request", await CodeOf(() => pyro.StartServiceAsync(nowhere, new ServiceStartRequest { Name = "web", Command = " " })));
        Assert.Equal("bad_request", await CodeOf(() => pyro.StartServiceAsync(nowhere, new ServiceStartRequest { Name = "web", Command = new string('x', ServiceRequest.MaxCommandBytes + 1) })));
        Assert.Equal("readiness_invalid", await CodeOf(() => pyro.StartServiceAsync(nowhere, new ServiceStartRequest { Name = "web", Command = "true", Readiness = new("socket", "/x") })));
        Assert.Equal("readiness_invalid", await CodeOf(() => pyro.StartServiceAsync(nowhere, new ServiceStartRequest { Name = "web", Command = "true", Readiness = ServiceReadiness.Tcp("8080") })));
        Assert.Equal("readiness_invalid", await CodeOf(() => pyro.StartServiceAsync(nowhere, new ServiceStartRequest { Name = "web", Command = "true", Readiness = ServiceReadiness.Tcp("127.0.0.1:99999") })));
        Assert.Equal("readiness_invalid", await CodeOf(() => pyro.StartServiceAsync(nowhere, new ServiceStartRequest { Name = "web", Command = "true", Readiness = ServiceReadiness.Http("file:///etc/passwd") })));
        Assert.Equal("readiness_invalid", await CodeOf(() => pyro.StartServiceAsync(nowhere, new ServiceStartRequest { Name = "web", Command = "true", ReadyTimeoutSeconds = 0 })));
        Assert.Equal("readiness_invalid", await CodeOf(() => pyro.StartServiceAsync(nowhere, new ServiceStartRequest { Name = "web", Command = "true", ReadyIntervalMs = 10 })));
        Assert.Equal("port_invalid", await CodeOf(() => pyro.StartServiceAsync(nowhere, new ServiceStartRequest { Name = "web", Command = "true", Publish = ["80:8080"] })));
        Assert.Equal("port_limit", await CodeOf(() => pyro.StartServiceAsync(nowhere, new ServiceStartRequest { Name = "web", Command = "true", Publish = [.. Enumerable.Range(1, 17).Select(i => (8000 + i).ToString(System.Globalization.CultureInfo.InvariantCulture))] })));
        Assert.Equal("invalid_tail_lines", await CodeOf(() => pyro.GetServiceLogsAsync(nowhere, "web", tailLines: 0)));
        Assert.Equal("invalid_tail_lines", await CodeOf(() => pyro.GetServiceLogsAsync(nowhere, "web", tailLines: 5001)));
        Assert.Equal("shell_size_invalid", await CodeOf(() => pyro.OpenShellAsync(nowhere, new ShellOpenRequest { Cols = 5 })));
        Assert.Equal("shell_size_invalid", await CodeOf(() => pyro.OpenShellAsync(nowhere, new ShellOpenRequest { Rows = 100_000 })));
        Assert.Equal("shell_input_too_large", await CodeOf(() => pyro.WriteShellAsync(nowhere, "sh-12345678", new string('x', ShellRequest.MaxInputBytes + 1))));
        Assert.Equal("shell_not_found", await CodeOf(() => pyro.WriteShellAsync(nowhere, "../../x", "ls")));
        Assert.Equal("invalid_cursor", await CodeOf(() => pyro.ReadShellAsync(nowhere, "sh-12345678", cursor: -1)));
        Assert.Equal("invalid_max_chars", await CodeOf(() => pyro.ReadShellAsync(nowhere, "sh-12345678", maxChars: ShellRequest.MaxReadChars + 1)));
        // Good requests get as far as the workspace lookup.
        Assert.Equal("workspace_not_found", await CodeOf(() => pyro.StartServiceAsync(nowhere, new ServiceStartRequest { Name = "web.1_a-b", Command = "true", Readiness = ServiceReadiness.Tcp("[::1]:8080"), Publish = ["18080:8080"] })));
    }

    [Fact]
    public void WhatAHostileGuestSaysOfItsServicesAndShellsIsBounded()
    {
        var tried = 0;
        var unbounded = 0;
        void Check(bool bounded, string what)
        {
            tried++;
            if (!bounded)
            {
                unbounded++;
                Assert.Fail(what);
            }
        }

        var ports = new List<PublishedPort> { new() { HostPort = 18080, GuestPort = 8080, Service = "web" }, new() { HostPort = 18081, GuestPort = 8081, Service = "other" } };
        var hostile = new ServiceInfo
        {
            Name = "web\u001b]0;pwned\u0007" + new string('n', 10_000),
            State = "running; rm -rf /",
            Command = new string('c', 1_000_000),
            Cwd = "/workspace\r\nFAKE: line",
            Readiness = new ReadinessProbe { Type = "http\u001b[2J", Target = new string('t', 100_000) },
            Pid = -1,
            StartedAtMs = long.MaxValue,
            EndedAtMs = long.MinValue,
            Reason = new string('r', 100_000),
            LastProbe = "\u0007\u0007",
        };
        var service = WorkspaceManager.ToService("abc", hostile, ports);
        Check(service.Name.Length <= ServiceRequest.MaxNameLength && !service.Name.Any(char.IsControl), "service name not bounded or not clean");
        Check(service.State == "unknown", "an unknown state passed through");
        Check(service.Command.Length <= ServiceRequest.MaxCommandBytes, "command not bounded");
        Check(!service.Cwd.Contains('\r') && !service.Cwd.Contains('\n'), "cwd kept a line break");
        Check(service.Readiness!.Type.Length <= 16 && !service.Readiness.Type.Any(char.IsControl), "readiness type not clean");
        Check(service.Readiness.Target.Length <= 4096, "readiness target not bounded");
        Check(service.Pid is null, "a negative or non-running pid passed through");
        Check(service.StartedAt is null && service.EndedAt is null, "impossible times passed through");
        Check(service.Reason!.Length <= 2000 && service.LastProbe == "", "reason or probe not bounded or clean");
        Check(service.PublishedPorts.Count == 0, "an unknown-state service was shown with ports");

        // A running service is shown with its own ports only.
        var web = WorkspaceManager.ToService("abc", new ServiceInfo { Name = "web", State = "running", Command = "x", Cwd = "/workspace", Pid = 42 }, ports);
        Check(web.PublishedPorts.Count == 1 && web.PublishedPorts[0].HostPort == 18080 && web.Pid == 42, "a service was shown with another's ports");

        // Log tails: control characters out, at most the lines asked for, at most 256 KiB.
        var tail = WorkspaceManager.TailText(string.Concat(Enumerable.Range(0, 1000).Select(i => $"line {i}\u001b[31m\n")), 3);
        Check(tail == "line 997[31m\nline 998[31m\nline 999[31m\n", "the tail kept escapes or more lines: " + tail);
        Check(WorkspaceManager.TailText(new string('x', 10_000_000), 5).Length <= 256 * 1024, "a tail of one huge line was not cut");

        // Shell reads: the guest cannot move the cursor back, overfill the answer, or claim drops it did not make.
        var shell = new ShellInfo { Id = "sh-1\u001b[2J", State = "running", Cwd = "/tmp", Pid = 7, OutputChars = -5 };
        var read = WorkspaceManager.ToRead("abc", new ShellOutput { Shell = shell, Output = new string('o', 1000), Cursor = 3, NextCursor = 1, DroppedChars = 1_000_000, Truncated = false }, cursor: 100, maxChars: 10, plain: false);
        Check(read.Output.Length == 10 && read.Cursor == 100 && read.NextCursor == 110 && read.Truncated, $"a read was not held to what was asked: {read}");
        Check(read.DroppedChars == 0, "drops were claimed before the cursor asked for");
        Check(read.Shell.ShellId == "sh-1[2J" && read.Shell.OutputChars == 0, "shell fields not clean");
        var dropped = WorkspaceManager.ToRead("abc", new ShellOutput { Shell = shell, Output = "new", Cursor = 500, NextCursor = 503, DroppedChars = 400 }, cursor: 0, maxChars: 10, plain: true);
        Check(dropped.Cursor == 500 && dropped.DroppedChars == 400 && dropped.NextCursor == 503, $"a drop the guest reported was lost: {dropped}");

        Figures.Record("hostile service and shell replies", $"{tried} fields tried, {unbounded} passed unbounded or unclean");
    }

    [Fact]
    public void ReadinessChecksAcceptWhatTheAgentCanProbe()
    {
        WorkspaceManager.CheckReadiness(ServiceReadiness.File(".ready"));
        WorkspaceManager.CheckReadiness(ServiceReadiness.Tcp("127.0.0.1:8080"));
        WorkspaceManager.CheckReadiness(ServiceReadiness.Tcp("localhost:1"));
        WorkspaceManager.CheckReadiness(ServiceReadiness.Http("http://127.0.0.1:8080/health?x=1"));
        WorkspaceManager.CheckReadiness(ServiceReadiness.Command("test -f /tmp/x"));
        Assert.Equal("readiness_invalid", Assert.Throws<PyroInputException>(() => WorkspaceManager.CheckReadiness(ServiceReadiness.Http("https://example.com/"))).Code);
        Assert.Equal("readiness_invalid", Assert.Throws<PyroInputException>(() => WorkspaceManager.CheckReadiness(ServiceReadiness.File(""))).Code);
    }

    [Fact]
    public async Task PortsRememberTheServiceTheyFollowUntilReleased()
    {
        var pipe = new DuplexPipe();
        await using var agent = GuestAgentClient.Over(pipe.Host);
        await using var table = new PortTable(agent);
        var web = table.Publish(null, 8080, "web");
        var web2 = table.Publish(null, 8081, "web");
        var alone = table.Publish(null, 9000);

        Assert.Equal("web", web.Service);
        Assert.Null(alone.Service);
        Assert.Equal(["web"], table.Owners());
        Assert.Equal(new[] { web.HostPort, web2.HostPort }.Order(), table.PortsOf("web").Order());
        Assert.Equal(["web", "web", null], table.List().OrderBy(p => p.GuestPort).Select(p => p.Service));

        foreach (var port in table.PortsOf("web"))
        {
            Assert.True(await table.UnpublishAsync(port));
        }

        Assert.Empty(table.Owners());
        Assert.Equal([alone with { Service = null }], table.List());
    }
}
