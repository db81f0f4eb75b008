using System.Diagnostics;
using System.Text.Json;

namespace PyroMcp.GuestTests;

/// <summary>The MCP host configs in examples/ parse and start <c>pyro mcp serve</c>.</summary>
public sealed class McpConfigExamplesTests
{
    [Theory]
    [InlineData("examples/mcp-config.json", "pyro")]
    [InlineData("examples/mcp-config.checkout.json", "/path/to/checkout/pyro")]
    public void GenericConfigsNameMcpServe(string file, string command)
    {
        var server = JsonDocument.Parse(File.ReadAllText(Path.Combine(Repo.Root, file))).RootElement.GetProperty("mcpServers").GetProperty("pyro");
        Assert.Equal(command, server.GetProperty("command").GetString());
        var args = server.GetProperty("args").EnumerateArray().Select(a => a.GetString()).ToList();
        Assert.Equal(["mcp", "serve"], args[..2]);
        Assert.Equal("workspace-core", args[args.IndexOf("--profile") + 1]);
    }

    [Fact]
    public void OpenCodeConfigNamesMcpServe()
    {
        var pyro = JsonDocument.Parse(File.ReadAllText(Path.Combine(Repo.Root, "examples/opencode.json"))).RootElement.GetProperty("mcp").GetProperty("pyro");
        Assert.Equal("local", pyro.GetProperty("type").GetString());
        Assert.Equal(["pyro", "mcp", "serve", "--profile", "workspace-core"], pyro.GetProperty("command").EnumerateArray().Select(a => a.GetString()));
        Assert.True(pyro.GetProperty("enabled").GetBoolean());
    }

    [Fact]
    public void CodexConfigNamesMcpServe()
    {
        var toml = File.ReadAllLines(Path.Combine(Repo.Root, "examples/codex-config.toml")).Where(l => !l.StartsWith('#')).ToList();
        Assert.Contains("[mcp_servers.pyro]", toml);
        Assert.Contains("command = \"pyro\"", toml);
        Assert.Contains("args = [\"mcp\", \"serve\", \"--profile\", \"workspace-core\"]", toml);
    }

    [Fact]
    public void IntegrationDocShowsEveryHost()
    {
        var doc = File.ReadAllText(Path.Combine(Repo.Root, "docs/integrations.md"));
        foreach (var line in new[] { "claude mcp add pyro -- pyro mcp serve", "codex mcp add pyro -- pyro mcp serve", "/path/to/checkout/pyro mcp serve", "\"command\": [\"pyro\", \"mcp\", \"serve\", \"--profile\", \"workspace-core\"]" })
        {
            Assert.Contains(line, doc);
        }

        // Host commands must not be in bash blocks: DocsTests would try to run them.
        Assert.DoesNotContain("```bash", doc);
    }
}

/// <summary>The SDK example programs in examples/ run against real guests.</summary>
public sealed class SdkExamplesTests : GuestTest
{
    private static async Task<CliResult> RunExample(string name, params string[] args)
    {
        var dll = Path.Combine(Repo.Root, "artifacts", "bin", name, Repo.Configuration, name + ".dll");
        Assert.True(File.Exists(dll), $"{dll} is not built: the solution build builds examples/{name}");
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = Repo.Root, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(dll);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["PYRO_RUN_DIR"] = Repo.RunDir;
        start.Environment["PYRO_STATE_DIR"] = Repo.StateDir;
        start.Environment["PYRO_AGENT_PATH"] = Repo.AgentPath;
        start.Environment["PYRO_SUPERVISOR_PATH"] = Path.Combine(Path.GetDirectoryName(Repo.CliDll)!, "pyro-supervisor.dll");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(5));
        return new CliResult(process.ExitCode, await stdout, await stderr);
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
