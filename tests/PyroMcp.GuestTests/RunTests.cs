using System.Runtime.InteropServices;
using System.Text.Json;

namespace PyroMcp.GuestTests;

/// <summary>
/// <c>pyro run</c> against real guests. Each one-shot run (also those killed by a signal, and the
/// SDK's) boots its own VM with scratch of its own, so they run in two lanes; the boot failure
/// test, which needs no guest to come up, comes after them.
/// </summary>
[TestCaseOrderer(LaneOrderer.Name, LaneOrderer.Assembly)]
public sealed class RunTests(Lanes lanes) : GuestTest, IClassFixture<Lanes>
{
    public override Task InitializeAsync()
    {
        lanes.Begin(GetType(), Lane);
        return base.InitializeAsync();
    }

    [Fact]
    [Lane(-1)]
    public Task GitVersionRunsInTheGuestWithPhasesOnStderr() => lanes.RunAsync(nameof(GitVersionRunsInTheGuestWithPhasesOnStderr), GitVersionRunsInTheGuestWithPhasesOnStderrLane);

    [Fact]
    [Lane(-1)]
    public Task TheCommandRunsInTheGuestKernelNotOnTheHost() => lanes.RunAsync(nameof(TheCommandRunsInTheGuestKernelNotOnTheHost), TheCommandRunsInTheGuestKernelNotOnTheHostLane);

    [Fact]
    [Lane(-1)]
    public Task ExitCodeAndStreamsAreTheGuestCommands() => lanes.RunAsync(nameof(ExitCodeAndStreamsAreTheGuestCommands), ExitCodeAndStreamsAreTheGuestCommandsLane);

    [Fact]
    [Lane(-1)]
    public Task AMissingProgramExits127LikeAShell() => lanes.RunAsync(nameof(AMissingProgramExits127LikeAShell), AMissingProgramExits127LikeAShellLane);

    [Fact]
    [Lane(-1)]
    public Task OneQuotedStringRunsThroughTheShellWithEnvAndCwd() => lanes.RunAsync(nameof(OneQuotedStringRunsThroughTheShellWithEnvAndCwd), OneQuotedStringRunsThroughTheShellWithEnvAndCwdLane);

    [Fact]
    [Lane(-1)]
    public Task OutputOverTheCapIsCutAndFlagged() => lanes.RunAsync(nameof(OutputOverTheCapIsCutAndFlagged), OutputOverTheCapIsCutAndFlaggedLane);

    [Fact]
    [Lane(-1)]
    public Task ATimeoutKillsTheWholeProcessGroup() => lanes.RunAsync(nameof(ATimeoutKillsTheWholeProcessGroup), ATimeoutKillsTheWholeProcessGroupLane);

    [Fact]
    [Lane(-1)]
    public Task OrphansAreReapedAndTheClockIsTheHosts() => lanes.RunAsync(nameof(OrphansAreReapedAndTheClockIsTheHosts), OrphansAreReapedAndTheClockIsTheHostsLane);

    [Fact]
    [Lane(-1)]
    public Task JsonPrintsOneStructuredResult() => lanes.RunAsync(nameof(JsonPrintsOneStructuredResult), JsonPrintsOneStructuredResultLane);

    [Fact]
    [Lane(-1)]
    public Task DemoPrintsTheLifecycleAsJson() => lanes.RunAsync(nameof(DemoPrintsTheLifecycleAsJson), DemoPrintsTheLifecycleAsJsonLane);

    private static Func<Task> Lane(string key) => key.Split('\u001f') switch
    {
        [nameof(ASignalTearsTheVmDown), var signal, var name, var exit] => () => ASignalTearsTheVmDownLane(
            int.Parse(signal, System.Globalization.CultureInfo.InvariantCulture), name, int.Parse(exit, System.Globalization.CultureInfo.InvariantCulture)),
        _ => LaneByName(key),
    };

    private static Func<Task> LaneByName(string key) => key switch
    {
        nameof(TheSdkRunsACommandAndStreamsOutput) => TheSdkRunsACommandAndStreamsOutputLane,
        nameof(GitVersionRunsInTheGuestWithPhasesOnStderr) => GitVersionRunsInTheGuestWithPhasesOnStderrLane,
        nameof(TheCommandRunsInTheGuestKernelNotOnTheHost) => TheCommandRunsInTheGuestKernelNotOnTheHostLane,
        nameof(ExitCodeAndStreamsAreTheGuestCommands) => ExitCodeAndStreamsAreTheGuestCommandsLane,
        nameof(AMissingProgramExits127LikeAShell) => AMissingProgramExits127LikeAShellLane,
        nameof(OneQuotedStringRunsThroughTheShellWithEnvAndCwd) => OneQuotedStringRunsThroughTheShellWithEnvAndCwdLane,
        nameof(OutputOverTheCapIsCutAndFlagged) => OutputOverTheCapIsCutAndFlaggedLane,
        nameof(ATimeoutKillsTheWholeProcessGroup) => ATimeoutKillsTheWholeProcessGroupLane,
        nameof(OrphansAreReapedAndTheClockIsTheHosts) => OrphansAreReapedAndTheClockIsTheHostsLane,
        nameof(JsonPrintsOneStructuredResult) => JsonPrintsOneStructuredResultLane,
        nameof(DemoPrintsTheLifecycleAsJson) => DemoPrintsTheLifecycleAsJsonLane,
        _ => throw new ArgumentException($"no lane {key}", nameof(key)),
    };

    private static async Task GitVersionRunsInTheGuestWithPhasesOnStderrLane()
    {
        await using var scratch = new LaneScratch("run");
        var result = await PyroCli.RunAsync(["run", "debian:12", "--", "git", "--version"], scratch.Env);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Matches(@"^git version \d+\.\d+", result.Stdout);
        Assert.DoesNotContain("[run]", result.Stdout);
        Assert.Contains("[run] phase=create environment=debian:12", result.Stderr);
        Assert.Matches(@"\[run\] phase=start vm_id=[0-9a-f]{12}", result.Stderr);
        Assert.Matches(@"\[run\] phase=execute vm_id=[0-9a-f]{12}", result.Stderr);
        Assert.Matches(@"\[run\] environment=debian:12 execution_mode=guest_virtio_serial exit_code=0 duration_ms=\d+", result.Stderr);
        await scratch.AssertCleanAsync();
    }

    private static async Task TheCommandRunsInTheGuestKernelNotOnTheHostLane()
    {
        await using var scratch = new LaneScratch("run");
        var result = await PyroCli.RunAsync(["run", "debian:12", "--json", "--", "sh", "-c", "uname -r; cat /proc/cmdline; grep PRETTY_NAME /etc/os-release; hostname"], scratch.Env);

        Assert.True(result.ExitCode == 0, result.ToString());
        var stdout = result.Json.GetProperty("stdout").GetString()!;
        var lines = stdout.Split('\n');
        var hostKernel = File.ReadAllText("/proc/sys/kernel/osrelease").Trim();
        // The pinned Debian cloud kernel from the runtime bundle, not whatever the host runs.
        Assert.Equal("6.1.0-56-cloud-amd64", lines[0]);
        Assert.Equal(lines[0], result.Json.GetProperty("guest_kernel").GetString());
        Assert.NotEqual(hostKernel, lines[0]);
        Assert.Contains("pyro.hostname=pyro-", lines[1]);
        Assert.DoesNotContain("pyro.hostname", File.ReadAllText("/proc/cmdline"));
        Assert.Equal("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"", lines[2]);
        Assert.Equal("pyro-" + result.Json.GetProperty("vm_id").GetString(), lines[3]);
        await scratch.AssertCleanAsync();
    }

    private static async Task ExitCodeAndStreamsAreTheGuestCommandsLane()
    {
        await using var scratch = new LaneScratch("run");
        var result = await PyroCli.RunAsync(["run", "debian:12", "--", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"], scratch.Env);

        Assert.Equal(7, result.ExitCode);
        Assert.Equal("to-stdout\n", result.Stdout);
        Assert.Contains("to-stderr\n", result.Stderr);
        Assert.DoesNotContain("to-stderr", result.Stdout);
        Assert.Contains("exit_code=7", result.Stderr);
        await scratch.AssertCleanAsync();
    }

    private static async Task AMissingProgramExits127LikeAShellLane()
    {
        await using var scratch = new LaneScratch("run");
        var result = await PyroCli.RunAsync(["run", "debian:12", "--", "no-such-program", "--flag"], scratch.Env);

        Assert.Equal(127, result.ExitCode);
        Assert.Contains("no-such-program: command not found", result.Stderr);
        await scratch.AssertCleanAsync();
    }

    private static async Task OneQuotedStringRunsThroughTheShellWithEnvAndCwdLane()
    {
        await using var scratch = new LaneScratch("run");
        var result = await PyroCli.RunAsync(["run", "debian:12", "--env", "GREETING=hello there", "--cwd", "/etc", "--", "echo \"$GREETING\" from $(pwd) | tr a-z A-Z"], scratch.Env);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("HELLO THERE FROM /ETC\n", result.Stdout);
        await scratch.AssertCleanAsync();
    }

    private static async Task OutputOverTheCapIsCutAndFlaggedLane()
    {
        await using var scratch = new LaneScratch("run");
        // 3 MiB on stdout against a 1 MiB cap; stderr stays small and whole.
        var result = await PyroCli.RunAsync(["run", "debian:12", "--json", "--", "sh", "-c", "head -c 3145728 /dev/zero | tr '\\0' x; echo done >&2"], scratch.Env);

        Assert.True(result.ExitCode == 0, result.ToString()[..Math.Min(2000, result.ToString().Length)]);
        var json = result.Json;
        Assert.True(json.GetProperty("stdout_truncated").GetBoolean());
        Assert.Equal(1024 * 1024, json.GetProperty("stdout").GetString()!.Length);
        Assert.False(json.GetProperty("stderr_truncated").GetBoolean());
        Assert.Equal("done\n", json.GetProperty("stderr").GetString());
        Assert.Contains("[run] warning=stdout_truncated", result.Stderr);
        await scratch.AssertCleanAsync();
    }

    private static async Task ATimeoutKillsTheWholeProcessGroupLane()
    {
        await using var scratch = new LaneScratch("run");
        // The backgrounded sleep keeps stdout open: the run can only end at the timeout if the
        // kill reaches the whole group, not just the shell.
        var result = await PyroCli.RunAsync(["run", "debian:12", "--timeout-seconds", "2", "--json", "--", "sh", "-c", "sleep 300 & echo started; sleep 300"], scratch.Env);

        Assert.Equal(124, result.ExitCode);
        var json = result.Json;
        Assert.True(json.GetProperty("timed_out").GetBoolean());
        Assert.Equal("SIGKILL", json.GetProperty("signal").GetString());
        Assert.Equal("started\n", json.GetProperty("stdout").GetString());
        await scratch.AssertCleanAsync();
    }

    private static async Task OrphansAreReapedAndTheClockIsTheHostsLane()
    {
        await using var scratch = new LaneScratch("run");
        // The subshell exits at once, so its background child is orphaned; when that child
        // exits, only PID 1 (tini) can reap it. Any zombie left would show in /proc.
        var script = "(sleep 0.3 &); sleep 2; grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l; date +%s; cat /proc/1/comm";
        var result = await PyroCli.RunAsync(["run", "debian:12", "--json", "--", "sh", "-c", script], scratch.Env);

        Assert.True(result.ExitCode == 0, result.ToString());
        var lines = result.Json.GetProperty("stdout").GetString()!.Split('\n');
        Assert.Equal("0", lines[0].Trim());
        var guestNow = long.Parse(lines[1]);
        var hostNow = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        Assert.InRange(guestNow, hostNow - 60, hostNow);
        Assert.Equal("tini", lines[2]);
        await scratch.AssertCleanAsync();
    }

    private static async Task JsonPrintsOneStructuredResultLane()
    {
        await using var scratch = new LaneScratch("run");
        var result = await PyroCli.RunAsync(["run", "debian:12", "--json", "--cold", "--", "sh", "-c", "printf out; printf err >&2; exit 3"], scratch.Env);

        Assert.Equal(3, result.ExitCode);
        var json = result.Json;
        Assert.Equal("debian:12", json.GetProperty("environment").GetString());
        Assert.Equal("guest_virtio_serial", json.GetProperty("execution_mode").GetString());
        Assert.Equal(3, json.GetProperty("exit_code").GetInt32());
        Assert.Equal("out", json.GetProperty("stdout").GetString());
        Assert.Equal("err", json.GetProperty("stderr").GetString());
        Assert.True(json.GetProperty("cleanup").GetProperty("deleted").GetBoolean());
        Assert.Equal(json.GetProperty("vm_id").GetString(), json.GetProperty("cleanup").GetProperty("vm_id").GetString());
        Assert.Equal("cold", json.GetProperty("start_mode").GetString());
        // The boot phases (a cold boot's): all five, none negative, and back to back within the run's own time
        // (QEMU's spawn to the first result lies inside the run's duration).
        var phases = json.GetProperty("boot_phases_ms");
        string[] names = ["qemu_start", "kernel", "init", "agent", "first_exec"];
        Assert.Equal(names, phases.EnumerateObject().Select(phase => phase.Name));
        var values = names.Select(name => phases.GetProperty(name).GetInt64()).ToArray();
        Assert.All(values, value => Assert.True(value >= 0, phases.ToString()));
        Assert.True(values.Sum() <= json.GetProperty("duration_ms").GetInt64(), json.ToString());
        // The guest reported its side: a real kernel, init and agent start take some time between them.
        Assert.True(values[1] + values[2] + values[3] > 0, phases.ToString());
        await scratch.AssertCleanAsync();
    }

    [Theory]
    [Lane(-1)]
    [InlineData(2, "SIGINT", 130)]
    [InlineData(15, "SIGTERM", 143)]
    public Task ASignalTearsTheVmDown(int signal, string name, int expectedExit)
        => lanes.RunAsync(LaneOrderer.Key(nameof(ASignalTearsTheVmDown), signal, name, expectedExit), () => ASignalTearsTheVmDownLane(signal, name, expectedExit));

    private static async Task ASignalTearsTheVmDownLane(int signal, string name, int expectedExit)
    {
        await using var scratch = new LaneScratch("signal");
        using var process = PyroCli.Start(["run", "debian:12", "--timeout-seconds", "120", "--", "sleep", "120"], scratch.Env);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = new System.Text.StringBuilder();
        var executing = new TaskCompletionSource();
        var reader = Task.Run(async () =>
        {
            while (await process.StandardError.ReadLineAsync() is { } line)
            {
                lock (stderr)
                {
                    stderr.AppendLine(line);
                }

                if (line.Contains("phase=execute"))
                {
                    executing.TrySetResult();
                }
            }
        });
        await executing.Task.WaitAsync(TimeSpan.FromMinutes(3));
        Assert.NotEmpty(Leftovers.QemuProcesses(scratch.RunDir, scratch.StateDir));

        Assert.Equal(0, Kill(process.Id, signal));
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        await reader;
        await stdout;

        Assert.True(expectedExit == process.ExitCode, $"{name}: exit {process.ExitCode}\n{stderr}");
        await scratch.AssertCleanAsync();
    }

    [Fact]
    public async Task BootFailuresCarryQemuAndConsoleEvidence()
    {
        // A boot deadline far below what any boot needs forces the failure path (a warm restore
        // can make it in a second, so the run boots cold).
        var result = await PyroCli.RunAsync(["run", "debian:12", "--cold", "--", "true"], new Dictionary<string, string> { ["PYRO_BOOT_TIMEOUT_SECONDS"] = "1" });

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("did not answer within 1 s", result.Stderr);
        Assert.Contains("--- QEMU stderr", result.Stderr);
        Assert.Contains("--- guest console", result.Stderr);
        Assert.Contains("error code: boot_timeout", result.Stderr);
    }

    private static async Task DemoPrintsTheLifecycleAsJsonLane()
    {
        await using var scratch = new LaneScratch("run");
        var result = await PyroCli.RunAsync(["demo"], scratch.Env);

        Assert.True(result.ExitCode == 0, result.ToString());
        var json = result.Json;
        Assert.Equal("git --version", json.GetProperty("command").GetString());
        Assert.Equal("debian:12", json.GetProperty("environment").GetString());
        Assert.Equal(0, json.GetProperty("exit_code").GetInt32());
        Assert.StartsWith("git version ", json.GetProperty("stdout").GetString());
        Assert.True(json.GetProperty("cleanup").GetProperty("deleted").GetBoolean());
        Assert.Equal("post_exec_cleanup", json.GetProperty("cleanup").GetProperty("reason").GetString());
        await scratch.AssertCleanAsync();
    }

    [Fact]
    [Lane(-1)]
    public Task TheSdkRunsACommandAndStreamsOutput() => lanes.RunAsync(nameof(TheSdkRunsACommandAndStreamsOutput), TheSdkRunsACommandAndStreamsOutputLane);

    private static async Task TheSdkRunsACommandAndStreamsOutputLane()
    {
        await using var scratch = new LaneScratch("sdk-run");
        var pyro = new Pyro(new PyroOptions { AgentPath = Repo.AgentPath, RunDir = scratch.RunDir, StateDir = scratch.StateDir });
        var streamed = new System.Text.StringBuilder();
        var phases = new List<string>();
        var result = await pyro.RunAsync(new RunRequest
        {
            Environment = "debian:12",
            Command = ["sh", "-c", "for i in 1 2 3; do echo line $i; done"],
            Progress = new SyncProgress<PyroProgress>(p => phases.Add(p.Phase)),
            OnStdout = data => { streamed.Append(System.Text.Encoding.UTF8.GetString(data.Span)); return ValueTask.CompletedTask; },
        });

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("line 1\nline 2\nline 3\n", result.Stdout);
        Assert.Equal(result.Stdout, streamed.ToString());
        Assert.Equal(["create", "start", "execute"], phases);
        var failed = await pyro.RunAsync(new RunRequest { Environment = "debian:12", Command = ["false"] });
        var thrown = Assert.Throws<CommandFailedException>(() => failed.ThrowOnFailure());
        Assert.Equal(1, thrown.Result.ExitCode);
        await scratch.AssertCleanAsync();
    }

    [DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);
}
