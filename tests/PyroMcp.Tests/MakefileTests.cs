namespace PyroMcp.Tests;

/// <summary>
/// The Makefile's targets are thin wrappers over the scripts: <c>make -n TARGET</c> (which prints
/// the commands without running them) works for each and names the script or command it wraps.
/// Running them for real is other tests' business: UseCaseTests, DocsTests (the bench) and test.sh itself.
/// </summary>
public sealed class MakefileTests
{
    public static TheoryData<string, string> Targets() => new()
    {
        { "help", "grep" },
        { "setup", "source scripts/host-setup.sh && pyro_ensure_host && pyro_build" },
        { "check", "dotnet test tests/PyroMcp.Tests -c Release --no-build" },
        { "test", "./test.sh" },
        { "bench", "dotnet run -c Release --project bench/PyroMcp.Bench -- --json" },
        { "smoke-use-cases", "scripts/smoke-use-cases.sh" },
    };

    [Theory]
    [MemberData(nameof(Targets))]
    public async Task EachTargetWrapsItsScript(string target, string wraps)
    {
        Assert.True(File.Exists("/usr/bin/make") || File.Exists("/bin/make"), "make is not installed: ./test.sh installs it (apt-get install make)");
        var dry = await Processes.RunAsync("make", ["-n", target], Repo.Root);
        Assert.True(dry.ExitCode == 0, $"make -n {target}: {dry}");
        Assert.Contains(wraps, dry.Stdout);
    }

    [Fact]
    public void TheScriptsItCallsExistAndTheBenchCommandIsTheDocumentedOne()
    {
        Assert.True(File.Exists(Path.Combine(Repo.Root, "scripts/smoke-use-cases.sh")));
        Assert.True(File.GetUnixFileMode(Path.Combine(Repo.Root, "scripts/smoke-use-cases.sh")).HasFlag(UnixFileMode.UserExecute), "scripts/smoke-use-cases.sh is not executable");
        Assert.Contains("dotnet run -c Release --project bench/PyroMcp.Bench -- --json", File.ReadAllText(Path.Combine(Repo.Root, "bench/README.md")));
        Assert.Contains("--filter \"Category=UseCase\"", File.ReadAllText(Path.Combine(Repo.Root, "scripts/smoke-use-cases.sh")));
    }

    [Fact]
    public async Task HelpListsEveryTarget()
    {
        var help = await Processes.RunAsync("make", ["help"], Repo.Root);
        Assert.True(help.ExitCode == 0, help.ToString());
        foreach (var target in Targets().Select(t => (string)t[0]))
        {
            Assert.Contains(target + " ", help.Stdout);
        }
    }
}
