using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.Reflection;
using System.Runtime.InteropServices;

namespace PyroMcp.Cli;

/// <summary>The pyro command line: parsing and dispatch only; every behaviour lives in the SDK.</summary>
internal static class CliApp
{
    /// <summary>Exit code for a request pyro refused (bad arguments, unknown environment).</summary>
    internal const int ExitUsage = 2;
    /// <summary>Exit code for a pyro failure (host, environment, boot). Guest commands keep their own codes.</summary>
    internal const int ExitFailure = 1;

    internal const string Description =
        "Check the host, then serve disposable microVM workspaces to chat-based coding agents: every command runs in a real virtual machine.";

    /// <summary>What <c>pyro --help</c> ends with: the product path, the chat-host lines, and the workspace path in a terminal.</summary>
    internal const string Epilog = """
        Suggested path:
          pyro doctor                              check the host (KVM or TCG, packages, caches)
          pyro env list                            see the environments
          pyro env pull debian:12                  build one locally (first use does this for you)
          pyro run debian:12 -- git --version      run one command in a fresh VM
          pyro mcp serve                           the same as MCP tools for a chat host (stdio)

        Connect a chat host:
          claude mcp add pyro -- pyro mcp serve
          codex mcp add pyro -- pyro mcp serve

        A workspace from a terminal:
          pyro workspace create debian:12 --seed-path ./repo --id-only
          pyro workspace exec WORKSPACE_ID -- cat note.txt
          pyro workspace diff WORKSPACE_ID
          pyro workspace snapshot create WORKSPACE_ID checkpoint
          pyro workspace reset WORKSPACE_ID --snapshot checkpoint
          pyro workspace delete WORKSPACE_ID

        Every command prints for humans; add --json for machines. Exit codes: run and exec return the
        guest command's code; 1 means pyro itself failed, 2 a bad request, 130/143 an interrupt.
        """;

    internal static string Version =>
        typeof(CliApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    internal static RootCommand Build()
    {
        var root = new RootCommand(Description);
        foreach (var help in root.Options.OfType<HelpOption>())
        {
            if (help.Action is HelpAction inner)
            {
                help.Action = new RootHelpAction(inner);
            }
        }

        root.Subcommands.Add(RunCommand.Build());
        root.Subcommands.Add(EnvCommands.Build());
        root.Subcommands.Add(WorkspaceCommands.Build());
        root.Subcommands.Add(McpCommand.Build());
        root.Subcommands.Add(DoctorCommand.Build());
        root.Subcommands.Add(DemoCommand.Build());
        return root;
    }

    private static readonly CancellationTokenSource Interrupt = new();

    /// <summary>The exit code the received termination signal calls for (130 SIGINT, 143 SIGTERM), once one arrived.</summary>
    internal static int? SignalExitCode { get; private set; }

    /// <summary>Cancelled by the first SIGINT or SIGTERM; every action passes it to the SDK.</summary>
    internal static CancellationToken Interrupted => Interrupt.Token;

    /// <summary>The command line being run, once parsed: error hints name the workspace and environment from it.</summary>
    internal static ParseResult? Parsed { get; private set; }

    internal static async Task<int> RunAsync(string[] args)
    {
        // pyro handles termination itself: the first signal cancels the work so the VM is torn
        // down and the exit code says which signal it was; a second one ends the process at once
        // (the kernel still kills QEMU with us).
        void OnSignal(PosixSignalContext context, int code)
        {
            if (SignalExitCode is null)
            {
                SignalExitCode = code;
                context.Cancel = true;
                Interrupt.Cancel();
            }
        }

        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => OnSignal(c, 130));
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => OnSignal(c, 143));
        var parse = Build().Parse(args);
        Parsed = parse;
        var config = new InvocationConfiguration { ProcessTerminationTimeout = null };
        var code = await parse.InvokeAsync(config);
        return parse.Errors.Count > 0 ? ExitUsage : code;
    }
}

/// <summary>The standard help, then an epilog for the two pages that have one: <c>pyro --help</c> (<see cref="CliApp.Epilog"/>) and <c>pyro mcp serve --help</c> (<see cref="McpCommand.ServeEpilog"/>).</summary>
internal sealed class RootHelpAction(HelpAction inner) : SynchronousCommandLineAction
{
    /// <summary>The help action that writes the pages (tests set its width).</summary>
    internal HelpAction Inner => inner;

    public override bool ClearsParseErrors => true;

    public override int Invoke(ParseResult parseResult)
    {
        var code = inner.Invoke(parseResult);
        var command = parseResult.CommandResult.Command;
        var epilog = command switch
        {
            RootCommand => CliApp.Epilog,
            { Name: "serve" } when command.Parents.OfType<Command>().Any(p => p.Name == "mcp") => McpCommand.ServeEpilog,
            _ => null,
        };
        if (epilog is not null)
        {
            parseResult.InvocationConfiguration.Output.Write(epilog.ReplaceLineEndings("\n") + "\n\n");
        }

        return code;
    }
}
