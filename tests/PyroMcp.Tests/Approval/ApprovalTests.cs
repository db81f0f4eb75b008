using System.CommandLine;
using System.CommandLine.Help;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using ModelContextProtocol;
using PyroMcp.Cli;
using PyroMcp.Server;

namespace PyroMcp.Tests.Approval;

/// <summary>
/// The contract as files under Approved/: the public API of the SDK and the server, every help
/// page of the CLI, and the MCP tools of each profile with their schemas. Any change shows as a
/// diff; accept an intended one with PYRO_APPROVE=1 (see <see cref="Approver"/>).
/// </summary>
[Trait("Category", "Approval")]
public sealed class ApprovalTests
{
    [Theory]
    [InlineData("PyroMcp")]
    [InlineData("PyroMcp.Server")]
    public void PublicApi(string assembly)
    {
        var loaded = assembly == "PyroMcp" ? typeof(Pyro).Assembly : typeof(PyroMcpServer).Assembly;
        Assert.Equal(assembly, loaded.GetName().Name);
        Approver.Verify($"PublicApi.{assembly}", PublicApiText.Describe(loaded));
    }

    [Fact]
    public void CliHelp()
    {
        var text = new StringBuilder();
        foreach (var path in CommandPaths(CliApp.Build(), []))
        {
            text.Append("=== pyro ").Append(string.Join(' ', [.. path, "--help"])).Append(" ===\n");
            text.Append(Help(path)).Append('\n');
        }

        Approver.Verify("CliHelp", text.ToString());
    }

    /// <summary>The in-process help above is what the built program prints.</summary>
    [Fact]
    public async Task InProcessHelpIsWhatTheProgramPrints()
    {
        var real = await PyroCli.RunAsync("workspace", "create", "--help");
        Assert.Equal(0, real.ExitCode);
        Assert.Equal(Help(["workspace", "create"]).TrimEnd(), real.Stdout.Replace("\r\n", "\n", StringComparison.Ordinal).TrimEnd());
    }

    [Theory]
    [InlineData(PyroMcpServer.VmRunProfile)]
    [InlineData(PyroMcpServer.WorkspaceCoreProfile)]
    [InlineData(PyroMcpServer.WorkspaceFullProfile)]
    public async Task McpTools(string profile)
    {
        await using var mcp = await InProcessMcp.StartAsync(profile);
        var tools = await mcp.Client.ListToolsAsync();
        var array = new JsonArray();
        foreach (var tool in tools.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            array.Add(JsonSerializer.SerializeToNode(tool.ProtocolTool, McpJsonUtilities.DefaultOptions));
        }

        var json = array.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        Approver.Verify($"McpTools.{profile}", json);
    }

    /// <summary>Every command below <paramref name="command"/>, depth first in declaration order, as the words that name it.</summary>
    private static IEnumerable<string[]> CommandPaths(Command command, string[] path)
    {
        yield return path;
        foreach (var sub in command.Subcommands.Where(c => !c.Hidden))
        {
            foreach (var below in CommandPaths(sub, [.. path, sub.Name]))
            {
                yield return below;
            }
        }
    }

    /// <summary><c>pyro PATH --help</c> in-process, unwrapped (as when stdout is not a terminal), under the program's own name.</summary>
    private static string Help(string[] path)
    {
        var root = CliApp.Build();
        foreach (var action in root.Options.OfType<HelpOption>().Select(o => o.Action is RootHelpAction epilog ? epilog.Inner : o.Action).OfType<HelpAction>())
        {
            action.MaxWidth = int.MaxValue;
        }

        using var output = new StringWriter();
        var exit = root.Parse([.. path, "--help"]).Invoke(new InvocationConfiguration { Output = output, Error = output });
        Assert.Equal(0, exit);
        // In-process the root command is named after the test host; users run it as pyro.
        return Regex.Replace(output.ToString().Replace("\r\n", "\n", StringComparison.Ordinal), $@"(?m)^  {Regex.Escape(root.Name)}(?= |$)", "  pyro");
    }
}
