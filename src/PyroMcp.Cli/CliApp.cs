using System.CommandLine;
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

    internal const string ZeroToHero = """
        Disposable microVM sandboxes for coding agents: every command runs in a real virtual machine.

        Zero to hero:
          pyro doctor                              check the host (KVM or TCG, packages, caches)
          pyro env list                            see the environments
          pyro env pull debian:12                  build one locally (first run does this for you)
          pyro run debian:12 -- git --version      run one command in a fresh VM

        Every command prints for humans; add --json for machines. Exit codes: run returns the
        guest command's code; 1 means pyro itself failed, 2 a bad request, 130/143 an interrupt.
        """;

    internal static string Version =>
        typeof(CliApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    internal static RootCommand Build()
    {
        var root = new RootCommand(ZeroToHero);
        root.Subcommands.Add(RunCommand.Build());
        root.Subcommands.Add(EnvCommands.Build());
        root.Subcommands.Add(DoctorCommand.Build());
        root.Subcommands.Add(DemoCommand.Build());
        return root;
    }

    /// <summary>The exit code the received termination signal calls for (130 SIGINT, 143 SIGTERM), once one arrived.</summary>
    internal static int? SignalExitCode { get; private set; }

    internal static async Task<int> RunAsync(string[] args)
    {
        // Registered before the parser's own handlers, so the code is known when cancellation lands.
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, _ => SignalExitCode ??= 130);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ => SignalExitCode ??= 143);
        var parse = Build().Parse(args);
        var config = new InvocationConfiguration
        {
            // Cleanup of a VM after Ctrl-C needs a moment; the kernel kills QEMU anyway if we are gone.
            ProcessTerminationTimeout = TimeSpan.FromSeconds(15),
        };
        var code = await parse.InvokeAsync(config);
        return parse.Errors.Count > 0 ? ExitUsage : code;
    }
}
