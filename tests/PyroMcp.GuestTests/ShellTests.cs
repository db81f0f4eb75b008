using System.Diagnostics;
using System.Text.Json;
using PyroMcp.TestKit;

namespace PyroMcp.GuestTests;

/// <summary>
/// Shells against a real guest: a PTY that keeps its state between calls, Ctrl-C by signal,
/// bad input refused; then the same through MCP, and services across a workspace stop and start.
/// </summary>
public sealed class ShellTests : GuestTest
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task AShellKeepsItsStateIsInterruptedWithIntAndServicesStopWithTheWorkspace()
    {
        var id = await CreateWorkspaceAsync();
        var opened = (await PyroCli.OkAsync("workspace", "shell", "open", id, "--json")).Json;
        var shell = opened.GetProperty("shell_id").GetString()!;
        Assert.Equal("running", opened.GetProperty("state").GetString());
        Assert.Equal(120, opened.GetProperty("cols").GetInt32());
        Assert.Equal(shell, (await PyroCli.OkAsync("workspace", "shell", "list", id, "--json")).Json[0].GetProperty("shell_id").GetString());

        var reader = new ShellReader(id, shell);
        await Write(id, shell, "tty; stty size");
        Assert.Matches(@"/dev/pts/\d+", await reader.WaitForAsync("/dev/pts/"));
        await reader.WaitForAsync("30 120");

        // State survives between calls: the directory and a variable.
        await Write(id, shell, "cd /tmp && KEEP=kept-value");
        await Write(id, shell, "echo \"where=$(pwd) keep=$KEEP\"");
        await reader.WaitForAsync("where=/tmp keep=kept-value");

        // Ctrl-C: INT reaches the foreground job (it dies of it: status 130), and the shell goes on.
        await Write(id, shell, "sleep 300");
        await WaitForProcessAsync(id, "sleep 300");
        await PyroCli.OkAsync("workspace", "shell", "signal", id, shell, "--signal", "INT");
        await Write(id, shell, "echo \"after-sleep=$?\"");
        await reader.WaitForAsync("after-sleep=130");
        await Write(id, shell, "echo alive-$((40+2))");
        await reader.WaitForAsync("alive-42");

        // The raw form keeps the terminal's carriage returns; --plain has none.
        var raw = (await PyroCli.OkAsync("workspace", "shell", "read", id, shell, "--json")).Json;
        Assert.Contains("\r\n", raw.GetProperty("output").GetString());
        var plain = (await PyroCli.OkAsync("workspace", "shell", "read", id, shell, "--plain", "--json")).Json;
        Assert.DoesNotContain("\r", plain.GetProperty("output").GetString());
        Assert.True(plain.GetProperty("next_cursor").GetInt64() > 0);

        var status = await PyroCli.OkAsync("workspace", "status", id);
        Assert.Contains("Shells: 1 open", status.Stdout);

        // Bad input: each refused with its code, the shell untouched.
        await ErrorAsync(["workspace", "shell", "read", id, "sh-00000000", "--json"], "shell_not_found");
        await ErrorAsync(["workspace", "shell", "signal", id, shell, "--signal", "NOPE", "--json"], "signal_invalid");
        await ErrorAsync(["workspace", "shell", "write", id, shell, "--input", new string('x', 70 * 1024), "--json"], "shell_input_too_large");
        await Write(id, shell, "echo still-$((1+1))");
        await reader.WaitForAsync("still-2");

        var closed = (await PyroCli.OkAsync("workspace", "shell", "close", id, shell, "--json")).Json;
        Assert.Equal("closed", closed.GetProperty("state").GetString());
        await ErrorAsync(["workspace", "shell", "write", id, shell, "--input", "echo x", "--json"], "shell_not_found");

        // The same through MCP.
        await using (var mcp = await InProcessMcp.StartAsync("workspace-full"))
        {
            var mcpShell = (await mcp.OkAsync("shell_open", new() { ["workspace_id"] = id, ["cwd"] = "/tmp" })).GetProperty("shell_id").GetString()!;
            await mcp.OkAsync("shell_write", new() { ["workspace_id"] = id, ["shell_id"] = mcpShell, ["input"] = "echo mcp-$((6*7)) from $(pwd)" });
            var text = "";
            long cursor = 0;
            var clock = Stopwatch.StartNew();
            while (!text.Contains("mcp-42 from /tmp", StringComparison.Ordinal))
            {
                Assert.True(clock.Elapsed < Deadline, "MCP shell output never showed the echo: " + text);
                var read = await mcp.OkAsync("shell_read", new() { ["workspace_id"] = id, ["shell_id"] = mcpShell, ["cursor"] = cursor });
                text += read.GetProperty("output").GetString();
                cursor = read.GetProperty("next_cursor").GetInt64();
                await Task.Delay(200);
            }

            Assert.DoesNotContain("\u001b", text);
            await mcp.OkAsync("shell_signal", new() { ["workspace_id"] = id, ["shell_id"] = mcpShell, ["signal_name"] = "INT" });
            await mcp.OkAsync("shell_close", new() { ["workspace_id"] = id, ["shell_id"] = mcpShell });

            var service = await mcp.OkAsync("service_start", new()
            {
                ["workspace_id"] = id,
                ["service_name"] = "ticker",
                ["command"] = "sleep 1; touch .ticker-ready; while true; do date +tick-%s; sleep 1; done",
                ["readiness"] = new Dictionary<string, object?> { ["type"] = "command", ["command"] = "test -f .ticker-ready" },
            });
            Assert.Equal("running", service.GetProperty("state").GetString());
            var listed = await mcp.OkAsync("service_list", new() { ["workspace_id"] = id });
            Assert.Equal("ticker", listed.GetProperty("services")[0].GetProperty("name").GetString());
            var logs = await mcp.OkAsync("service_logs", new() { ["workspace_id"] = id, ["service_name"] = "ticker", ["tail_lines"] = 5 });
            Assert.Contains("tick-", logs.GetProperty("stdout").GetString());
            await mcp.ErrorAsync("service_start", "service_exists", new() { ["workspace_id"] = id, ["service_name"] = "ticker", ["command"] = "sleep 1" });
            await mcp.ErrorAsync("service_status", "service_not_found", new() { ["workspace_id"] = id, ["service_name"] = "nope" });
        }

        // kill -9 of the CLI while it waits for readiness: the supervisor sees its client gone and
        // cancels the start in the guest, so the service ends failed and nothing of it stays.
        using (var waiting = PyroCli.Start(["workspace", "service", "start", id, "never", "--ready-file", ".never", "--ready-timeout-seconds", "600", "--", "sh", "-c", "exec sleep 4343"]))
        {
            await WaitForProcessAsync(id, "sleep 4343");
            waiting.Kill();
            await waiting.WaitForExitAsync();
        }

        var abandoned = await WaitForServiceStateAsync(id, "never", "failed");
        var left = await CountProcessesAsync(id, "sleep 4343");
        Assert.Equal(0, left);
        Figures.Record("kill -9 during service start", $"the CLI killed while it waited for readiness: service ended {abandoned.GetProperty("state").GetString()}, {left} of its processes left in the guest");

        // A workspace stop ends its services and shells; after start they are listed as stopped, not restarted.
        await PyroCli.OkAsync("workspace", "shell", "open", id);
        Assert.True(await CountProcessesAsync(id, "date +tick") > 0, "the ticker service is not running before the stop");
        await PyroCli.OkAsync("workspace", "stop", id);
        var started = await PyroCli.RunAsync(["workspace", "start", id], timeout: TimeSpan.FromMinutes(5));
        Assert.True(started.ExitCode == 0, started.ToString());
        var after = (await PyroCli.OkAsync("workspace", "service", "status", id, "ticker", "--json")).Json;
        Assert.Equal("stopped", after.GetProperty("state").GetString());
        Assert.Equal(0, await CountProcessesAsync(id, "date +tick"));
        Assert.Empty((await PyroCli.OkAsync("workspace", "shell", "list", id, "--json")).Json.EnumerateArray());
        var counts = (await PyroCli.OkAsync("workspace", "status", id, "--json")).Json;
        Assert.Equal(0, counts.GetProperty("running_services").GetInt32());
        Assert.Equal(0, counts.GetProperty("open_shells").GetInt32());
    }

    private static async Task<JsonElement> WaitForServiceStateAsync(string id, string name, string state)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var service = (await PyroCli.OkAsync("workspace", "service", "status", id, name, "--json")).Json;
            if (service.GetProperty("state").GetString() == state)
            {
                return service;
            }

            Assert.True(clock.Elapsed < Deadline, $"service {name} did not become {state}: {service}");
            await Task.Delay(500);
        }
    }

    private static async Task Write(string id, string shell, string input)
        => await PyroCli.OkAsync("workspace", "shell", "write", id, shell, "--input", input);

    private static async Task ErrorAsync(string[] args, string code)
    {
        var result = await PyroCli.RunAsync(args);
        Assert.True(result.ExitCode != 0, $"pyro {string.Join(' ', args.Select(a => a.Length > 80 ? a[..80] + "..." : a))} should have failed with {code}\n{result}");
        Assert.Equal(code, result.Json.GetProperty("error").GetProperty("code").GetString());
    }

    private async Task WaitForProcessAsync(string id, string commandLine)
    {
        var clock = Stopwatch.StartNew();
        while (await CountProcessesAsync(id, commandLine) == 0)
        {
            Assert.True(clock.Elapsed < Deadline, $"'{commandLine}' never ran in the guest");
            await Task.Delay(300);
        }
    }

    /// <summary>Processes in the guest whose command line contains <paramref name="text"/> (the search itself not counted).</summary>
    private static async Task<int> CountProcessesAsync(string id, string text)
    {
        // "[s]leep 4242" matches "sleep 4242" but not the pattern in the searching shell's own command line.
        var pattern = "[" + text[0] + "]" + text[1..];
        var output = await ExecAsync(id, $"for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\"; echo; done 2>/dev/null | grep -c '{pattern}' || true");
        return int.Parse(output.Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    private static async Task<string> ExecAsync(string id, string script)
    {
        var result = await PyroCli.RunAsync(["workspace", "exec", id, "--json", "--timeout-seconds", "120", "--", "sh", "-c", script], timeout: TimeSpan.FromMinutes(3));
        Assert.True(result.ExitCode == 0, result.ToString());
        return result.Json.GetProperty("stdout").GetString()!;
    }

    /// <summary>Reads a shell from where it left off, with --plain, until a text shows up.</summary>
    private sealed class ShellReader(string id, string shell)
    {
        private long _cursor;
        private int _searched;

        internal string Seen { get; private set; } = "";

        /// <summary>The line from <paramref name="text"/> on, once it appears after the previous match.</summary>
        internal async Task<string> WaitForAsync(string text)
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                var read = (await PyroCli.OkAsync("workspace", "shell", "read", id, shell, "--cursor", _cursor.ToString(System.Globalization.CultureInfo.InvariantCulture), "--plain", "--json")).Json;
                Seen += read.GetProperty("output").GetString();
                _cursor = read.GetProperty("next_cursor").GetInt64();
                var at = Seen.IndexOf(text, _searched, StringComparison.Ordinal);
                if (at >= 0)
                {
                    _searched = at + text.Length;
                    var end = Seen.IndexOf('\n', at);
                    return Seen[at..(end < 0 ? Seen.Length : end)];
                }

                Assert.True(clock.Elapsed < Deadline, $"the shell never printed '{text}'; it printed:\n{Seen}");
                await Task.Delay(300);
            }
        }
    }
}
