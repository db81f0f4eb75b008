using System.CommandLine;
using PyroMcp.Server;

namespace PyroMcp.Cli;

/// <summary><c>pyro mcp serve [--profile P] [--allow-path DIR]... [--allow-host-compat] [--max-network-policy P]</c>: the MCP server on stdin/stdout.</summary>
internal static class McpCommand
{
    private const string ServeDescription =
        "Serve MCP over stdio for a chat host (Claude Code, Codex, OpenCode...). stdout carries only the protocol; diagnostics go to stderr.";

    /// <summary>What <c>pyro mcp serve --help</c> ends with: the three profiles and when to use each.</summary>
    internal const string ServeEpilog = """
        Profiles (--profile):
          workspace-core  the default: vm_run plus the workspace tools an agent needs to work in a repo and
                          hand back a result (create, exec, file read/write/list, sync, patch, diff,
                          export, reset, status, logs, list, delete). Start here.
          vm-run          only vm_run and vm_list_environments: one command in a fresh VM per call, nothing
                          kept. For a host that should only run throwaway commands.
          workspace-full  every tool: also snapshots, services (with published ports), shells, stop/start,
                          fork, offline disk tools and the vm_* lifecycle. For long sessions that start
                          apps, keep shells open, checkpoint their work or try several fixes at once.

        Connect a chat host: claude mcp add pyro -- pyro mcp serve
        """;

    internal static Command Build()
    {
        var profile = new Option<string>("--profile")
        {
            Description = $"Which tools to offer: {string.Join(", ", PyroMcpServer.Profiles)}.",
            DefaultValueFactory = _ => PyroMcpServer.WorkspaceCoreProfile,
        };
        var allowPath = new Option<string[]>("--allow-path")
        {
            Description = "A host directory the client may name in seed_path, source_path and output_path (repeatable; symlinks are resolved before the check). Default: the current directory.",
            AllowMultipleArgumentsPerToken = false,
        };
        var allowHostCompat = new Option<bool>("--allow-host-compat")
        {
            Description = "Let tool calls ask for host compatibility mode: when this host cannot boot any guest, vm_run runs the command on the host WITHOUT isolation. Off by default.",
        };
        var maxNetwork = new Option<string>("--max-network-policy")
        {
            Description = "The most network a tool call may give a guest: off, egress or egress+published-ports (default). No policy lets a guest reach the host itself.",
            DefaultValueFactory = _ => "egress+published-ports",
        };
        var serve = new Command("serve", ServeDescription) { profile, allowPath, allowHostCompat, maxNetwork };
        serve.SetAction(async (parse, _) =>
        {
            var chosen = parse.GetValue(profile)!;
            if (!PyroMcpServer.Profiles.Contains(chosen))
            {
                return Output.Fail(false, "invalid_profile", $"unknown MCP profile '{chosen}': use one of {string.Join(", ", PyroMcpServer.Profiles)}", CliApp.ExitUsage);
            }

            var paths = parse.GetValue(allowPath) is { Length: > 0 } given ? given : [Environment.CurrentDirectory];
            try
            {
                paths = [.. new AllowedRoots(paths).Roots];
            }
            catch (ArgumentException ex)
            {
                return Output.Fail(false, "invalid_allow_path", ex.Message + ": give an existing directory to --allow-path", CliApp.ExitUsage);
            }

            NetworkPolicy ceiling;
            try
            {
                ceiling = NetworkPolicyNames.Parse(parse.GetValue(maxNetwork));
            }
            catch (PyroInputException ex)
            {
                return Output.Fail(false, ex.Code, ex.Message + ": give --max-network-policy one of them", CliApp.ExitUsage);
            }

            var policy = new McpServerPolicy { AllowHostCompat = parse.GetValue(allowHostCompat), AllowedPaths = paths, MaxNetworkPolicy = ceiling };
            try
            {
                await PyroMcpServer.RunStdioAsync(chosen, null, policy, CliApp.Interrupted);
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
