namespace PyroMcp.GuestTests;

/// <summary>The SDK example programs in examples/ run against real guests.</summary>
public sealed class SdkExamplesTests : GuestTest
{
    private static Task<ProcessResult> RunExample(string name, params string[] args)
    {
        var dll = Path.Combine(Repo.Root, "artifacts", "bin", name, Repo.Configuration, name + ".dll");
        Assert.True(File.Exists(dll), $"{dll} is not built: the solution build builds examples/{name}");
        var env = Repo.ScratchEnvironment;
        env["PYRO_AGENT_PATH"] = Repo.AgentPath;
        env["PYRO_SUPERVISOR_PATH"] = Repo.SupervisorPath;
        return Processes.RunAsync("dotnet", [dll, .. args], Repo.Root, env, TimeSpan.FromMinutes(5));
    }

    [Fact]
    public async Task SdkRunRunsOneCommand()
    {
        var result = await RunExample("SdkRun", "debian:12", "echo $((40+2)) && git --version");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.StartsWith("42\ngit version ", result.Stdout);
        Assert.Contains("exit_code=0 timed_out=False vm_deleted=True", result.Stderr);
    }

    [Fact]
    public async Task SdkWorkspaceSeedsPatchesAndDiffs()
    {
        var result = await RunExample("SdkWorkspace", "examples/repo", "examples/fix.patch");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("note.txt", result.Stdout);
        Assert.Contains("patched: src/app.py, CHANGES.md", result.Stdout);
        Assert.Contains("diff: 1 added, 1 modified, 0 deleted", result.Stdout);
        Assert.Contains("+    return f\"hello, {name}!\"", result.Stdout);
        Assert.Contains("[workspace-create] phase=ready", result.Stderr);
    }
}
