using System.CommandLine;
using System.Text;
using System.Text.Json.Nodes;

namespace PyroMcp.Cli;

/// <summary><c>pyro workspace disk ...</c>: the disk of a stopped workspace, read offline (nothing is booted or mounted).</summary>
internal static class DiskCommands
{
    private static readonly Argument<string> Workspace = new("workspace") { Description = "Workspace id or unique name (the workspace must be stopped)." };

    internal static Command Build()
    {
        var disk = new Command("disk", "Read the disk of a stopped workspace without booting it: list, read, export as an ext4 image. Runtime-only state (/run/pyro, /run/pyro-secrets, /var/lib/pyro) is never shown or exported.");
        disk.Subcommands.Add(List());
        disk.Subcommands.Add(Read());
        disk.Subcommands.Add(Export());
        return disk;
    }

    private static Command List()
    {
        var path = new Argument<string>("path") { Description = "Directory (relative paths are under /workspace; absolute ones anywhere on the disk). Default /workspace.", DefaultValueFactory = _ => "/workspace" };
        var recursive = new Option<bool>("--recursive") { Description = "Descend into subdirectories (links are not followed)." };
        var list = new Command("list", "List a directory on a stopped workspace's disk.") { Workspace, path, recursive, Output.Json };
        list.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var entries = await new Pyro().ListWorkspaceDiskAsync(parse.GetValue(Workspace)!, parse.GetValue(path)!, parse.GetValue(recursive), CliApp.Interrupted);
            if (entries.Truncated)
            {
                Console.Error.WriteLine($"showing the first {entries.Count} of {entries.TotalCount} entries");
            }

            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(entries, PyroJsonContext.Default.IReadOnlyListFileEntry);
                return 0;
            }

            foreach (var e in entries)
            {
                Console.WriteLine(Terminal.Line($"{Output.Word(e.Type),-9} {Convert.ToString(e.Mode, 8),4} {e.Size,10} {e.Path}{(e.LinkTarget is null ? "" : " -> " + e.LinkTarget)}").Replace('\n', ' '));
            }

            return 0;
        }));
        return list;
    }

    private static Command Read()
    {
        var path = new Argument<string>("path") { Description = "File (relative paths are under /workspace; absolute ones anywhere on the disk)." };
        var contentOnly = new Option<bool>("--content-only") { Description = "Print the file's bytes only." };
        var maxBytes = new Option<long>("--max-bytes") { Description = "Read at most this many bytes (default 1 MiB, at most 64 MiB)." };
        var read = new Command("read", "Print a file on a stopped workspace's disk (binary-safe with --content-only).") { Workspace, path, contentOnly, maxBytes, Output.Json };
        read.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var file = await new Pyro().ReadWorkspaceDiskAsync(parse.GetValue(Workspace)!, parse.GetValue(path)!, parse.GetValue(maxBytes), CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(WorkspaceCommands.FileJson(file));
                return 0;
            }

            var text = WorkspaceCommands.AsText(file.Content);
            if (!parse.GetValue(contentOnly))
            {
                Console.WriteLine($"Path: {Terminal.Line(file.Path).Replace('\n', ' ')}");
                Console.WriteLine($"Size: {file.Size}{(file.Truncated ? " (truncated)" : "")}");
                Console.WriteLine("---");
                Console.Out.Flush();
                // Text goes through the terminal filter; binary bytes only on request, never raw to a terminal.
                Console.Write(text is not null ? Terminal.Block(text) : $"(binary content, {file.Size} bytes: use --content-only or --json)\n");
                Console.Out.Flush();
                return 0;
            }

            using var stdout = Console.OpenStandardOutput();
            stdout.Write(file.Content);
            return 0;
        }));
        return read;
    }

    private static Command Export()
    {
        var output = new Option<string>("--output") { Description = "The image file to create (.ext4); it must not exist, its directory must.", Required = true };
        var export = new Command("export", "Write a stopped workspace's disk to a host file as a raw ext4 image (0600), runtime-only state removed and e2fsck-checked.") { Workspace, output, Output.Json };
        export.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var result = await new Pyro().ExportWorkspaceDiskAsync(parse.GetValue(Workspace)!, parse.GetValue(output)!, Output.StderrProgress, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(result, PyroJsonContext.Default.DiskExportResult);
            }
            else
            {
                Console.WriteLine($"[workspace-disk-export] workspace_id={result.WorkspaceId} output={Terminal.Word(result.Output)} bytes={result.Bytes}");
            }

            return 0;
        }));
        return export;
    }
}
