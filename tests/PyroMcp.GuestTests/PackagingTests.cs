namespace PyroMcp.GuestTests;

/// <summary>The .NET tool package: packs, installs into a tool path, and runs.</summary>
public sealed class PackagingTests : GuestTest
{
    [Fact]
    public async Task TheToolPackageInstallsAndRuns()
    {
        var work = Directory.CreateTempSubdirectory("pyro-pack-").FullName;
        try
        {
            var feed = Path.Combine(work, "feed");
            var tools = Path.Combine(work, "tools");
            await Dotnet("pack", Path.Combine(Repo.Root, "src", "PyroMcp.Cli", "PyroMcp.Cli.csproj"), "-c", "Release", "-o", feed, "-nologo");
            Assert.Single(Directory.GetFiles(feed, "pyro-mcp.*.nupkg"));
            await Dotnet("tool", "install", "pyro-mcp", "--tool-path", tools, "--add-source", feed, "--version", typeof(Pyro).Assembly.GetName().Version!.ToString(3));

            var pyro = Path.Combine(tools, "pyro");
            var version = await Run(pyro, "--version");
            Assert.Equal(typeof(Pyro).Assembly.GetName().Version!.ToString(3), version.Trim());
            var doctor = await Run(pyro, "doctor", "--json");
            using var json = System.Text.Json.JsonDocument.Parse(doctor);
            Assert.Equal("PASS", json.RootElement.GetProperty("runtime").GetString());
            // The package carries the guest agent, so an installed tool can boot guests.
            Assert.True(json.RootElement.GetProperty("agent_present").GetBoolean());
            Assert.StartsWith(tools, json.RootElement.GetProperty("agent_path").GetString());
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    private static Task<string> Dotnet(params string[] args) => Run("dotnet", args);

    private static async Task<string> Run(string file, params string[] args)
    {
        var result = await Processes.RunAsync(file, args, timeout: TimeSpan.FromMinutes(5));
        Assert.True(result.ExitCode == 0, $"{file} {string.Join(' ', args)} exited {result.ExitCode}\n{result.Stdout}\n{result.Stderr}");
        return result.Stdout;
    }
}
