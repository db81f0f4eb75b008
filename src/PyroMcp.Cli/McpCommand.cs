using System.CommandLine;
using PyroMcp.Server;

namespace PyroMcp.Cli;

/// <summary><c>pyro mcp serve [--profile P]</c>: the MCP server on stdin/stdout.</summary>
internal static class McpCommand
{
    internal static Command Build()
    {
        var profile = new Option<string>("--profile")
        {
            Description = $"Which tools to offer: {string.Join(", ", PyroMcpServer.Profiles)}.",
            DefaultValueFactory = _ => PyroMcpServer.WorkspaceCoreProfile,
        };
        var serve = new Command("serve", "Serve MCP over stdio for a chat host (Claude Code, Codex, OpenCode...). stdout carries only the protocol; diagnostics go to stderr.") { profile };
        serve.SetAction(async (parse, _) =>
        {
            var chosen = parse.GetValue(profile)!;
            if (!PyroMcpServer.Profiles.Contains(chosen))
            {
                return Output.Fail(false, "invalid_profile", $"unknown MCP profile '{chosen}': use one of {string.Join(", ", PyroMcpServer.Profiles)}", CliApp.ExitUsage);
            }

            try
            {
                await PyroMcpServer.RunStdioAsync(chosen, null, CliApp.Interrupted);
            }
            catch (OperationCanceledException) when (CliApp.Interrupted.IsCancellationRequested)
            {
                return CliApp.SignalExitCode ?? 130;
            }

            return 0;
        });
        var mcp = new Command("mcp", "pyro as an MCP server for chat hosts.");
        mcp.Subcommands.Add(serve);
        return mcp;
    }
}
