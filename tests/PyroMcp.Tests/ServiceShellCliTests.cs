using System.Diagnostics;
using System.Text;
using PyroMcp.Cli;

namespace PyroMcp.Tests;

/// <summary><c>pyro workspace service</c> and <c>pyro workspace shell</c> without a guest: flags to requests, refusals before any VM work, what the text output lets through.</summary>
public sealed class ServiceShellCliTests : NoGuestTest
{
    private static ServiceStartRequest Start(params string[] args)
        => ServiceCommands.StartRequest(CliApp.Build().Parse(["workspace", "service", "start", .. args]));

    [Fact]
    public void StartFlagsBecomeTheRequest()
    {
        var request = Start("ws1", "web", "--cwd", "app", "--ready-http", "http://127.0.0.1:8080/", "--ready-timeout-seconds", "60",
            "--ready-interval-ms", "250", "--publish", "8080", "--publish", "18081:8081", "--", "python3", "-m", "http.server", "8080");

        Assert.Equal("web", request.Name);
        Assert.Equal("python3 -m http.server 8080", request.Command);
        Assert.Equal("app", request.Cwd);
        Assert.Equal(ServiceReadiness.Http("http://127.0.0.1:8080/"), request.Readiness);
        Assert.Equal(60, request.ReadyTimeoutSeconds);
        Assert.Equal(250, request.ReadyIntervalMs);
        Assert.Equal(["8080", "18081:8081"], request.Publish);
    }

    [Fact]
    public void StartDefaultsAreTheSdkDefaults()
    {
        var request = Start("ws1", "web", "--", "sleep infinity");
        var sdk = new ServiceStartRequest { Name = "web", Command = "sleep infinity" };

        Assert.Equal(sdk.Cwd, request.Cwd);
        Assert.Null(request.Readiness);
        Assert.Equal(sdk.ReadyTimeoutSeconds, request.ReadyTimeoutSeconds);
        Assert.Equal(sdk.ReadyIntervalMs, request.ReadyIntervalMs);
        Assert.Empty(request.Publish);
    }

    [Theory]
    [InlineData("--ready-file", "ready.flag", "file")]
    [InlineData("--ready-tcp", "127.0.0.1:5432", "tcp")]
    [InlineData("--ready-http", "http://localhost:3000/health", "http")]
    [InlineData("--ready-command", "pg_isready -h 127.0.0.1", "command")]
    public void EachReadyFlagIsItsProbe(string flag, string target, string type)
        => Assert.Equal(new ServiceReadiness(type, target), Start("ws1", "db", flag, target, "--", "run-db").Readiness);

    [Fact]
    public void TwoReadyFlagsAreRefused()
    {
        var error = Assert.Throws<CliUsageException>(() => Start("ws1", "web", "--ready-tcp", "127.0.0.1:80", "--ready-file", "x", "--", "srv"));
        Assert.Equal("readiness_invalid", error.Code);
        Assert.Contains("--ready-file and --ready-tcp", error.Message);
    }

    [Fact]
    public void AStartWithoutACommandIsRefused()
    {
        Assert.Equal("missing_command", Assert.Throws<CliUsageException>(() => Start("ws1", "web", "--")).Code);
        Assert.Equal("missing_command", Assert.Throws<CliUsageException>(() => Start("ws1", "web")).Code);
    }

    /// <summary>
    /// The joined command must give <c>/bin/sh -c</c> back exactly the words the user's shell split: checked
    /// with the host's own /bin/sh, for words full of what shells treat specially.
    /// </summary>
    [Fact]
    public async Task SeveralWordsAreQuotedSoShSeesTheSameWords()
    {
        string[][] cases =
        [
            ["echo", "a b", "c"],
            ["sh", "-c", "echo \"$HOME\"; it's `date` $(id) && true || false"],
            ["printf", "%s\\n", "", "'", "''", "\"", "\\", "*", "?", "[a]", "~", "#x", "a=b", "!x", "{a,b}", "tab\there", "new\nline", "é ü"],
            ["--dash", "-n", "--", ";", "&", "|", "<", ">", "(", ")"],
        ];
        var tried = 0;
        var unchanged = 0;
        foreach (var argv in cases)
        {
            var joined = ServiceCommands.JoinCommand(argv);
            var words = await ShWordsAsync(joined);
            tried += argv.Length;
            unchanged += argv.Zip(words).Count(p => p.First == p.Second);
            Assert.Equal(argv, words);
        }

        // One argument is a command line already: taken as it is, so pipes and variables work.
        Assert.Equal("python3 -m http.server 8080 | tee log", ServiceCommands.JoinCommand(["python3 -m http.server 8080 | tee log"]));
        Assert.Equal("python3 -m http.server 8080 | tee log", Start("ws1", "web", "--", "python3 -m http.server 8080 | tee log").Command);
        Figures.Record("service start -- CMD quoting", $"{tried} words tried through /bin/sh, {unchanged} came back unchanged, {tried - unchanged} split or expanded");
    }

    /// <summary>The words /bin/sh makes of <paramref name="commandLine"/> (each printed NUL-terminated by printf).</summary>
    private static async Task<string[]> ShWordsAsync(string commandLine)
    {
        var psi = new ProcessStartInfo("/bin/sh", ["-c", "printf '%s\\0' " + commandLine]) { RedirectStandardOutput = true, UseShellExecute = false, StandardOutputEncoding = Encoding.UTF8 };
        using var process = Process.Start(psi)!;
        var output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.Equal(0, process.ExitCode);
        return output.Split('\0')[..^1];
    }

    [Theory]
    [InlineData("readiness_invalid", "workspace", "service", "start", "000000000000", "web", "--ready-tcp", "127.0.0.1:80", "--ready-http", "http://127.0.0.1/", "--", "srv")]
    [InlineData("missing_command", "workspace", "service", "start", "000000000000", "web", "--ready-tcp", "127.0.0.1:80")]
    public async Task TheRealProgramRefusesWithExit2BeforeAnyWork(string code, params string[] args)
    {
        var result = await PyroCli.RunAsync([.. args[..5], "--json", .. args[5..]]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains($"pyro: error code: {code}", result.Stderr);
        Assert.Contains("pyro: hint: ", result.Stderr);
        Assert.Equal(code, result.Json.GetProperty("error").GetProperty("code").GetString());
        Assert.DoesNotContain("waiting for", result.Stderr);
    }

    [Fact]
    public void ShellOpenFlagsBecomeTheRequest()
    {
        var parse = CliApp.Build().Parse(["workspace", "shell", "open", "ws1", "--cwd", "src", "--cols", "80", "--rows", "24"]);
        Assert.Empty(parse.Errors);
        Assert.Equal(new ShellOpenRequest { Cwd = "src", Cols = 80, Rows = 24 }, ShellCommands.OpenRequest(parse));
        Assert.Equal(new ShellOpenRequest(), ShellCommands.OpenRequest(CliApp.Build().Parse(["workspace", "shell", "open", "ws1"])));
    }

    [Theory]
    [InlineData("workspace", "shell", "write", "ws1", "sh1", "--input", "ls", "--no-newline")]
    [InlineData("workspace", "shell", "read", "ws1", "sh1", "--cursor", "12", "--max-chars", "100", "--plain")]
    [InlineData("workspace", "shell", "signal", "ws1", "sh1", "--signal", "TERM")]
    [InlineData("workspace", "shell", "close", "ws1", "sh1")]
    [InlineData("workspace", "shell", "list", "ws1", "--json")]
    [InlineData("workspace", "service", "list", "ws1")]
    [InlineData("workspace", "service", "status", "ws1", "web")]
    [InlineData("workspace", "service", "logs", "ws1", "web", "--tail-lines", "50")]
    [InlineData("workspace", "service", "stop", "ws1", "web", "--json")]
    public void EveryCommandParses(params string[] args)
        => Assert.Empty(CliApp.Build().Parse(args).Errors);

    [Fact]
    public void ShellWriteNeedsInput()
        => Assert.NotEmpty(CliApp.Build().Parse(["workspace", "shell", "write", "ws1", "sh1"]).Errors);

    [Fact]
    public void TextLinesHaveTheDocumentedShape()
    {
        var web = new WorkspaceService
        {
            WorkspaceId = "0123456789ab", Name = "web", State = "running", Command = "python3 -m http.server 8080", Cwd = "/workspace",
            Readiness = ServiceReadiness.Http("http://127.0.0.1:8080/"), Pid = 42,
            PublishedPorts = [new PublishedPort { HostAddress = "127.0.0.1", HostPort = 18080, GuestPort = 8080, Protocol = "tcp", Service = "web" }],
        };
        Assert.Equal("[workspace-service-start] workspace_id=0123456789ab service=web state=running cwd=/workspace ready_type=http published=127.0.0.1:18080->8080/tcp", ServiceCommands.StartLine(web));
        var bare = web with { Readiness = null, PublishedPorts = [] };
        Assert.Equal("[workspace-service-start] workspace_id=0123456789ab service=web state=running cwd=/workspace", ServiceCommands.StartLine(bare));

        var done = bare with { Name = "job", State = "exited", Pid = null, ExitCode = 3, Reason = "exited with status 3" };
        Assert.Equal(
            "Workspace: 0123456789ab\nServices: 2 total, 1 running\n- web [running] cwd=/workspace readiness=http published=127.0.0.1:18080->8080/tcp\n- job [exited] cwd=/workspace exit_code=3\n",
            ServiceCommands.ListText(new WorkspaceServiceList { WorkspaceId = "0123456789ab", Services = [web, done] }));
        Assert.Equal(
            "Workspace: 0123456789ab\nService: job\nState: exited\nCommand: python3 -m http.server 8080\nCwd: /workspace\nExit code: 3\nReason: exited with status 3\n",
            ServiceCommands.StatusText(done));
        Assert.EndsWith("--- stdout ---\nhello\n--- stderr ---\n", ServiceCommands.LogsText(new WorkspaceServiceLogs { Service = done, Stdout = "hello", Stderr = "", TailLines = 200 }));

        var shell = new WorkspaceShell { WorkspaceId = "0123456789ab", ShellId = "sh1", State = "running", Cwd = "/workspace", Cols = 120, Rows = 30 };
        Assert.Equal("[workspace-shell-open] workspace_id=0123456789ab shell_id=sh1 state=running cwd=/workspace cols=120 rows=30", ShellCommands.ShellLine("workspace-shell-open", shell, withSize: true));
        Assert.Equal("[workspace-shell-read] workspace_id=0123456789ab shell_id=sh1 state=running cursor=5 next_cursor=9 dropped_chars=0 truncated=false",
            ShellCommands.ReadLine(new ShellReadResult { Shell = shell, Output = "abcd", Cursor = 5, NextCursor = 9 }));
    }

    /// <summary>A hostile guest names its service, command, reason and probe result with terminal escapes and line breaks: none reach the terminal, no line is forged.</summary>
    [Fact]
    public void GuestTextInHeadersCannotDriveTheTerminal()
    {
        string[] hostile =
        [
            "\u001b]0;owned\u0007", "\u001b[2J\u001b[H", "x\r\nService: forged", "\u009b31m", "a\u0000b", "\u007f", "tab\there", "line\nbreak",
            "\u001bP+q\u001b\\", "\u0008\u0008\u0008", "ok state=running",
        ];
        var tried = 0;
        var leaked = 0;
        var forged = 0;
        foreach (var text in hostile)
        {
            var service = new WorkspaceService
            {
                WorkspaceId = "0123456789ab", Name = text, State = text, Command = text, Cwd = text, Reason = text, LastProbe = text,
                Readiness = new ServiceReadiness(text, text),
            };
            var shell = new WorkspaceShell { WorkspaceId = "0123456789ab", ShellId = text, State = text, Cwd = text };
            string[] singleLines =
            [
                ServiceCommands.StartLine(service),
                ShellCommands.ShellLine("workspace-shell-open", shell, withSize: true),
                ShellCommands.ReadLine(new ShellReadResult { Shell = shell, Output = "", Cursor = 0, NextCursor = 0 }),
            ];
            string[] blocks =
            [
                ServiceCommands.StatusText(service),
                ServiceCommands.ListText(new WorkspaceServiceList { WorkspaceId = "0123456789ab", Services = [service] }),
                ServiceCommands.LogsText(new WorkspaceServiceLogs { Service = service, Stdout = text, Stderr = text }),
                ShellCommands.ListText("0123456789ab", [shell]),
            ];
            foreach (var line in singleLines)
            {
                tried++;
                leaked += line.Count(char.IsControl);
            }

            foreach (var block in blocks)
            {
                tried++;
                leaked += block.Count(c => char.IsControl(c) && c is not '\n' and not '\t');
            }

            // Headers keep one line per field: the status block has as many lines as with harmless text, the start line one service= field.
            var harmless = ServiceCommands.StatusText(service with { Name = "n", State = "s", Command = "c", Cwd = "d", Reason = "r", LastProbe = "p", Readiness = new("t", "t") });
            forged += Math.Abs(harmless.Count(c => c == '\n') - ServiceCommands.StatusText(service).Count(c => c == '\n'));
            forged += ServiceCommands.StartLine(service).Split(" service=").Length - 2;
        }

        Figures.Record("service/shell CLI text output", $"{hostile.Length} hostile guest strings in {tried} rendered lines and blocks, {leaked} control characters reached the terminal, {forged} forged lines");
        Assert.Equal(0, leaked);
        Assert.Equal(0, forged);
    }

    [Theory]
    [InlineData("service_name_invalid", "service", "start")]
    [InlineData("service_exists", "service", "start")]
    [InlineData("service_limit", "service", "start")]
    [InlineData("service_not_found", "service", "status")]
    [InlineData("service_not_ready", "service", "start")]
    [InlineData("service_exited", "service", "start")]
    [InlineData("readiness_invalid", "service", "start")]
    [InlineData("shell_not_found", "shell", "read")]
    [InlineData("shell_closed", "shell", "write")]
    [InlineData("shell_limit", "shell", "open")]
    [InlineData("shell_size_invalid", "shell", "open")]
    [InlineData("shell_input_too_large", "shell", "write")]
    [InlineData("signal_invalid", "shell", "signal")]
    public void EveryServiceAndShellCodeHasAHintNamingTheWorkspace(string code, string group, string verb)
    {
        var parse = CliApp.Build().Parse(["workspace", group, verb, "my-ws", "x"]);
        var hint = ErrorHints.For(code, null, parse);
        Assert.False(string.IsNullOrEmpty(hint), code);
        if (hint!.Contains("pyro workspace", StringComparison.Ordinal))
        {
            Assert.Contains("my-ws", hint);
        }
    }
}
