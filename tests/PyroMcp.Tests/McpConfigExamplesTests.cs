using System.Text.Json;

namespace PyroMcp.Tests;

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
