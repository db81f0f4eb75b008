using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using PyroMcp.GuestAgent.Shells;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent.Tests;

/// <summary>shell.* through a real <see cref="AgentServer"/>: real PTYs and a real shell on this host.</summary>
public sealed class ShellTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private AgentHarness _agent = null!;

    public Task InitializeAsync()
    {
        _agent = new AgentHarness("/bin/busybox");
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _agent.DisposeAsync();

    [Fact]
    public async Task StateIsKeptBetweenWritesAndTheShellHasAControllingTty()
    {
        var shell = await OpenAsync();
        Assert.Equal(("running", 120, 30), (shell.State, shell.Cols, shell.Rows));
        Assert.Matches("^sh-[0-9a-f]{8}$", shell.Id);

        await WriteAsync(shell.Id, "cd /tmp");
        await WriteAsync(shell.Id, "pwd");
        await WaitForAsync(shell.Id, new Regex(@"^/tmp\r?$", RegexOptions.Multiline));
        await WriteAsync(shell.Id, "tty; stty size");
        var output = await WaitForAsync(shell.Id, new Regex(@"^/dev/pts/\d+\r?\n30 120\r?$", RegexOptions.Multiline));
        Assert.DoesNotContain("not a tty", output, StringComparison.Ordinal);
        await WriteAsync(shell.Id, "echo $TERM");
        await WaitForAsync(shell.Id, new Regex(@"^xterm-256color\r?$", RegexOptions.Multiline));
    }

    [Fact]
    public async Task InterruptEndsTheForegroundJobAndTheShellAnswers()
    {
        var shell = await OpenAsync();
        await WriteAsync(shell.Id, "sleep 100");
        var sleeper = await WaitUntilAsync(() => SessionMembers(shell.Pid).FirstOrDefault(p => Comm(p) == "sleep"), p => p > 0);

        var signalled = (await _agent.ShellAsync(AgentOps.ShellSignal, new ShellRequest { Id = shell.Id, Signal = "sigint" })).Ok.Shell!;
        Assert.Equal("running", signalled.State);
        await WriteAsync(shell.Id, "echo al$((0))ive");

        await WaitForAsync(shell.Id, new Regex(@"^al0ive\r?$", RegexOptions.Multiline));
        Assert.NotEqual('S', ServiceTests.Stat(sleeper)?.State ?? 'X');
    }

    [Fact]
    public async Task TheRingDropsOldOutputAndReadSaysHowMuch()
    {
        var shell = await OpenAsync();
        await WriteAsync(shell.Id, "yes | head -c 1200000; echo $((40+2))DONE");
        await WaitUntilAsync(async () => await ReadTailAsync(shell.Id), tail => tail.Contains("42DONE", StringComparison.Ordinal));

        var all = (await _agent.ShellAsync(AgentOps.ShellRead, new ShellRequest { Id = shell.Id, Cursor = 0 })).Ok.ShellOutput!;
        var total = all.Shell.OutputChars;
        Assert.True(total > ShellSession.RingChars, $"{total} chars of output");
        Assert.Equal(total - ShellSession.RingChars, all.Cursor);
        Assert.Equal(all.Cursor, all.DroppedChars);
        Assert.Equal(all.Cursor + all.Output.Length, all.NextCursor);
        Assert.True(all.Truncated);
        Assert.StartsWith("y\r\n", all.Output.TrimStart('\r', '\n'), StringComparison.Ordinal);

        var past = await _agent.ShellAsync(AgentOps.ShellRead, new ShellRequest { Id = shell.Id, Cursor = total + 10 });
        Assert.Equal("bad_request", past.FailureCode);
        Assert.Contains($"cursor {total + 10} is past the end of the output", past.Error!.Message, StringComparison.Ordinal);

        var biggest = (await _agent.ShellAsync(AgentOps.ShellRead, new ShellRequest { Id = shell.Id, Cursor = all.Cursor, MaxChars = ShellRequest.MaxReadChars })).Ok;
        Assert.True(ProtocolJsonContext.Encode(biggest).Length <= FrameCodec.MaxPayloadLength, "the largest read fits a frame");
        Figures.Record("shell ring", $"{total} chars written, {all.DroppedChars} dropped, {ShellSession.RingChars} kept, largest read {biggest.ShellOutput!.Output.Length} chars in {ProtocolJsonContext.Encode(biggest).Length} bytes");
    }

    [Fact]
    public async Task BadRequestsGetTheirCodes()
    {
        var shell = await OpenAsync();
        Assert.Equal("shell_input_too_large", (await _agent.ShellAsync(AgentOps.ShellWrite, new ShellRequest { Id = shell.Id, Input = new string('x', ShellRequest.MaxInputBytes + 1) })).FailureCode);
        Assert.Equal("shell_not_found", (await _agent.ShellAsync(AgentOps.ShellWrite, new ShellRequest { Id = "sh-00000000", Input = "ls" })).FailureCode);
        Assert.Equal("shell_not_found", (await _agent.ShellAsync(AgentOps.ShellRead, new ShellRequest { Id = "../x" })).FailureCode);
        Assert.Equal("signal_invalid", (await _agent.ShellAsync(AgentOps.ShellSignal, new ShellRequest { Id = shell.Id, Signal = "SEGV" })).FailureCode);
        Assert.Equal("signal_invalid", (await _agent.ShellAsync(AgentOps.ShellSignal, new ShellRequest { Id = shell.Id })).FailureCode);
        Assert.Equal("shell_size_invalid", (await _agent.ShellAsync(AgentOps.ShellOpen, new ShellRequest { Cols = 9 })).FailureCode);
        Assert.Equal("shell_size_invalid", (await _agent.ShellAsync(AgentOps.ShellOpen, new ShellRequest { Rows = 1001 })).FailureCode);
        Assert.Equal("cwd_not_found", (await _agent.ShellAsync(AgentOps.ShellOpen, new ShellRequest { Cwd = "missing" })).FailureCode);
        Assert.Equal("bad_request", (await _agent.ShellAsync(AgentOps.ShellRead, new ShellRequest { Id = shell.Id, MaxChars = -1 })).FailureCode);

        for (var open = 1; open < ShellManager.MaxShells; open++)
        {
            await OpenAsync();
        }

        Assert.Equal("shell_limit", (await _agent.ShellAsync(AgentOps.ShellOpen, new ShellRequest { Env = new Dictionary<string, string> { ["HOME"] = _agent.Root } })).FailureCode);
        Assert.Equal(ShellManager.MaxShells, (await _agent.ShellAsync(AgentOps.ShellList, new ShellRequest())).Ok.Shells!.Count);
    }

    [Fact]
    public async Task ExitIsNoticedAndTheOutputStaysReadable()
    {
        var shell = await OpenAsync();
        await WriteAsync(shell.Id, "echo bye$((1+1)); exit 3");

        var exited = await WaitUntilAsync(async () => (await _agent.ShellAsync(AgentOps.ShellList, new ShellRequest())).Ok.Shells!.Single(), s => s.State == "exited");
        Assert.Equal(3, exited.ExitCode);
        var output = (await _agent.ShellAsync(AgentOps.ShellRead, new ShellRequest { Id = shell.Id })).Ok.ShellOutput!;
        Assert.Matches(new Regex(@"^bye2\r?$", RegexOptions.Multiline), Plain(output.Output));
        Assert.Equal("shell_closed", (await _agent.ShellAsync(AgentOps.ShellWrite, new ShellRequest { Id = shell.Id, Input = "ls" })).FailureCode);
        Assert.Equal("closed", (await _agent.ShellAsync(AgentOps.ShellClose, new ShellRequest { Id = shell.Id })).Ok.Shell!.State);
        Assert.Equal("shell_not_found", (await _agent.ShellAsync(AgentOps.ShellRead, new ShellRequest { Id = shell.Id })).FailureCode);
    }

    [Fact]
    public async Task CloseKillsABackgroundJob()
    {
        var shell = await OpenAsync();
        await WriteAsync(shell.Id, "trap '' HUP; sleep 1000 & echo bg=$!");
        var output = await WaitForAsync(shell.Id, new Regex(@"^bg=(\d+)\r?$", RegexOptions.Multiline));
        var job = int.Parse(Regex.Match(output, @"^bg=(\d+)\r?$", RegexOptions.Multiline).Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.Equal(shell.Pid, ServiceTests.Stat(job)?.Session);

        var closed = (await _agent.ShellAsync(AgentOps.ShellClose, new ShellRequest { Id = shell.Id })).Ok.Shell!;

        Assert.Equal("closed", closed.State);
        await WaitUntilAsync(() => ServiceTests.Stat(job)?.State ?? 'X', state => state is 'X' or 'Z');
        Assert.Empty(SessionMembers(shell.Pid));
        Assert.Empty((await _agent.ShellAsync(AgentOps.ShellList, new ShellRequest())).Ok.Shells!);
    }

    /// <summary>
    /// Opens a shell whose HOME is the workspace: this host's own ~/.bashrc (which may run slow
    /// or lock-taking tools) stays out of the tests.
    /// </summary>
    private async Task<ShellInfo> OpenAsync()
        => (await _agent.ShellAsync(AgentOps.ShellOpen, new ShellRequest { Env = new Dictionary<string, string> { ["HOME"] = _agent.Root } })).Ok.Shell!;

    private async Task WriteAsync(string id, string line)
        => Assert.Equal("running", (await _agent.ShellAsync(AgentOps.ShellWrite, new ShellRequest { Id = id, Input = line, AppendNewline = true })).Ok.Shell!.State);

    /// <summary>Reads the whole output again and again until <paramref name="pattern"/> matches it.</summary>
    private Task<string> WaitForAsync(string id, Regex pattern)
        => WaitUntilAsync(async () => Plain(await ReadAllAsync(id)), pattern.IsMatch);

    /// <summary>The text without terminal escapes (bash's bracketed-paste toggles, titles, colours).</summary>
    private static string Plain(string output) => Regex.Replace(output, @"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07\x1b]*(\x07|\x1b\\))", "").Replace("\r", "", StringComparison.Ordinal);

    private async Task<string> ReadAllAsync(string id)
    {
        var text = new StringBuilder();
        long cursor = 0;
        while (true)
        {
            var output = (await _agent.ShellAsync(AgentOps.ShellRead, new ShellRequest { Id = id, Cursor = cursor })).Ok.ShellOutput!;
            text.Append(output.Output);
            cursor = output.NextCursor;
            if (!output.Truncated)
            {
                return text.ToString();
            }
        }
    }

    private async Task<string> ReadTailAsync(string id)
    {
        var info = (await _agent.ShellAsync(AgentOps.ShellList, new ShellRequest())).Ok.Shells!.Single(s => s.Id == id);
        return (await _agent.ShellAsync(AgentOps.ShellRead, new ShellRequest { Id = id, Cursor = Math.Max(0, info.OutputChars - 200) })).Ok.ShellOutput!.Output;
    }

    private static Task<T> WaitUntilAsync<T>(Func<T> probe, Func<T, bool> done) => WaitUntilAsync(() => Task.FromResult(probe()), done);

    private static async Task<T> WaitUntilAsync<T>(Func<Task<T>> probe, Func<T, bool> done)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var value = await probe();
            if (done(value))
            {
                return value;
            }

            if (clock.Elapsed > Deadline)
            {
                throw new Xunit.Sdk.XunitException($"still not there after {Deadline.TotalSeconds} s; last: {Tail(value?.ToString())}");
            }

            await Task.Delay(50);
        }
    }

    private static string Tail(string? text) => text is null ? "null" : text.Length > 2000 ? text[^2000..] : text;

    private static List<int> SessionMembers(int session)
        => [.. Directory.GetDirectories("/proc")
            .Select(d => int.TryParse(Path.GetFileName(d), out var pid) ? pid : 0)
            .Where(pid => pid > 0 && ServiceTests.Stat(pid) is { } stat && stat.Session == session && stat.State != 'Z')];

    private static string Comm(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/comm").Trim();
        }
        catch (IOException)
        {
            return "";
        }
    }
}
