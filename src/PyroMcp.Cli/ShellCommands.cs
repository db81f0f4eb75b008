using System.CommandLine;
using System.Globalization;
using System.Text;

namespace PyroMcp.Cli;

/// <summary><c>pyro workspace shell ...</c>: interactive shells on a real PTY in the guest that keep their state between calls.</summary>
internal static class ShellCommands
{
    private static readonly Argument<string> Workspace = new("workspace") { Description = "Workspace id or unique name." };
    private static readonly Argument<string> ShellId = new("shell-id") { Description = "Shell id, as 'shell open' printed it." };

    internal static Command Build()
    {
        var shell = new Command("shell", "Interactive shells on a real PTY in the guest: directory, variables and running programs stay between calls; read the output with a cursor. For one command that ends use 'workspace exec'; for a server use 'workspace service'.");
        shell.Subcommands.Add(Open());
        shell.Subcommands.Add(Write());
        shell.Subcommands.Add(Read());
        shell.Subcommands.Add(Signal());
        shell.Subcommands.Add(Close());
        shell.Subcommands.Add(List());
        return shell;
    }

    internal static readonly Option<string?> Cwd = new("--cwd") { Description = "Working directory (relative paths are under /workspace). Default /workspace." };
    internal static readonly Option<int> Cols = new("--cols") { Description = "Terminal width (10-1000).", DefaultValueFactory = _ => 120 };
    internal static readonly Option<int> Rows = new("--rows") { Description = "Terminal height (5-1000).", DefaultValueFactory = _ => 30 };

    private static Command Open()
    {
        var idOnly = new Option<bool>("--id-only") { Description = "Print only the new shell's id." };
        var open = new Command("open", "Open a shell in the workspace.") { Workspace, Cwd, Cols, Rows, SecretEnv, idOnly, Output.Json };
        open.SetAction((parse, _) => Terminal.GuardAsync(parse, async () =>
        {
            var s = await new Pyro().OpenShellAsync(parse.GetValue(Workspace)!, OpenRequest(parse), CliApp.Interrupted);
            if (parse.GetValue(idOnly))
            {
                Console.WriteLine(Terminal.Line(s.ShellId));
            }
            else
            {
                Print(parse, "workspace-shell-open", s, withSize: true);
            }

            return 0;
        }));
        return open;
    }

    private static readonly Option<string[]> SecretEnv = SecretOptions.SecretEnv();

    internal static ShellOpenRequest OpenRequest(ParseResult parse) => new()
    {
        Cwd = parse.GetValue(Cwd) ?? "/workspace",
        Cols = parse.GetValue(Cols),
        Rows = parse.GetValue(Rows),
        SecretEnv = SecretOptions.Env(parse.GetValue(SecretEnv)),
    };

    private static Command Write()
    {
        var input = new Option<string>("--input") { Description = "Text to type (at most 64 KiB).", Required = true };
        var noNewline = new Option<bool>("--no-newline") { Description = "Do not press Enter after the text." };
        var write = new Command("write", "Type text into a shell, then Enter unless --no-newline.") { Workspace, ShellId, input, noNewline, Output.Json };
        write.SetAction((parse, _) => Terminal.GuardAsync(parse, async () =>
        {
            var s = await new Pyro().WriteShellAsync(parse.GetValue(Workspace)!, parse.GetValue(ShellId)!, parse.GetValue(input)!, !parse.GetValue(noNewline), CliApp.Interrupted);
            Print(parse, "workspace-shell-write", s);
            return 0;
        }));
        return write;
    }

    private static Command Read()
    {
        var cursor = new Option<long>("--cursor") { Description = "Read from this cursor (0 = the start; pass the next_cursor of the last read)." };
        var maxChars = new Option<int>("--max-chars") { Description = "Characters to return at most (1-262144).", DefaultValueFactory = _ => 65536 };
        var plain = new Option<bool>("--plain") { Description = "Remove terminal escape sequences." };
        var read = new Command("read", "Print a shell's output from a cursor as it is (raw terminal output unless --plain); the cursor to read from next goes to stderr.") { Workspace, ShellId, cursor, maxChars, plain, Output.Json };
        read.SetAction((parse, _) => Terminal.GuardAsync(parse, async () =>
        {
            var r = await new Pyro().ReadShellAsync(parse.GetValue(Workspace)!, parse.GetValue(ShellId)!, parse.GetValue(cursor), parse.GetValue(maxChars), parse.GetValue(plain), CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(r, PyroJsonContext.Default.ShellReadResult);
            }
            else
            {
                // The output is raw on purpose: this is the user's own terminal session in the guest.
                Console.Out.Write(r.Output);
                Console.Out.Flush();
            }

            Console.Error.WriteLine(ReadLine(r));
            return 0;
        }));
        return read;
    }

    internal static string ReadLine(ShellReadResult r)
        => string.Create(CultureInfo.InvariantCulture,
            $"[workspace-shell-read] workspace_id={r.Shell.WorkspaceId} shell_id={Terminal.Word(r.Shell.ShellId)} state={Terminal.Word(r.Shell.State)} cursor={r.Cursor} next_cursor={r.NextCursor} dropped_chars={r.DroppedChars} truncated={(r.Truncated ? "true" : "false")}");

    private static Command Signal()
    {
        var signal = new Option<string>("--signal") { Description = "INT, TERM, HUP, KILL, QUIT, TSTP, CONT, USR1 or USR2, to the foreground job (as Ctrl-C sends INT).", DefaultValueFactory = _ => "INT" };
        var command = new Command("signal", "Send a signal to the shell's foreground job.") { Workspace, ShellId, signal, Output.Json };
        command.SetAction((parse, _) => Terminal.GuardAsync(parse, async () =>
        {
            var s = await new Pyro().SignalShellAsync(parse.GetValue(Workspace)!, parse.GetValue(ShellId)!, parse.GetValue(signal)!, CliApp.Interrupted);
            Print(parse, "workspace-shell-signal", s, extra: $" signal={Terminal.Word(parse.GetValue(signal)!)}");
            return 0;
        }));
        return command;
    }

    private static Command Close()
    {
        var close = new Command("close", "Close a shell and everything running in it.") { Workspace, ShellId, Output.Json };
        close.SetAction((parse, _) => Terminal.GuardAsync(parse, async () =>
        {
            Print(parse, "workspace-shell-close", await new Pyro().CloseShellAsync(parse.GetValue(Workspace)!, parse.GetValue(ShellId)!, CliApp.Interrupted));
            return 0;
        }));
        return close;
    }

    private static Command List()
    {
        var list = new Command("list", "List a workspace's open shells.") { Workspace, Output.Json };
        list.SetAction((parse, _) => Terminal.GuardAsync(parse, async () =>
        {
            var id = parse.GetValue(Workspace)!;
            var all = await new Pyro().ListShellsAsync(id, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(all, PyroJsonContext.Default.IReadOnlyListWorkspaceShell);
            }
            else
            {
                Console.Write(ListText(id, all));
            }

            return 0;
        }));
        return list;
    }

    internal static string ListText(string workspace, IReadOnlyList<WorkspaceShell> all)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"Workspace: {(all.Count > 0 ? all[0].WorkspaceId : workspace)}\n");
        text.Append(CultureInfo.InvariantCulture, $"Shells: {all.Count}\n");
        foreach (var s in all)
        {
            text.Append(CultureInfo.InvariantCulture, $"- {Terminal.Word(s.ShellId)} [{Terminal.Word(s.State)}] cwd={Terminal.Word(s.Cwd)} cols={s.Cols} rows={s.Rows} output_chars={s.OutputChars}");
            if (s.ExitCode is { } exit)
            {
                text.Append(CultureInfo.InvariantCulture, $" exit_code={exit}");
            }

            text.Append('\n');
        }

        return text.ToString();
    }

    internal static string ShellLine(string tag, WorkspaceShell s, bool withSize = false, string extra = "")
        => string.Create(CultureInfo.InvariantCulture,
            $"[{tag}] workspace_id={s.WorkspaceId} shell_id={Terminal.Word(s.ShellId)} state={Terminal.Word(s.State)}")
            + (withSize ? string.Create(CultureInfo.InvariantCulture, $" cwd={Terminal.Word(s.Cwd)} cols={s.Cols} rows={s.Rows}") : "")
            + (s.ExitCode is { } exit ? string.Create(CultureInfo.InvariantCulture, $" exit_code={exit}") : "")
            + extra;

    private static void Print(ParseResult parse, string tag, WorkspaceShell s, bool withSize = false, string extra = "")
    {
        if (parse.GetValue(Output.Json))
        {
            Output.WriteJson(s, PyroJsonContext.Default.WorkspaceShell);
        }
        else
        {
            Console.WriteLine(ShellLine(tag, s, withSize, extra));
        }
    }
}
