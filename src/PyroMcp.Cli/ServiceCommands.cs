using System.CommandLine;
using System.Globalization;
using System.Text;

namespace PyroMcp.Cli;

/// <summary><c>pyro workspace service ...</c>: long-running processes in a workspace, with readiness, published ports and logs.</summary>
internal static class ServiceCommands
{
    private static readonly Argument<string> Workspace = new("workspace") { Description = "Workspace id or unique name." };
    private static readonly Argument<string> Name = new("name") { Description = "Service name: letters, digits, '.', '_', '-' (at most 64)." };
    private static readonly Argument<string[]> CommandLine = new("command") { Description = "The command, after --. One argument is a shell command line as it is; several are quoted and joined.", Arity = ArgumentArity.ZeroOrMore };

    internal static readonly Option<string?> Cwd = new("--cwd") { Description = "Working directory (relative paths are under /workspace). Default /workspace." };
    internal static readonly Option<string?> ReadyFile = new("--ready-file") { Description = "Ready once this path (relative to --cwd) exists." };
    internal static readonly Option<string?> ReadyTcp = new("--ready-tcp") { Description = "Ready once HOST:PORT in the guest accepts a connection." };
    internal static readonly Option<string?> ReadyHttp = new("--ready-http") { Description = "Ready once this http:// URL in the guest answers 2xx or 3xx." };
    internal static readonly Option<string?> ReadyCommand = new("--ready-command") { Description = "Ready once this shell command exits 0 (run in --cwd)." };
    internal static readonly Option<int> ReadyTimeout = new("--ready-timeout-seconds") { Description = "How long readiness may take (1-600); a service not ready by then is stopped.", DefaultValueFactory = _ => 30 };
    internal static readonly Option<int> ReadyInterval = new("--ready-interval-ms") { Description = "Time between readiness probes (50-60000).", DefaultValueFactory = _ => 500 };
    internal static readonly Option<string[]> Publish = new("--publish")
    {
        Description = "Publish a guest port on the host's 127.0.0.1 while the service runs: GUEST_PORT or HOST_PORT:GUEST_PORT (repeatable; policy egress+published-ports).",
        AllowMultipleArgumentsPerToken = false,
    };

    internal static Command Build()
    {
        var service = new Command("service", "Long-running processes in a workspace (web servers, watchers): readiness, published ports, logs. For one command that ends use 'workspace exec'; for an interactive program use 'workspace shell'.");
        service.Subcommands.Add(Start());
        service.Subcommands.Add(List());
        service.Subcommands.Add(Status());
        service.Subcommands.Add(Logs());
        service.Subcommands.Add(Stop());
        return service;
    }

    private static Command Start()
    {
        var start = new Command("start", "Start a service and wait until its readiness probe passes (at most one --ready-* flag; none means ready once started).")
        {
            Workspace, Name, CommandLine, Cwd, ReadyFile, ReadyTcp, ReadyHttp, ReadyCommand, ReadyTimeout, ReadyInterval, Publish, SecretEnv, Output.Json,
        };
        start.SetAction((parse, _) => Terminal.GuardAsync(parse, async () =>
        {
            var id = parse.GetValue(Workspace)!;
            var request = StartRequest(parse);
            if (request.Readiness is { } readiness)
            {
                Console.Error.WriteLine($"waiting for {request.Name} to be ready ({Terminal.Line(readiness.ToString())}), at most {request.ReadyTimeoutSeconds} s");
            }

            var s = await new Pyro().StartServiceAsync(id, request, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(s, PyroJsonContext.Default.WorkspaceService);
            }
            else
            {
                Console.WriteLine(StartLine(s));
            }

            return 0;
        }));
        return start;
    }

    /// <summary>The request the flags of <c>service start</c> describe; a usage error for what no request can say.</summary>
    internal static ServiceStartRequest StartRequest(ParseResult parse)
    {
        var probes = new (Option<string?> Option, string Type)[] { (ReadyFile, "file"), (ReadyTcp, "tcp"), (ReadyHttp, "http"), (ReadyCommand, "command") }
            .Select(p => (p.Option, p.Type, Value: parse.GetValue(p.Option)))
            .Where(p => p.Value is not null)
            .ToList();
        if (probes.Count > 1)
        {
            throw new CliUsageException("readiness_invalid", $"give at most one readiness probe, got {string.Join(" and ", probes.Select(p => p.Option.Name))}");
        }

        var command = RunCommand.CommandAfterDoubleDash(parse, parse.GetValue(CommandLine) ?? [], "workspace service start");
        if (command.Length == 0)
        {
            throw new CliUsageException("missing_command", "service start needs the command to run");
        }

        return new ServiceStartRequest
        {
            Name = parse.GetValue(Name)!,
            Command = JoinCommand(command),
            Cwd = parse.GetValue(Cwd) ?? "/workspace",
            Readiness = probes is [var probe] ? new ServiceReadiness(probe.Type, probe.Value!) : null,
            ReadyTimeoutSeconds = parse.GetValue(ReadyTimeout),
            ReadyIntervalMs = parse.GetValue(ReadyInterval),
            Publish = parse.GetValue(Publish) ?? [],
            SecretEnv = SecretOptions.Env(parse.GetValue(SecretEnv)),
        };
    }

    private static readonly Option<string[]> SecretEnv = SecretOptions.SecretEnv();

    /// <summary>
    /// One argument is a shell command line already (<c>-- 'python3 -m http.server 8080'</c>); several are
    /// argv words that the user's shell has split, quoted back so <c>/bin/sh -c</c> sees the same words.
    /// </summary>
    internal static string JoinCommand(IReadOnlyList<string> argv)
        => argv.Count == 1 ? argv[0] : string.Join(' ', argv.Select(Quote));

    /// <summary>POSIX single-quoting, left out for words that need none.</summary>
    internal static string Quote(string word)
        => word.Length > 0 && word.All(c => char.IsAsciiLetterOrDigit(c) || "@%+=:,./_-".Contains(c))
            ? word
            : "'" + word.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    internal static string StartLine(WorkspaceService s)
        => $"[workspace-service-start] workspace_id={s.WorkspaceId} service={Terminal.Word(s.Name)} state={Terminal.Word(s.State)} cwd={Terminal.Word(s.Cwd)}"
            + (s.Readiness is { } r ? $" ready_type={Terminal.Word(r.Type)}" : "")
            + (s.PublishedPorts.Count > 0 ? $" published={string.Join(',', s.PublishedPorts)}" : "");

    private static Command List()
    {
        var list = new Command("list", "List a workspace's services, running or not.") { Workspace, Output.Json };
        list.SetAction((parse, _) => Terminal.GuardAsync(parse, async () =>
        {
            var all = await new Pyro().ListServicesAsync(parse.GetValue(Workspace)!, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(all, PyroJsonContext.Default.WorkspaceServiceList);
            }
            else
            {
                Console.Write(ListText(all));
            }

            return 0;
        }));
        return list;
    }

    internal static string ListText(WorkspaceServiceList all)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"Workspace: {all.WorkspaceId}\n");
        text.Append(CultureInfo.InvariantCulture, $"Services: {all.Services.Count} total, {all.Running} running\n");
        foreach (var s in all.Services)
        {
            text.Append(CultureInfo.InvariantCulture, $"- {Terminal.Word(s.Name)} [{Terminal.Word(s.State)}] cwd={Terminal.Word(s.Cwd)}");
            if (s.Readiness is { } r)
            {
                text.Append(CultureInfo.InvariantCulture, $" readiness={Terminal.Word(r.Type)}");
            }

            if (s.PublishedPorts.Count > 0)
            {
                text.Append(CultureInfo.InvariantCulture, $" published={string.Join(',', s.PublishedPorts)}");
            }

            if (s.ExitCode is { } exit)
            {
                text.Append(CultureInfo.InvariantCulture, $" exit_code={exit}");
            }

            text.Append('\n');
        }

        return text.ToString();
    }

    private static Command Status()
    {
        var status = new Command("status", "Show one service: state, command, readiness, last probe, pid or exit code, published ports.") { Workspace, Name, Output.Json };
        status.SetAction((parse, _) => Terminal.GuardAsync(parse, async () =>
        {
            var s = await new Pyro().GetServiceAsync(parse.GetValue(Workspace)!, parse.GetValue(Name)!, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(s, PyroJsonContext.Default.WorkspaceService);
            }
            else
            {
                Console.Write(StatusText(s));
            }

            return 0;
        }));
        return status;
    }

    /// <summary>The header of <c>service status</c> and <c>service logs</c>: only the lines that apply. Every field but the ids came from the guest.</summary>
    internal static string StatusText(WorkspaceService s)
    {
        var text = new StringBuilder();
        void Line(string label, string? value)
        {
            if (value is not null)
            {
                text.Append(CultureInfo.InvariantCulture, $"{label}: {value}\n");
            }
        }

        Line("Workspace", s.WorkspaceId);
        Line("Service", Terminal.Line(s.Name));
        Line("State", Terminal.Line(s.State));
        Line("Command", Terminal.Line(s.Command));
        Line("Cwd", Terminal.Line(s.Cwd));
        Line("Readiness", s.Readiness is { } r ? Terminal.Line(r.ToString()) : null);
        Line("Pid", s.Pid?.ToString(CultureInfo.InvariantCulture));
        Line("Exit code", s.ExitCode?.ToString(CultureInfo.InvariantCulture));
        Line("Started", s.StartedAt?.ToString("u", CultureInfo.InvariantCulture));
        Line("Ended", s.EndedAt?.ToString("u", CultureInfo.InvariantCulture));
        Line("Reason", s.Reason is null ? null : Terminal.Line(s.Reason));
        Line("Last probe", s.LastProbe is null ? null : Terminal.Line(s.LastProbe));
        Line("Published ports", s.PublishedPorts.Count > 0 ? string.Join(", ", s.PublishedPorts) : null);
        return text.ToString();
    }

    private static Command Logs()
    {
        var tail = new Option<int>("--tail-lines") { Description = "Last lines of each stream (1-5000).", DefaultValueFactory = _ => 200 };
        var logs = new Command("logs", "Show the last lines of a service's stdout and stderr.") { Workspace, Name, tail, Output.Json };
        logs.SetAction((parse, _) => Terminal.GuardAsync(parse, async () =>
        {
            var l = await new Pyro().GetServiceLogsAsync(parse.GetValue(Workspace)!, parse.GetValue(Name)!, parse.GetValue(tail), CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(l, PyroJsonContext.Default.WorkspaceServiceLogs);
            }
            else
            {
                Console.Write(LogsText(l));
            }

            return 0;
        }));
        return logs;
    }

    internal static string LogsText(WorkspaceServiceLogs l)
    {
        var text = new StringBuilder(StatusText(l.Service));
        if (l.Truncated)
        {
            text.Append(CultureInfo.InvariantCulture, $"(older output not shown: the last {l.TailLines} lines of each stream)\n");
        }

        text.Append("--- stdout ---\n").Append(Terminal.Block(l.Stdout));
        if (l.Stdout.Length > 0 && !l.Stdout.EndsWith('\n'))
        {
            text.Append('\n');
        }

        text.Append("--- stderr ---\n").Append(Terminal.Block(l.Stderr));
        if (l.Stderr.Length > 0 && !l.Stderr.EndsWith('\n'))
        {
            text.Append('\n');
        }

        return text.ToString();
    }

    private static Command Stop()
    {
        var stop = new Command("stop", "Stop a service: TERM to its process group, KILL after a grace period; its published ports are released.") { Workspace, Name, Output.Json };
        stop.SetAction((parse, _) => Terminal.GuardAsync(parse, async () =>
        {
            var s = await new Pyro().StopServiceAsync(parse.GetValue(Workspace)!, parse.GetValue(Name)!, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(s, PyroJsonContext.Default.WorkspaceService);
            }
            else
            {
                Console.WriteLine($"[workspace-service-stop] workspace_id={s.WorkspaceId} service={Terminal.Word(s.Name)} state={Terminal.Word(s.State)}");
            }

            return 0;
        }));
        return stop;
    }
}
