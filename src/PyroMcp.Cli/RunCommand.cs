using System.CommandLine;

namespace PyroMcp.Cli;

/// <summary><c>pyro run ENV [options] -- CMD...</c></summary>
internal static class RunCommand
{
    internal static readonly Option<string?> Accel = new("--accel")
    {
        Description = "Accelerator: auto (KVM where it really works, else TCG), kvm or tcg. Default: PYRO_ACCEL or auto.",
    };

    internal static Command Build()
    {
        var environment = new Argument<string>("environment") { Description = "Environment to boot, e.g. debian:12 (see 'pyro env list')." };
        var command = new Argument<string[]>("command")
        {
            Description = "The command, after --. Several words run as argv; one quoted string with shell syntax runs through /bin/sh -c.",
            Arity = ArgumentArity.ZeroOrMore,
        };
        var vcpu = new Option<int>("--vcpu-count") { Description = "Virtual CPUs (1-32).", DefaultValueFactory = _ => 1 };
        var mem = new Option<int>("--mem-mib") { Description = "Guest memory in MiB (128-65536).", DefaultValueFactory = _ => 1024 };
        var timeout = new Option<int>("--timeout-seconds") { Description = "Kill the command's process group after this many seconds (exit 124).", DefaultValueFactory = _ => 30 };
        var env = new Option<string[]>("--env") { Description = "Set a variable for the command: --env KEY=VALUE (repeatable).", AllowMultipleArgumentsPerToken = false };
        var cwd = new Option<string?>("--cwd") { Description = "Working directory in the guest (default /)." };
        var hostCompat = new Option<bool>("--allow-host-compat") { Description = "If no guest can boot, run on the host WITHOUT isolation. Off by default: pyro fails closed." };
        var network = new Option<bool>("--network") { Description = "Give the guest outbound network (passt; DNS through the host's resolver). Off by default: no network device. The guest never reaches the host itself." };
        var cold = new Option<bool>("--cold") { Description = "Boot the guest instead of restoring it from the environment's warm-start template (built on first need)." };
        var run = new Command("run", "Run one command inside a fresh microVM, then delete the VM.")
        {
            environment, command, vcpu, mem, timeout, env, cwd, network, cold, hostCompat, Accel, Output.Json,
        };
        run.SetAction((parse, _) =>
        {
            var json = parse.GetValue(Output.Json);
            return Output.GuardAsync(json, async () =>
            {
                var request = new RunRequest
                {
                    Environment = parse.GetValue(environment)!,
                    Command = CommandAfterDoubleDash(parse, parse.GetValue(command) ?? [], "run"),
                    VcpuCount = parse.GetValue(vcpu),
                    MemMib = parse.GetValue(mem),
                    TimeoutSeconds = parse.GetValue(timeout),
                    Env = ParseEnv(parse.GetValue(env)),
                    Cwd = parse.GetValue(cwd),
                    AllowHostCompat = parse.GetValue(hostCompat),
                    Network = parse.GetValue(network),
                    Cold = parse.GetValue(cold),
                    Accelerator = parse.GetValue(Accel) is { } a ? PyroOptions.ParseAccelerator(a) : null,
                    Progress = Output.StderrProgress,
                    OnStdout = json ? null : Forward(Console.OpenStandardOutput()),
                    OnStderr = json ? null : Forward(Console.OpenStandardError()),
                };
                var result = await new Pyro().RunAsync(request, CliApp.Interrupted);
                if (json)
                {
                    Output.WriteJson(result, PyroJsonContext.Default.RunResult);
                }

                foreach (var (name, cut) in new[] { ("stdout", result.StdoutTruncated), ("stderr", result.StderrTruncated) })
                {
                    if (cut)
                    {
                        Console.Error.WriteLine($"[run] warning={name}_truncated vm_id={result.VmId}");
                    }
                }

                if (result.TimedOut)
                {
                    Console.Error.WriteLine($"[run] timeout: the command ran past {request.TimeoutSeconds}s and its process group was killed");
                }

                Console.Error.WriteLine($"[run] environment={result.Environment} execution_mode={Output.Word(result.ExecutionMode)} exit_code={result.ExitCode} duration_ms={result.DurationMs}"
                    + (result.StartMode is { } mode ? $" start={mode}" : ""));
                return result.ExitCode;
            });
        });
        return run;
    }

    /// <summary>
    /// The command must follow <c>--</c>: otherwise a mistyped option (<c>--vcpus 2</c>) would be
    /// taken as the program to run in the guest.
    /// </summary>
    internal static string[] CommandAfterDoubleDash(ParseResult parse, string[] command, string verb)
    {
        var tokens = parse.Tokens.Select(t => t.Value).ToList();
        var dash = tokens.IndexOf("--");
        var after = dash < 0 ? 0 : tokens.Count - dash - 1;
        if (command.Length > after)
        {
            var stray = command[0];
            throw new ArgumentException(stray.StartsWith('-')
                ? $"unknown option '{stray}' for 'pyro {verb}' (see 'pyro {verb} --help'); the command goes after --"
                : $"unexpected '{stray}' before --: write the command after --, e.g. pyro {(verb == "run" ? "run debian:12" : verb + " WORKSPACE")} -- {string.Join(' ', command)}");
        }

        return command;
    }

    internal static Dictionary<string, string>? ParseEnv(string[]? pairs)
    {
        if (pairs is not { Length: > 0 })
        {
            return null;
        }

        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in pairs)
        {
            var eq = pair.IndexOf('=');
            if (eq <= 0)
            {
                throw new ArgumentException($"--env takes KEY=VALUE, got '{pair}'");
            }

            env[pair[..eq]] = pair[(eq + 1)..];
        }

        return env;
    }

    internal static Func<ReadOnlyMemory<byte>, ValueTask> Forward(Stream target)
        => async data =>
        {
            await target.WriteAsync(data);
            await target.FlushAsync();
        };
}
