using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace PyroMcp.Cli;

/// <summary><c>pyro workspace ...</c>: persistent sandboxes that live across calls.</summary>
internal static class WorkspaceCommands
{
    private static readonly Argument<string> Workspace = new("workspace") { Description = "Workspace id or unique name." };

    internal static Command Build()
    {
        var workspace = new Command("workspace", "Persistent workspaces: one VM that lives across many calls.");
        workspace.Subcommands.Add(Create());
        workspace.Subcommands.Add(List());
        workspace.Subcommands.Add(Status());
        workspace.Subcommands.Add(Logs());
        workspace.Subcommands.Add(Exec());
        workspace.Subcommands.Add(Sync());
        workspace.Subcommands.Add(Files());
        workspace.Subcommands.Add(Patch());
        workspace.Subcommands.Add(Diff());
        workspace.Subcommands.Add(Export());
        workspace.Subcommands.Add(Snapshot());
        workspace.Subcommands.Add(ServiceCommands.Build());
        workspace.Subcommands.Add(ShellCommands.Build());
        workspace.Subcommands.Add(DiskCommands.Build());
        workspace.Subcommands.Add(Reset());
        workspace.Subcommands.Add(Fork());
        workspace.Subcommands.Add(Simple("stop", "Power the VM off cleanly; the disk is kept for 'workspace start'.", (p, id) => p.StopWorkspaceAsync(id, CliApp.Interrupted)));
        workspace.Subcommands.Add(Simple("start", "Boot a stopped or crashed workspace again from its disk.", (p, id) => p.StartWorkspaceAsync(id, CliApp.Interrupted)));
        workspace.Subcommands.Add(Publish());
        workspace.Subcommands.Add(Unpublish());
        workspace.Subcommands.Add(Delete());
        workspace.Subcommands.Add(Reap());
        return workspace;
    }

    private static Command Create()
    {
        var environment = new Argument<string>("environment") { Description = "Environment to boot, e.g. debian:12." };
        var seed = new Option<string?>("--seed-path") { Description = "Directory or .tar/.tar.gz/.tgz archive copied into /workspace before the baseline is taken." };
        var name = new Option<string?>("--name") { Description = "Unique name, usable instead of the id." };
        var label = new Option<string[]>("--label") { Description = "Label KEY=VALUE (repeatable)." };
        var ttl = new Option<int>("--ttl-seconds") { Description = "Lifetime; the workspace is deleted when it runs out (10-604800).", DefaultValueFactory = _ => 3600 };
        var vcpu = new Option<int>("--vcpu-count") { Description = "Virtual CPUs (1-32).", DefaultValueFactory = _ => 1 };
        var mem = new Option<int>("--mem-mib") { Description = "Guest memory in MiB (128-65536).", DefaultValueFactory = _ => 1024 };
        var network = new Option<string>("--network-policy")
        {
            Description = "The guest's network: off (no network device), egress (outbound; DNS through the host's resolver) or egress+published-ports (also lets 'workspace publish' expose guest ports on the host's 127.0.0.1). Kept across stop, start and reset.",
            DefaultValueFactory = _ => "off",
        };
        var idOnly = new Option<bool>("--id-only") { Description = "Print only the new workspace's id." };
        var secret = SecretOptions.Secret();
        var secretFile = SecretOptions.SecretFile();
        var cold = new Option<bool>("--cold") { Description = "Boot the VM instead of restoring it from the environment's warm-start template (built on first need)." };
        var create = new Command("create", "Create a workspace and boot its VM.") { environment, seed, name, label, ttl, vcpu, mem, network, secret, secretFile, cold, idOnly, Output.Json };
        create.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var info = await new Pyro().CreateWorkspaceAsync(new WorkspaceCreateRequest
            {
                Environment = parse.GetValue(environment)!,
                SeedPath = parse.GetValue(seed),
                Name = parse.GetValue(name),
                Labels = Pairs(parse.GetValue(label), "--label"),
                TtlSeconds = parse.GetValue(ttl),
                VcpuCount = parse.GetValue(vcpu),
                MemMib = parse.GetValue(mem),
                NetworkPolicy = NetworkPolicyNames.Parse(parse.GetValue(network)),
                Secrets = SecretOptions.Secrets(parse.GetValue(secret), parse.GetValue(secretFile)),
                Cold = parse.GetValue(cold),
                Progress = Output.StderrProgress,
            }, CliApp.Interrupted);
            if (parse.GetValue(idOnly))
            {
                Console.WriteLine(info.WorkspaceId);
            }
            else
            {
                Print(parse, info);
            }

            return 0;
        }));
        return create;
    }

    private static Command Fork()
    {
        var count = new Option<int>("--count") { Description = "How many copies (1-16).", DefaultValueFactory = _ => 1 };
        var prefix = new Option<string?>("--name-prefix") { Description = "Name the copies PREFIX-1, PREFIX-2, ..." };
        var ttl = new Option<int?>("--ttl-seconds") { Description = "Lifetime of each copy (10-604800); default the source's." };
        var fork = new Command("fork", "Copy a running workspace: each copy starts from its memory and disk as they are now (processes, services and shells included), then goes its own way.")
        {
            Workspace, count, prefix, ttl, Output.Json,
        };
        fork.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var result = await new Pyro().ForkWorkspaceAsync(parse.GetValue(Workspace)!, new WorkspaceForkRequest
            {
                Count = parse.GetValue(count),
                NamePrefix = parse.GetValue(prefix),
                TtlSeconds = parse.GetValue(ttl),
                Progress = Output.StderrProgress,
            }, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(result, PyroJsonContext.Default.WorkspaceForkResult);
            }
            else
            {
                foreach (var copy in result.Workspaces)
                {
                    Console.WriteLine(copy.Name is null ? copy.WorkspaceId : $"{copy.WorkspaceId} {copy.Name}");
                }

                Console.Error.WriteLine($"[workspace-fork] source={result.SourceWorkspaceId} copies={result.Workspaces.Count} duration_ms={result.DurationMs}");
            }

            return 0;
        }));
        return fork;
    }

    private static Command Publish()
    {
        var port = new Argument<string>("port") { Description = "GUEST_PORT (a free host port is picked) or HOST_PORT:GUEST_PORT; host ports 1024-65535." };
        var publish = new Command("publish", "Publish a guest TCP port on the host's 127.0.0.1 while the workspace runs (policy egress+published-ports). Closed on stop, reset, delete and crash.") { Workspace, port, Output.Json };
        publish.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var id = parse.GetValue(Workspace)!;
            var published = await new Pyro().PublishPortAsync(id, parse.GetValue(port)!, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(published, PyroJsonContext.Default.PublishedPort);
            }
            else
            {
                Console.WriteLine($"[workspace-publish] workspace_id={id} published={published}");
            }

            return 0;
        }));
        return publish;
    }

    private static Command Unpublish()
    {
        var port = new Argument<int>("host-port") { Description = "The host port to close." };
        var unpublish = new Command("unpublish", "Stop publishing a host port; its open connections are closed.") { Workspace, port, Output.Json };
        unpublish.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var id = parse.GetValue(Workspace)!;
            var left = await new Pyro().UnpublishPortAsync(id, parse.GetValue(port), CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(left, PyroJsonContext.Default.IReadOnlyListPublishedPort);
            }
            else
            {
                Console.WriteLine($"[workspace-unpublish] workspace_id={id} host_port={parse.GetValue(port)} still_published={(left.Count == 0 ? "none" : string.Join(",", left))}");
            }

            return 0;
        }));
        return unpublish;
    }

    private static Command List()
    {
        var label = new Option<string[]>("--label") { Description = "Only workspaces with this label KEY=VALUE (repeatable)." };
        var list = new Command("list", "List workspaces.") { label, Output.Json };
        list.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var all = await new Pyro().ListWorkspacesAsync(Pairs(parse.GetValue(label), "--label"), CliApp.Interrupted);
            Truncated(all.Truncated, all.Count, all.TotalCount, "workspaces");
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(all, PyroJsonContext.Default.IReadOnlyListWorkspaceInfo);
                return 0;
            }

            if (all.Count == 0)
            {
                Console.WriteLine("No workspaces. Create one with: pyro workspace create debian:12");
            }

            foreach (var w in all)
            {
                Console.WriteLine($"{w.WorkspaceId}  {w.Name ?? "-",-16} {w.Environment,-16} {w.State.ToName(),-9} commands={w.CommandCount} expires={w.ExpiresAt.ToString("u", CultureInfo.InvariantCulture)}");
            }

            return 0;
        }));
        return list;
    }

    private static Command Status()
    {
        var status = new Command("status", "Show a workspace's state (checked against the processes that really run).") { Workspace, Output.Json };
        status.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            Print(parse, await new Pyro().GetWorkspaceAsync(parse.GetValue(Workspace)!, CliApp.Interrupted));
            return 0;
        }));
        return status;
    }

    private static Command Logs()
    {
        var logs = new Command("logs", "Show the workspace's command history.") { Workspace, Output.Json };
        logs.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var history = await new Pyro().GetWorkspaceLogsAsync(parse.GetValue(Workspace)!, CliApp.Interrupted);
            Truncated(history.Truncated, history.Count, history.TotalCount, "commands (the latest)");
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(history, PyroJsonContext.Default.IReadOnlyListCommandRecord);
                return 0;
            }

            foreach (var c in history)
            {
                Console.WriteLine($"#{c.Sequence} exit_code={c.ExitCode} duration_ms={c.DurationMs} cwd={c.Cwd} started={c.StartedAt.ToString("u", CultureInfo.InvariantCulture)}");
                Console.WriteLine($"    $ {c.Command}");
            }

            return 0;
        }));
        return logs;
    }

    private static Command Exec()
    {
        var command = new Argument<string[]>("command") { Description = "The command, after --.", Arity = ArgumentArity.ZeroOrMore };
        var timeout = new Option<int>("--timeout-seconds") { Description = "Kill the command's process group after this many seconds (exit 124).", DefaultValueFactory = _ => 30 };
        var cwd = new Option<string?>("--cwd") { Description = "Working directory (relative paths are under /workspace). Default /workspace." };
        var env = new Option<string[]>("--env") { Description = "Variable KEY=VALUE for the command (repeatable)." };
        var secretEnv = SecretOptions.SecretEnv();
        var exec = new Command("exec", "Run one command in the workspace; output streams, the exit code is the command's.") { Workspace, command, timeout, cwd, env, secretEnv, Output.Json };
        exec.SetAction((parse, _) =>
        {
            var json = parse.GetValue(Output.Json);
            return Output.GuardAsync(json, async () =>
            {
                var result = await new Pyro().ExecWorkspaceAsync(parse.GetValue(Workspace)!, new WorkspaceExecRequest
                {
                    Command = RunCommand.CommandAfterDoubleDash(parse, parse.GetValue(command) ?? [], "workspace exec"),
                    Cwd = parse.GetValue(cwd),
                    TimeoutSeconds = parse.GetValue(timeout),
                    Env = Pairs(parse.GetValue(env), "--env"),
                    SecretEnv = SecretOptions.Env(parse.GetValue(secretEnv)),
                    OnStdout = json ? null : RunCommand.Forward(Console.OpenStandardOutput()),
                    OnStderr = json ? null : RunCommand.Forward(Console.OpenStandardError()),
                }, CliApp.Interrupted);
                if (json)
                {
                    Output.WriteJson(result, PyroJsonContext.Default.WorkspaceExecResult);
                }

                Console.Error.WriteLine($"[workspace-exec] workspace_id={result.WorkspaceId} sequence={result.Sequence} cwd={result.Cwd} execution_mode={Output.Word(result.ExecutionMode)} exit_code={result.ExitCode} duration_ms={result.DurationMs}");
                return result.ExitCode;
            });
        });
        return exec;
    }

    private static Command Sync()
    {
        var source = new Argument<string>("source") { Description = "Host directory, or .tar/.tar.gz/.tgz archive." };
        var dest = new Option<string?>("--dest") { Description = "Directory in the workspace (relative paths are under /workspace). Default /workspace." };
        var push = new Command("push", "Copy a host directory or archive into the workspace.") { Workspace, source, dest, Output.Json };
        push.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var result = await new Pyro().PushWorkspaceSyncAsync(parse.GetValue(Workspace)!, parse.GetValue(source)!, parse.GetValue(dest), CliApp.Interrupted);
            PrintTransfer(parse, "workspace-sync", result);
            return 0;
        }, ex => ex is GuestOperationException ? $"'pyro workspace reset {parse.GetValue(Workspace)}' returns it to the baseline" : null));
        var sync = new Command("sync", "Move trees from the host into the workspace.");
        sync.Subcommands.Add(push);
        return sync;
    }

    private static Command Files()
    {
        var path = new Argument<string>("path") { Description = "Path in the workspace (relative paths are under /workspace)." };
        var listPath = new Argument<string>("path") { Description = "Directory (default /workspace).", DefaultValueFactory = _ => "." };
        var recursive = new Option<bool>("--recursive") { Description = "Descend into subdirectories (links are not followed)." };
        var list = new Command("list", "List a directory of the workspace.") { Workspace, listPath, recursive, Output.Json };
        list.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var entries = await new Pyro().ListWorkspaceFilesAsync(parse.GetValue(Workspace)!, parse.GetValue(listPath)!, parse.GetValue(recursive), CliApp.Interrupted);
            Truncated(entries.Truncated, entries.Count, entries.TotalCount, "entries");
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(entries, PyroJsonContext.Default.IReadOnlyListFileEntry);
                return 0;
            }

            foreach (var e in entries)
            {
                Console.WriteLine($"{Output.Word(e.Type),-9} {Convert.ToString(e.Mode, 8),4} {e.Size,10} {e.Path}{(e.LinkTarget is null ? "" : " -> " + e.LinkTarget)}");
            }

            return 0;
        }));

        var contentOnly = new Option<bool>("--content-only") { Description = "Print the file's bytes only." };
        var maxBytes = new Option<long>("--max-bytes") { Description = "Read at most this many bytes (default 1 MiB)." };
        var read = new Command("read", "Print a file of the workspace (binary-safe with --content-only).") { Workspace, path, contentOnly, maxBytes, Output.Json };
        read.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var file = await new Pyro().ReadWorkspaceFileAsync(parse.GetValue(Workspace)!, parse.GetValue(path)!, parse.GetValue(maxBytes), CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(FileJson(file));
                return 0;
            }

            if (!parse.GetValue(contentOnly))
            {
                Console.WriteLine($"Path: {file.Path}");
                Console.WriteLine($"Size: {file.Size}{(file.Truncated ? " (truncated)" : "")}");
                Console.WriteLine("---");
                Console.Out.Flush();
            }

            using var stdout = Console.OpenStandardOutput();
            stdout.Write(file.Content);
            return 0;
        }));

        var text = new Option<string?>("--text") { Description = "Content to write." };
        var fromFile = new Option<string?>("--file") { Description = "Host file whose bytes to write." };
        var write = new Command("write", "Write a file of the workspace atomically (parents created; never through a symlink).") { Workspace, path, text, fromFile, Output.Json };
        write.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var (t, f) = (parse.GetValue(text), parse.GetValue(fromFile));
            if ((t is null) == (f is null))
            {
                throw new ArgumentException("give exactly one of --text and --file");
            }

            await using Stream content = t is not null ? new MemoryStream(Encoding.UTF8.GetBytes(t)) : OpenHostFile(f!);
            var entry = await new Pyro().WriteWorkspaceFileAsync(parse.GetValue(Workspace)!, parse.GetValue(path)!, content, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(entry, PyroJsonContext.Default.FileEntry);
            }
            else
            {
                Console.WriteLine($"Wrote {entry.Size} bytes to /workspace/{entry.Path.TrimStart('/')}");
            }

            return 0;
        }));

        var files = new Command("file", "Read, write and list files of a workspace.");
        files.Subcommands.Add(list);
        files.Subcommands.Add(read);
        files.Subcommands.Add(write);
        return files;
    }

    private static Command Patch()
    {
        var patchFile = new Option<string>("--patch-file") { Description = "Unified diff or git patch to apply, read as bytes (several files, creations, deletions, renames, mode changes, git binary patches).", Required = true };
        var apply = new Command("apply", "Apply a unified diff or git patch (git diff --binary -M works): every change applies, or nothing is written.") { Workspace, patchFile, Output.Json };
        apply.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var file = parse.GetValue(patchFile)!;
            if (!File.Exists(file))
            {
                throw new ArgumentException($"--patch-file {file} does not exist");
            }

            var result = await new Pyro().ApplyWorkspacePatchAsync(parse.GetValue(Workspace)!, await File.ReadAllBytesAsync(file), CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(result, PyroJsonContext.Default.PatchResult);
            }
            else
            {
                Console.WriteLine($"Applied to {result.Files.Count} file(s): {result.Created} created, {result.Modified} modified, {result.Deleted} deleted");
                foreach (var f in result.Files)
                {
                    Console.WriteLine($"  {f}");
                }
            }

            return 0;
        }));
        var patch = new Command("patch", "Apply patches to a workspace.");
        patch.Subcommands.Add(apply);
        return patch;
    }

    private static Command Diff()
    {
        var diff = new Command("diff", "Compare /workspace with its create-time baseline: counts, then a git patch of the changes that git apply turns the baseline into /workspace with (non-UTF-8 bytes as git binary patches, mode changes, symlinks).") { Workspace, Output.Json };
        diff.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var d = await new Pyro().DiffWorkspaceAsync(parse.GetValue(Workspace)!, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(d, PyroJsonContext.Default.WorkspaceDiff);
                return 0;
            }

            Console.Error.WriteLine($"[workspace-diff] workspace_id={d.WorkspaceId} total={d.Total} added={d.Added} modified={d.Modified} deleted={d.Deleted} type_changed={d.TypeChanged} text_patched={d.TextPatched} non_text={d.NonText}");
            foreach (var c in d.Changes)
            {
                Console.WriteLine($"  {Output.Word(c.Change),-12} {Output.Word(c.Kind),-9} {c.Path}");
            }

            if (d.Patch.Length > 0)
            {
                Console.WriteLine();
                Console.Write(d.Patch);
            }

            return 0;
        }));
        return diff;
    }

    private static Command Export()
    {
        var path = new Argument<string>("path") { Description = "File or directory in the workspace." };
        var output = new Option<string>("--output") { Description = "Host path to create (must not exist).", Required = true };
        var export = new Command("export", "Copy a file or directory out of the workspace; nothing is written outside --output.") { Workspace, path, output, Output.Json };
        export.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var result = await new Pyro().ExportWorkspaceAsync(parse.GetValue(Workspace)!, parse.GetValue(path)!, parse.GetValue(output)!, CliApp.Interrupted);
            PrintTransfer(parse, "workspace-export", result);
            return 0;
        }));
        return export;
    }

    private static Command Snapshot()
    {
        var name = new Argument<string>("name") { Description = "Snapshot name." };
        var create = new Command("create", "Save /workspace as a named snapshot.") { Workspace, name, Output.Json };
        create.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var s = await new Pyro().CreateSnapshotAsync(parse.GetValue(Workspace)!, parse.GetValue(name)!, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(s, PyroJsonContext.Default.SnapshotInfo);
            }
            else
            {
                Console.WriteLine($"Snapshot {s.Name}: {s.Entries} entries, {s.Bytes} bytes");
            }

            Console.Error.WriteLine($"[workspace-snapshot-create] snapshot_name={s.Name} kind={s.Kind} entry_count={s.Entries} bytes_written={s.Bytes}");

            return 0;
        }));
        var list = new Command("list", "List a workspace's snapshots.") { Workspace, Output.Json };
        list.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var all = await new Pyro().ListSnapshotsAsync(parse.GetValue(Workspace)!, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(all, PyroJsonContext.Default.IReadOnlyListSnapshotInfo);
                return 0;
            }

            Console.WriteLine("baseline (immutable, taken at create)");
            foreach (var s in all)
            {
                Console.WriteLine($"{s.Name} created={s.CreatedAt.ToString("u", CultureInfo.InvariantCulture)} entries={s.Entries} bytes={s.Bytes}");
            }

            return 0;
        }));
        var delete = new Command("delete", "Delete a snapshot.") { Workspace, name, Output.Json };
        delete.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            await new Pyro().DeleteSnapshotAsync(parse.GetValue(Workspace)!, parse.GetValue(name)!, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(new JsonObject { ["deleted"] = parse.GetValue(name) });
            }
            else
            {
                Console.WriteLine($"Deleted snapshot {parse.GetValue(name)}");
            }

            return 0;
        }));
        var snapshot = new Command("snapshot", "Named checkpoints of /workspace.");
        snapshot.Subcommands.Add(create);
        snapshot.Subcommands.Add(list);
        snapshot.Subcommands.Add(delete);
        return snapshot;
    }

    private static Command Reset()
    {
        var snapshot = new Option<string>("--snapshot") { Description = "What to restore: baseline (the create-time tree) or a named snapshot.", DefaultValueFactory = _ => "baseline" };
        var reset = new Command("reset", "Replace the sandbox with a fresh one from the environment plus the baseline (or a snapshot).") { Workspace, snapshot, Output.Json };
        reset.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var info = await new Pyro().ResetWorkspaceAsync(parse.GetValue(Workspace)!, parse.GetValue(snapshot), CliApp.Interrupted);
            var restored = info.Reset ?? new WorkspaceResetInfo { Snapshot = parse.GetValue(snapshot) ?? "baseline", Kind = "baseline" };
            if (!parse.GetValue(Output.Json))
            {
                Console.WriteLine($"Workspace reset from snapshot: {restored.Snapshot} ({restored.Kind})");
            }

            Console.Error.WriteLine($"[workspace-reset] workspace_id={info.WorkspaceId} snapshot={restored.Snapshot} kind={restored.Kind} destination={restored.Destination} entry_count={restored.Entries} bytes_written={restored.Bytes} reset_count={info.ResetCount}");
            Print(parse, info);
            return 0;
        }));
        return reset;
    }

    private static Command Delete()
    {
        var delete = new Command("delete", "Delete a workspace: VM, supervisor, disk, snapshots and history.") { Workspace, Output.Json };
        delete.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var id = parse.GetValue(Workspace)!;
            await new Pyro().DeleteWorkspaceAsync(id, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(new JsonObject { ["deleted"] = true, ["workspace"] = id });
            }
            else
            {
                Console.WriteLine($"Deleted workspace {id}");
            }

            return 0;
        }));
        return delete;
    }

    private static Command Reap()
    {
        var reap = new Command("reap", "Delete every workspace past its TTL, including those whose supervisor is gone.") { Output.Json };
        reap.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var reaped = await new Pyro().ReapExpiredWorkspacesAsync(CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(reaped, PyroJsonContext.Default.IReadOnlyListString);
            }
            else
            {
                Console.WriteLine($"Reaped {reaped.Count} expired workspace(s){(reaped.Count == 0 ? "" : ": " + string.Join(", ", reaped))}");
            }

            return 0;
        }));
        return reap;
    }

    private static Command Simple(string name, string description, Func<Pyro, string, Task<WorkspaceInfo>> action)
    {
        var command = new Command(name, description) { Workspace, Output.Json };
        command.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            Print(parse, await action(new Pyro(), parse.GetValue(Workspace)!));
            return 0;
        }));
        return command;
    }

    private static void Print(ParseResult parse, WorkspaceInfo info)
    {
        if (parse.GetValue(Output.Json))
        {
            Output.WriteJson(info, PyroJsonContext.Default.WorkspaceInfo);
            return;
        }

        Console.WriteLine($"Workspace ID: {info.WorkspaceId}");
        if (info.Name is not null)
        {
            Console.WriteLine($"Name: {info.Name}");
        }

        Console.WriteLine($"Environment: {info.Environment}");
        Console.WriteLine($"State: {info.State.ToName()}");
        if (info.StateReason is not null)
        {
            Console.WriteLine($"Reason: {info.StateReason}");
        }

        Console.WriteLine($"Workspace: {info.WorkspacePath}");
        Console.WriteLine($"Workspace seed: {(info.SeedSource is null ? "empty" : $"{info.SeedMode} from {info.SeedSource}")}");
        Console.WriteLine($"Network policy: {info.NetworkPolicy.ToName()}");
        Console.WriteLine($"Execution mode: {Output.Word(info.ExecutionMode)}");
        Console.WriteLine($"Resources: {info.VcpuCount} vCPU / {info.MemMib} MiB{(info.Accelerator is { } accelerator ? $" ({Output.Word(accelerator)})" : "")}");
        Console.WriteLine($"Command count: {info.CommandCount}");
        Console.WriteLine($"Reset count: {info.ResetCount}");
        if (info.StartMode is { } mode)
        {
            Console.WriteLine($"Started: {mode}{(info.ColdStartReason is { } why ? $" ({why})" : "")}");
        }

        if (info.Network is { } guestNetwork)
        {
            Console.WriteLine($"Guest network: {guestNetwork}");
        }
        else if (info.NetworkError is { } networkError)
        {
            Console.WriteLine($"Guest network: none ({networkError})");
        }

        if (info.NetworkPolicy.AllowsPublishing() || info.PublishedPorts.Count > 0)
        {
            Console.WriteLine($"Published ports: {(info.PublishedPorts.Count == 0 ? "none" : string.Join(", ", info.PublishedPorts))}");
        }

        if (info.ServiceCount is { } services)
        {
            Console.WriteLine($"Services: {info.RunningServices ?? 0} running of {services}");
        }

        if (info.OpenShells is { } shells)
        {
            Console.WriteLine($"Shells: {shells} open");
        }

        if (info.Secrets.Count > 0)
        {
            Console.WriteLine($"Secrets: {string.Join(", ", info.Secrets)}");
        }

        Console.WriteLine($"Created: {info.CreatedAt.ToString("u", CultureInfo.InvariantCulture)}  Expires: {info.ExpiresAt.ToString("u", CultureInfo.InvariantCulture)}");
        if (info.Labels.Count > 0)
        {
            Console.WriteLine($"Labels: {string.Join(", ", info.Labels.Select(l => $"{l.Key}={l.Value}"))}");
        }
    }

    private static void PrintTransfer(ParseResult parse, string tag, TransferResult result)
    {
        if (parse.GetValue(Output.Json))
        {
            Output.WriteJson(result, PyroJsonContext.Default.TransferResult);
        }
        else
        {
            Console.WriteLine($"{(tag == "workspace-export" ? "Exported" : "Pushed")} {result.Entries} entries ({result.Bytes} bytes): {(tag == "workspace-export" ? result.GuestPath + " -> " + result.HostPath : result.HostPath + " -> " + result.GuestPath)}");
            foreach (var skip in result.Skipped)
            {
                Console.WriteLine($"  skipped {skip.Name}: {skip.Reason}");
            }
        }

        var where = tag == "workspace-export"
            ? $"workspace_path={Terminal.Word(result.GuestPath)} output_path={Terminal.Word(result.HostPath)} artifact_type={(result.ArtifactType is { } type ? Output.Word(type) : "file")}"
            : $"mode={result.Mode ?? "directory"} source={Terminal.Word(result.HostPath)} destination={Terminal.Word(result.GuestPath)}";
        Console.Error.WriteLine($"[{tag}] workspace_id={result.WorkspaceId} {where} entry_count={result.Entries} bytes_written={result.Bytes} execution_mode={Output.Word(result.ExecutionMode)} skipped={result.SkippedTotal} duration_ms={result.DurationMs}");
    }

    /// <summary>A cut list says so on stderr, so that neither the text nor the JSON on stdout changes shape.</summary>
    private static void Truncated(bool truncated, int shown, long total, string what)
    {
        if (truncated)
        {
            Console.Error.WriteLine($"[pyro] showing {shown} of {total} {what}: the list limit is PYRO_MAX_LIST_ENTRIES");
        }
    }

    /// <summary>The bytes as text when they are UTF-8 without NUL; JSON gets base64 otherwise.</summary>
    /// <summary>A file read (from a running workspace or a stopped one's disk) as --json prints it: UTF-8 text, or base64.</summary>
    internal static JsonObject FileJson(FileContent file)
    {
        var text = AsText(file.Content);
        return new JsonObject
        {
            ["workspace_id"] = file.WorkspaceId,
            ["path"] = file.Path,
            ["size"] = file.Size,
            ["truncated"] = file.Truncated,
            ["encoding"] = text is null ? "base64" : "utf-8",
            ["content"] = text ?? Convert.ToBase64String(file.Content),
        };
    }

    internal static string? AsText(byte[] content)
    {
        if (content.AsSpan().Contains((byte)0))
        {
            return null;
        }

        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(content);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }

    private static Stream OpenHostFile(string path)
        => File.Exists(path) ? File.OpenRead(path) : throw new ArgumentException($"--file {path} does not exist");

    private static Dictionary<string, string>? Pairs(string[]? pairs, string option)
    {
        if (pairs is not { Length: > 0 })
        {
            return null;
        }

        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in pairs)
        {
            var eq = pair.IndexOf('=');
            if (eq <= 0)
            {
                throw new ArgumentException($"{option} takes KEY=VALUE, got '{pair}'");
            }

            result[pair[..eq]] = pair[(eq + 1)..];
        }

        return result;
    }
}
