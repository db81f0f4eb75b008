namespace PyroMcp.GuestTests;

/// <summary>The SDK example programs in examples/ run against real guests; the one-shot run in a lane of its own beside the workspace example.</summary>
[TestCaseOrderer(LaneOrderer.Name, LaneOrderer.Assembly)]
public sealed class SdkExamplesTests(Lanes lanes) : GuestTest, IClassFixture<Lanes>
{
    public override Task InitializeAsync()
    {
        lanes.Begin(GetType(), key => key == nameof(SdkRunRunsOneCommand) ? SdkRunLaneAsync : throw new ArgumentException($"no lane {key}", nameof(key)));
        return base.InitializeAsync();
    }

    private static Task<ProcessResult> RunExample(string name, Dictionary<string, string>? scratch, params string[] args)
    {
        var dll = Path.Combine(Repo.Root, "artifacts", "bin", name, Repo.Configuration, name + ".dll");
        Assert.True(File.Exists(dll), $"{dll} is not built: the solution build builds examples/{name}");
        var env = scratch ?? Repo.ScratchEnvironment;
        env["PYRO_AGENT_PATH"] = Repo.AgentPath;
        env["PYRO_SUPERVISOR_PATH"] = Repo.SupervisorPath;
        return Processes.RunAsync("dotnet", [dll, .. args], Repo.Root, env, TimeSpan.FromMinutes(5));
    }

    [Fact]
    [Lane(1)]
    public Task SdkRunRunsOneCommand() => lanes.RunAsync(nameof(SdkRunRunsOneCommand), SdkRunLaneAsync);

    private static async Task SdkRunLaneAsync()
    {
        await using var scratch = new LaneScratch("sdk-example-run");
        var result = await RunExample("SdkRun", scratch.Env, "debian:12", "echo $((40+2)) && git --version");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.StartsWith("42\ngit version ", result.Stdout);
        Assert.Contains("exit_code=0 timed_out=False vm_deleted=True", result.Stderr);
        await scratch.AssertCleanAsync();
    }

    [Fact]
    public async Task SdkWorkspaceSeedsPatchesAndDiffs()
    {
        var result = await RunExample("SdkWorkspace", null, "examples/repo", "examples/fix.patch");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("note.txt", result.Stdout);
        Assert.Contains("patched: src/app.py, CHANGES.md", result.Stdout);
        Assert.Contains("diff: 1 added, 1 modified, 0 deleted", result.Stdout);
        Assert.Contains("+    return f\"hello, {name}!\"", result.Stdout);
        Assert.Contains("[workspace-create] phase=ready", result.Stderr);
    }
}
