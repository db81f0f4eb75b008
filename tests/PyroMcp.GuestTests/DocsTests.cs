using System.Text.RegularExpressions;

namespace PyroMcp.GuestTests;

/// <summary>Every command shown in a bash block of the docs is run here, or names the test that runs it.</summary>
public sealed partial class DocsTests : GuestTest
{
    /// <summary>Commands run elsewhere, and where.</summary>
    private static readonly Dictionary<string, string> RunElsewhere = new()
    {
        ["./test.sh"] = "the command that runs this very test (CI runs it as .ci/run)",
        ["dotnet pack src/PyroMcp.Cli -c Release -o artifacts/package"] = nameof(PackagingTests.TheToolPackageInstallsAndRuns),
        ["dotnet tool install --global pyro-mcp --add-source artifacts/package"] = nameof(PackagingTests.TheToolPackageInstallsAndRuns) + " (into a tool path, not the machine)",
    };

    public static TheoryData<string, string> Commands()
    {
        var data = new TheoryData<string, string>();
        foreach (var doc in new[] { "README.md", "docs/install.md", "docs/architecture.md", "docs/workspaces.md", "bench/README.md", "CHANGELOG.md", "examples/README.md" })
        {
            var text = File.ReadAllText(Path.Combine(Repo.Root, doc));
            foreach (Match block in BashBlock().Matches(text))
            {
                // A block that starts with '# script' is one walkthrough: its lines run together, in order.
                if (block.Groups[1].Value.StartsWith("# script\n", StringComparison.Ordinal))
                {
                    data.Add(doc, block.Groups[1].Value);
                    continue;
                }

                foreach (var line in block.Groups[1].Value.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')))
                {
                    data.Add(doc, line);
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Commands))]
    public async Task EveryDocumentedCommandWorks(string doc, string command)
    {
        if (RunElsewhere.ContainsKey(command))
        {
            return;
        }

        var isScript = command.StartsWith("# script\n", StringComparison.Ordinal);
        Assert.True(isScript || command.StartsWith("./pyro ") || command.StartsWith("pyro ") || command.StartsWith("dotnet run -c Release --project bench/PyroMcp.Bench"),
            $"{doc}: '{command}' is neither a pyro command nor listed with the test that runs it");

        // `pyro` is the installed tool; the built CLI is the same program.
        var script = $"set -euo pipefail\npyro() {{ dotnet '{Repo.CliDll}' \"$@\"; }}\n{command}";
        var result = await Processes.RunAsync("bash", ["-c", script], Repo.Root, Repo.ScratchEnvironment, TimeSpan.FromMinutes(10));
        Assert.True(result.ExitCode == 0, $"{doc}: '{command}' exited {result.ExitCode}\n{result.Stdout}\n{result.Stderr}");
        if (command.Contains("bench/PyroMcp.Bench"))
        {
            Assert.Matches(@"ratio cold_run / bare_boot = \d+\.\d\d", result.Stdout);
        }
    }

    [GeneratedRegex("```bash\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex BashBlock();
}
