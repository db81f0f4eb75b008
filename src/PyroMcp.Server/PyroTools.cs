using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace PyroMcp.Server;

/// <summary>
/// The MCP tools: each one a thin call into <see cref="Pyro"/>. Parameters are snake_case because
/// the SDK names schema properties after them and MCP hosts show those names to the model.
/// </summary>
/// <remarks>
/// Failures come back as tool results with <c>isError</c> and the pyro error code, so the model
/// can read them and act; a thrown exception would reach it only as a generic message.
/// </remarks>
[McpServerToolType]
public sealed partial class PyroTools
{
    /// <summary>Label that marks a workspace created by <c>vm_create</c> (<see cref="VmLabels.Kind"/>).</summary>
    public const string KindLabel = VmLabels.Kind;

    private const string Environment = "Environment to boot, e.g. debian:12 (git, ca-certificates), debian:12-base or debian:12-build (build-essential, python3). See vm_list_environments.";
    private const string WorkspaceId = "Workspace id (12 hex digits) or unique name, as returned by workspace_create or workspace_list.";
    private const string VmId = "VM id as returned by vm_create.";
    private const string ShellCommand = "Shell command line, run through /bin/sh -c (pipes, &&, quotes and $VARS work). A bare word such as 'true' runs directly.";

    private const string ColdFlag = "Boot the guest instead of restoring it from the environment's warm-start template. Leave false: warm is faster, and pyro boots cold by itself (and says why) when the template cannot be used.";
    private const string NetworkFlag = "Give the guest outbound network (egress: connections out and DNS through the host's resolver). Leave false unless the command must download something; the guest never reaches the host itself either way.";
    private const string HostCompat = "Ask for host compatibility mode: if this host cannot boot any VM, run on the host WITHOUT isolation. Only works when the operator started the server with --allow-host-compat; otherwise the call fails with host_compat_disabled. Leave false unless the user asked for it.";

    private readonly Pyro _pyro;
    private readonly McpServerPolicy _policy;
    private readonly AllowedRoots _roots;

    /// <summary>Tools over one runtime, limited by what the operator allowed.</summary>
    /// <exception cref="ArgumentException">An allowed path is not an existing directory.</exception>
    public PyroTools(Pyro pyro, McpServerPolicy policy)
    {
        _pyro = pyro;
        _policy = policy;
        _roots = new AllowedRoots(policy.AllowedPaths);
    }

    /// <summary>
    /// Host execution is the operator's choice, never the model's: a call may ask for it only on
    /// a server started with <c>--allow-host-compat</c>.
    /// </summary>
    private void CheckHostCompat(bool requested)
    {
        if (requested && !_policy.AllowHostCompat)
        {
            throw new ToolError("host_compat_disabled",
                "this MCP server does not run commands on the host: allow_host_compat needs the operator to start it with 'pyro mcp serve --allow-host-compat'. Call again without allow_host_compat; the command runs in a microVM.");
        }
    }

    /// <summary>
    /// The network a call may give its guest is capped by the operator (<c>--max-network-policy</c>):
    /// a model steered by guest output cannot open more than that.
    /// </summary>
    private NetworkPolicy CheckNetwork(NetworkPolicy requested, string parameter)
    {
        if (requested > _policy.MaxNetworkPolicy)
        {
            throw new ToolError("network_policy_not_allowed",
                $"this MCP server allows guest networks up to '{_policy.MaxNetworkPolicy.ToName()}' (the operator's 'pyro mcp serve --max-network-policy'); {parameter} asked for '{requested.ToName()}'. Call again with less, or ask the operator.");
        }

        return requested;
    }

    private static NetworkPolicy ParseNetworkPolicy(string? value)
    {
        try
        {
            return NetworkPolicyNames.Parse(value);
        }
        catch (PyroInputException ex)
        {
            throw new ToolError(ex.Code, ex.Message.Replace("network policy", "network_policy", StringComparison.Ordinal));
        }
    }

    /// <summary>vm_run.</summary>
    [McpServerTool(Name = "vm_run", Destructive = false, OpenWorld = false)]
    [Description("""
        Runs one shell command in a fresh, disposable microVM and deletes the VM afterwards, whatever happens.
        Use it for a single self-contained command (checking a tool version, running a script that needs no files
        from the host). For several commands that share files, use a workspace instead.
        Returns exit_code (124 on timeout, 127 if the program does not exist), stdout, stderr (each capped at 1 MiB,
        with *_truncated flags), timed_out, duration_ms, vm_id and cleanup. A non-zero exit code is a normal result,
        not an error. The first call for an environment may take minutes while it is built; progress is reported.
        """)]
    public Task<CallToolResult> VmRun(
        RequestContext<CallToolRequestParams> context,
        [Description(Environment)] string environment,
        [Description(ShellCommand)] string command,
        [Description("Virtual CPUs, 1 to 32."), Range(1, 32)] int vcpu_count = 1,
        [Description("Guest memory in MiB, 128 to 65536."), Range(128, 65536)] int mem_mib = 1024,
        [Description("Seconds before the command's whole process group is killed (exit_code 124, timed_out true), 1 to 86400."), Range(1, 86400)] int timeout_seconds = 30,
        [Description(NetworkFlag)] bool network = false,
        [Description(HostCompat)] bool allow_host_compat = false,
        [Description(ColdFlag)] bool cold = false,
        CancellationToken cancellationToken = default)
        => Guard(context, async progress =>
        {
            CheckHostCompat(allow_host_compat);
            CheckNetwork(network ? NetworkPolicy.Egress : NetworkPolicy.Off, "network");
            var result = await _pyro.RunAsync(new RunRequest
            {
                Network = network,
                Cold = cold,
                Environment = environment,
                Command = [command],
                VcpuCount = vcpu_count,
                MemMib = mem_mib,
                TimeoutSeconds = timeout_seconds,
                AllowHostCompat = allow_host_compat,
                Progress = progress,
            }, cancellationToken).ConfigureAwait(false);
            return Ok(Json(result, PyroJsonContext.Default.RunResult), Exited("vm_run", result.ExitCode, result.TimedOut, timeout_seconds) + $"; execution_mode={Word(result.ExecutionMode)}; the VM was deleted");
        });

    /// <summary>vm_list_environments.</summary>
    [McpServerTool(Name = "vm_list_environments", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("""
        Lists the environments a VM or workspace can boot from (name, description, packages) and whether each is
        already built on this host (installed). An environment that is not installed is built on first use, which
        takes a few minutes.
        """)]
    public Task<CallToolResult> VmListEnvironments(CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var all = await _pyro.ListEnvironmentsAsync(cancellationToken).ConfigureAwait(false);
            return Ok(new JsonObject { ["environments"] = Json(all, PyroJsonContext.Default.IReadOnlyListEnvironmentInfo) },
                string.Join("; ", all.Select(e => $"{e.Name} ({e.State}): {e.Description}")));
        });

    /// <summary>workspace_create.</summary>
    [McpServerTool(Name = "workspace_create", OpenWorld = false)]
    [Description("""
        Creates a persistent workspace: a microVM that lives across many calls, with /workspace seeded from a host
        directory or archive. The seeded tree becomes the baseline that workspace_diff compares against and
        workspace_reset returns to. Use it for multi-step work on a project (build, test, edit, diff).
        Returns the workspace (workspace_id, state running, expires_at). Delete it with workspace_delete when done;
        otherwise it is deleted when ttl_seconds run out. Takes several seconds (the VM boots); progress is reported.
        """)]
    public Task<CallToolResult> WorkspaceCreate(
        RequestContext<CallToolRequestParams> context,
        [Description(Environment)] string environment,
        [Description("Host directory, or .tar/.tar.gz/.tgz archive, copied into /workspace; must lie inside the host directories the server allows (by default its working directory). Omit for an empty /workspace.")] string? seed_path = null,
        [Description("Optional unique name usable instead of the id: letters, digits, '.', '_', '-'; at most 63 characters.")] string? name = null,
        [Description("Optional labels to find the workspace by later (workspace_list), e.g. {\"task\": \"fix-build\"}.")] Dictionary<string, string>? labels = null,
        [Description("Lifetime in seconds, 10 to 604800; the workspace is deleted when it runs out."), Range(10, 604800)] int ttl_seconds = 3600,
        [Description("Virtual CPUs, 1 to 32."), Range(1, 32)] int vcpu_count = 1,
        [Description("Guest memory in MiB, 128 to 65536."), Range(128, 65536)] int mem_mib = 1024,
        [Description("""
            The guest's network, kept across stop, start and reset: "off" (default: no network device), "egress"
            (outbound connections and DNS; ask for it only when the task needs downloads such as package installs or a
            git clone), or "egress+published-ports" (egress, and guest TCP ports may be published on the host's
            127.0.0.1). Whatever the policy, the guest cannot reach the host itself.
            """)] string network_policy = "off",
        [Description(HostCompat + " A workspace itself always runs in a VM.")] bool allow_host_compat = false,
        [Description(SecretsParameter)] JsonElement? secrets = null,
        [Description(ColdFlag)] bool cold = false,
        CancellationToken cancellationToken = default)
        => Guard(context, async progress =>
        {
            CheckHostCompat(allow_host_compat);
            var policy = CheckNetwork(ParseNetworkPolicy(network_policy), "network_policy");
            var info = await _pyro.CreateWorkspaceAsync(new WorkspaceCreateRequest
            {
                NetworkPolicy = policy,
                Environment = environment,
                SeedPath = seed_path is null ? null : _roots.Confine(seed_path, "seed_path"),
                Name = name,
                Labels = labels,
                TtlSeconds = ttl_seconds,
                VcpuCount = vcpu_count,
                MemMib = mem_mib,
                Secrets = ParseSecrets(secrets),
                Cold = cold,
                Progress = progress,
            }, cancellationToken).ConfigureAwait(false);
            return Ok(Json(info, PyroJsonContext.Default.WorkspaceInfo), $"workspace {info.WorkspaceId} is {info.State.ToName()} ({info.Environment}, started {info.StartMode ?? "?"}); expires {info.ExpiresAt:u}");
        });

    /// <summary>workspace_fork.</summary>
    [McpServerTool(Name = "workspace_fork", OpenWorld = false)]
    [Description("""
        Copies a running workspace into count new workspaces that start from its memory and disk as they are now:
        files, running services and open shells included. Each copy is independent afterwards, and its baseline
        (what workspace_diff compares against) is the source's current tree. Use it for parallel attempts: prepare
        one workspace (seed, install, build), fork it, and try a different fix in each copy. The source is paused
        for about a second and runs on. Copies are labeled pyro.fork-of=SOURCE; published ports are not copied.
        Returns the new workspaces. All or nothing.
        """)]
    public Task<CallToolResult> WorkspaceFork(
        RequestContext<CallToolRequestParams> context,
        [Description(WorkspaceId)] string workspace_id,
        [Description("How many copies, 1 to 16."), Range(1, 16)] int count = 1,
        [Description("Optional: name the copies PREFIX-1, PREFIX-2, ... (letters, digits, '.', '_', '-').")] string? name_prefix = null,
        [Description("Lifetime of each copy in seconds, 10 to 604800; default the source's."), Range(10, 604800)] int? ttl_seconds = null,
        CancellationToken cancellationToken = default)
        => Guard(context, async progress =>
        {
            var result = await _pyro.ForkWorkspaceAsync(workspace_id, new WorkspaceForkRequest { Count = count, NamePrefix = name_prefix, TtlSeconds = ttl_seconds, Progress = progress }, cancellationToken).ConfigureAwait(false);
            return Ok(Json(result, PyroJsonContext.Default.WorkspaceForkResult),
                $"forked {result.SourceWorkspaceId} into {string.Join(", ", result.Workspaces.Select(w => w.Name is null ? w.WorkspaceId : $"{w.WorkspaceId} ({w.Name})"))}");
        });

    /// <summary>workspace_list.</summary>
    [McpServerTool(Name = "workspace_list", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("Lists workspaces (id, name, environment, state, labels, expiry), optionally only those carrying all the given labels.")]
    public Task<CallToolResult> WorkspaceList(
        [Description("Only workspaces that have all of these labels, e.g. {\"task\": \"fix-build\"}.")] Dictionary<string, string>? labels = null,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var all = await _pyro.ListWorkspacesAsync(labels, cancellationToken).ConfigureAwait(false);
            return Ok(new JsonObject { ["workspaces"] = Json(all, PyroJsonContext.Default.IReadOnlyListWorkspaceInfo), ["count"] = all.Count, ["total"] = all.TotalCount, ["truncated"] = all.Truncated },
                all.Count == 0 ? "no workspaces" : string.Join("; ", all.Select(w => $"{w.WorkspaceId}{(w.Name is null ? "" : " " + w.Name)} {w.State.ToName()}")));
        });

    /// <summary>workspace_status.</summary>
    [McpServerTool(Name = "workspace_status", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("""
        Shows one workspace: state (running, stopped, crashed, failed, resetting) checked against the processes that
        really run, the reason for it, resources, command count and expiry. A crashed or stopped workspace can be
        started again with workspace_start (workspace-full profile) or reset with workspace_reset.
        """)]
    public Task<CallToolResult> WorkspaceStatus([Description(WorkspaceId)] string workspace_id, CancellationToken cancellationToken = default)
        => Guard(async () => Workspace(await _pyro.GetWorkspaceAsync(workspace_id, cancellationToken).ConfigureAwait(false)));

    /// <summary>workspace_exec.</summary>
    [McpServerTool(Name = "workspace_exec", OpenWorld = false)]
    [Description("""
        Runs one shell command in a workspace's VM; files it changes stay for later calls. The command is recorded in
        the workspace's history (workspace_logs). Returns exit_code (124 on timeout, 127 if the program does not
        exist), stdout and stderr (each capped at 1 MiB, with *_truncated flags), timed_out, sequence, cwd and
        duration_ms. A non-zero exit code is a normal result, not an error.
        """)]
    public Task<CallToolResult> WorkspaceExec(
        [Description(WorkspaceId)] string workspace_id,
        [Description(ShellCommand)] string command,
        [Description("Working directory; relative paths are under /workspace.")] string cwd = "/workspace",
        [Description("Seconds before the command's whole process group is killed (exit_code 124, timed_out true), 1 to 86400."), Range(1, 86400)] int timeout_seconds = 30,
        [Description(SecretEnvParameter)] JsonElement? secret_env = null,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var request = new WorkspaceExecRequest { Command = [command], Cwd = cwd, TimeoutSeconds = timeout_seconds, SecretEnv = ParseSecretEnv(secret_env) };
            var result = await _pyro.ExecWorkspaceAsync(workspace_id, request, cancellationToken).ConfigureAwait(false);
            return Ok(Json(result, PyroJsonContext.Default.WorkspaceExecResult), Exited("workspace_exec", result.ExitCode, result.TimedOut, timeout_seconds) + $"; sequence={result.Sequence}");
        });

    /// <summary>workspace_logs.</summary>
    [McpServerTool(Name = "workspace_logs", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("Returns a workspace's command history since creation or the last reset: sequence, command, cwd, exit_code, duration_ms, started_at (output is not kept).")]
    public Task<CallToolResult> WorkspaceLogs([Description(WorkspaceId)] string workspace_id, CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var history = await _pyro.GetWorkspaceLogsAsync(workspace_id, cancellationToken).ConfigureAwait(false);
            return Ok(new JsonObject { ["workspace_id"] = workspace_id, ["commands"] = Json(history, PyroJsonContext.Default.IReadOnlyListCommandRecord), ["total"] = history.TotalCount, ["truncated"] = history.Truncated },
                $"{history.Count} command(s)" + (history.Truncated ? $" (the latest of {history.TotalCount})" : "") + string.Concat(history.Select(c => $"\n#{c.Sequence} exit_code={c.ExitCode} $ {c.Command}")));
        });

    /// <summary>workspace_sync_push.</summary>
    [McpServerTool(Name = "workspace_sync_push", OpenWorld = false)]
    [Description("""
        Copies a host directory or .tar/.tar.gz/.tgz archive into the workspace (default /workspace), overwriting files
        of the same name. Entries that would escape the destination (absolute paths, '..', links out, devices) are
        refused and listed in skipped. Returns entries and bytes copied.
        """)]
    public Task<CallToolResult> WorkspaceSyncPush(
        [Description(WorkspaceId)] string workspace_id,
        [Description("Host directory or archive to copy; must lie inside the host directories the server allows.")] string source_path,
        [Description("Directory in the workspace; relative paths are under /workspace.")] string dest = "/workspace",
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var result = await _pyro.PushWorkspaceSyncAsync(workspace_id, _roots.Confine(source_path, "source_path"), dest, cancellationToken).ConfigureAwait(false);
            return Ok(Json(result, PyroJsonContext.Default.TransferResult), $"copied {result.Entries} entries ({result.Bytes} bytes) to {result.GuestPath}; {result.SkippedTotal} skipped");
        });

    /// <summary>workspace_file_list.</summary>
    [McpServerTool(Name = "workspace_file_list", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("Lists a directory of the workspace: path (relative to /workspace), type (file, directory, symlink), size, mode, link_target. Symlinks are not followed.")]
    public Task<CallToolResult> WorkspaceFileList(
        [Description(WorkspaceId)] string workspace_id,
        [Description("Directory; relative paths are under /workspace, absolute ones must be inside it.")] string path = ".",
        [Description("Descend into subdirectories.")] bool recursive = false,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var entries = await _pyro.ListWorkspaceFilesAsync(workspace_id, path, recursive, cancellationToken).ConfigureAwait(false);
            return Ok(new JsonObject { ["workspace_id"] = workspace_id, ["path"] = path, ["entries"] = Json(entries, PyroJsonContext.Default.IReadOnlyListFileEntry), ["total"] = entries.TotalCount, ["truncated"] = entries.Truncated },
                $"{entries.Count} entries" + (entries.Truncated ? $" (the first of {entries.TotalCount})" : "") + string.Concat(entries.Select(e => $"\n{Word(e.Type)} {e.Path}")));
        });

    /// <summary>workspace_file_read.</summary>
    [McpServerTool(Name = "workspace_file_read", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("""
        Reads a file of the workspace as text (UTF-8). Returns content, size and truncated (true when the file is longer
        than max_bytes). A file that is not text comes back base64-encoded with encoding "base64" and binary true;
        use workspace_export to copy such files to the host.
        """)]
    public Task<CallToolResult> WorkspaceFileRead(
        [Description(WorkspaceId)] string workspace_id,
        [Description("File path; relative paths are under /workspace, absolute ones must be inside it.")] string path,
        [Description("Read at most this many bytes, 1 to 1048576."), Range(1, 1048576)] int max_bytes = 65536,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            if (max_bytes is < 1 or > 1048576)
            {
                throw new ToolError("invalid_max_bytes", $"max_bytes must be between 1 and 1048576 (got {max_bytes})");
            }

            return FileRead(await _pyro.ReadWorkspaceFileAsync(workspace_id, path, max_bytes, cancellationToken).ConfigureAwait(false), max_bytes);
        });

    /// <summary>A file read (from a running workspace or a stopped one's disk) as a tool result: UTF-8 text, or base64.</summary>
    private static CallToolResult FileRead(FileContent file, int maxBytes)
    {
        var text = AsText(file.Content, file.Truncated);
        var summary = $"{file.Path}: {file.Size} bytes{(file.Truncated ? $" (truncated at max_bytes={maxBytes}; the file is longer)" : "")}{(text is null ? "; binary, content is base64" : "")}";
        return Ok(new JsonObject
        {
            ["workspace_id"] = file.WorkspaceId,
            ["path"] = file.Path,
            ["size"] = file.Size,
            ["truncated"] = file.Truncated,
            ["binary"] = text is null,
            ["encoding"] = text is null ? "base64" : "utf-8",
            ["content"] = text ?? Convert.ToBase64String(file.Content),
        }, summary, detail: text is null ? null : "---\n" + text);
    }

    /// <summary>workspace_file_write.</summary>
    [McpServerTool(Name = "workspace_file_write", Idempotent = true, OpenWorld = false)]
    [Description("Writes a text file in the workspace atomically (replacing it if it exists), creating parent directories. Never writes through a symlink. Returns the file's path, size and mode.")]
    public Task<CallToolResult> WorkspaceFileWrite(
        [Description(WorkspaceId)] string workspace_id,
        [Description("File path; relative paths are under /workspace, absolute ones must be inside it.")] string path,
        [Description("The full new content, written as UTF-8.")] string text,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            using var content = new MemoryStream(Encoding.UTF8.GetBytes(text));
            var entry = await _pyro.WriteWorkspaceFileAsync(workspace_id, path, content, cancellationToken).ConfigureAwait(false);
            var json = Json(entry, PyroJsonContext.Default.FileEntry);
            json["workspace_id"] = workspace_id;
            return Ok(json, $"wrote {entry.Size} bytes to {entry.Path}");
        });

    /// <summary>workspace_patch_apply.</summary>
    [McpServerTool(Name = "workspace_patch_apply", OpenWorld = false)]
    [Description("""
        Applies a unified diff (as produced by diff -u or git diff, including renames, mode changes, symlinks and
        git binary patches; several files, creations and deletions) to the workspace, byte for byte. Paths are relative
        to /workspace (a/ and b/ prefixes are fine). All or nothing: if any hunk does not apply, nothing is written and
        the error says which. Returns the files created, modified and deleted.
        """)]
    public Task<CallToolResult> WorkspacePatchApply(
        [Description(WorkspaceId)] string workspace_id,
        [Description("The unified diff text.")] string patch,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var result = await _pyro.ApplyWorkspacePatchAsync(workspace_id, patch, cancellationToken).ConfigureAwait(false);
            return Ok(Json(result, PyroJsonContext.Default.PatchResult), $"patched {result.Files.Count} file(s): {result.Created} created, {result.Modified} modified, {result.Deleted} deleted");
        });

    /// <summary>workspace_diff.</summary>
    [McpServerTool(Name = "workspace_diff", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("""
        Shows how /workspace differs from its baseline (the seed at create time): counts, each changed path with its kind
        of change, and in patch a git patch that git apply turns the baseline into the workspace with (text as hunks,
        non-UTF-8 content as git binary patches, mode changes, symlinks). Use it to review work before exporting it.
        """)]
    public Task<CallToolResult> WorkspaceDiff([Description(WorkspaceId)] string workspace_id, CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var diff = await _pyro.DiffWorkspaceAsync(workspace_id, cancellationToken).ConfigureAwait(false);
            return Ok(Json(diff, PyroJsonContext.Default.WorkspaceDiff),
                $"{diff.Added} added, {diff.Modified} modified, {diff.Deleted} deleted, {diff.TypeChanged} type changed",
                detail: diff.Patch.Length == 0 ? null : diff.Patch);
        });

    /// <summary>workspace_export.</summary>
    [McpServerTool(Name = "workspace_export", OpenWorld = false)]
    [Description("""
        Copies a file or directory out of the workspace to a host path, which must not exist yet. Nothing is written
        outside output_path; unsafe entries (links out, devices) are skipped and listed. Returns entries and bytes.
        """)]
    public Task<CallToolResult> WorkspaceExport(
        [Description(WorkspaceId)] string workspace_id,
        [Description("File or directory in the workspace; relative paths are under /workspace.")] string path,
        [Description("Host path to create; must not exist, and must lie inside the host directories the server allows.")] string output_path,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var result = await _pyro.ExportWorkspaceAsync(workspace_id, path, _roots.Confine(output_path, "output_path"), cancellationToken).ConfigureAwait(false);
            return Ok(Json(result, PyroJsonContext.Default.TransferResult), $"exported {result.GuestPath} to {result.HostPath}: {result.Entries} entries, {result.Bytes} bytes; {result.SkippedTotal} skipped");
        });

    /// <summary>workspace_reset.</summary>
    [McpServerTool(Name = "workspace_reset", Destructive = true, OpenWorld = false)]
    [Description("""
        Throws the workspace's VM away and boots a fresh one: a new disk from the environment, /workspace restored
        from the baseline (or from the named snapshot). Everything else done since is lost and the command history is
        cleared; the id stays the same. Use it to start over after a broken experiment.
        """)]
    public Task<CallToolResult> WorkspaceReset(
        [Description(WorkspaceId)] string workspace_id,
        [Description("What to restore: \"baseline\" (the create-time tree) or a named snapshot (see snapshot_list).")] string? snapshot = "baseline",
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var info = await _pyro.ResetWorkspaceAsync(workspace_id, snapshot ?? "baseline", cancellationToken).ConfigureAwait(false);
            var restored = info.Reset;
            return Workspace(info, restored is null ? "reset" : $"reset from snapshot {restored.Snapshot} ({restored.Kind}): {restored.Entries} entries, {restored.Bytes} bytes");
        });

    /// <summary>workspace_delete.</summary>
    [McpServerTool(Name = "workspace_delete", Destructive = true, Idempotent = true, OpenWorld = false)]
    [Description("Deletes a workspace for good: its VM, disk, baseline, snapshots and history. Export anything worth keeping first.")]
    public Task<CallToolResult> WorkspaceDelete([Description(WorkspaceId)] string workspace_id, CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var deleted = await _pyro.DeleteWorkspaceAsync(workspace_id, cancellationToken).ConfigureAwait(false);
            return Ok(new JsonObject { ["workspace_id"] = workspace_id, ["deleted"] = deleted }, deleted ? $"workspace {workspace_id} deleted" : $"workspace {workspace_id} was already gone");
        });

    /// <summary>workspace_stop.</summary>
    [McpServerTool(Name = "workspace_stop", Idempotent = true, OpenWorld = false)]
    [Description("Powers a workspace's VM off cleanly to free CPU and memory; the disk is kept and workspace_start boots it again. The TTL keeps running.")]
    public Task<CallToolResult> WorkspaceStop([Description(WorkspaceId)] string workspace_id, CancellationToken cancellationToken = default)
        => Guard(async () => Workspace(await _pyro.StopWorkspaceAsync(workspace_id, cancellationToken).ConfigureAwait(false)));

    /// <summary>workspace_start.</summary>
    [McpServerTool(Name = "workspace_start", OpenWorld = false)]
    [Description("Boots a stopped or crashed workspace again from its disk; files in /workspace are as they were.")]
    public Task<CallToolResult> WorkspaceStart([Description(WorkspaceId)] string workspace_id, CancellationToken cancellationToken = default)
        => Guard(async () => Workspace(await _pyro.StartWorkspaceAsync(workspace_id, cancellationToken).ConfigureAwait(false)));

    /// <summary>snapshot_create.</summary>
    [McpServerTool(Name = "snapshot_create", OpenWorld = false)]
    [Description("Saves the workspace's /workspace tree as a named snapshot that workspace_reset can restore later. Returns its name, entries and bytes.")]
    public Task<CallToolResult> SnapshotCreate(
        [Description(WorkspaceId)] string workspace_id,
        [Description("Snapshot name: letters, digits, '.', '_', '-'.")] string snapshot_name,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var snapshot = await _pyro.CreateSnapshotAsync(workspace_id, snapshot_name, cancellationToken).ConfigureAwait(false);
            var json = Json(snapshot, PyroJsonContext.Default.SnapshotInfo);
            json["workspace_id"] = workspace_id;
            return Ok(json, $"snapshot {snapshot.Name}: {snapshot.Entries} entries, {snapshot.Bytes} bytes");
        });

    /// <summary>snapshot_list.</summary>
    [McpServerTool(Name = "snapshot_list", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("Lists a workspace's snapshots (name, created_at, entries, bytes).")]
    public Task<CallToolResult> SnapshotList([Description(WorkspaceId)] string workspace_id, CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var all = await _pyro.ListSnapshotsAsync(workspace_id, cancellationToken).ConfigureAwait(false);
            return Ok(new JsonObject { ["workspace_id"] = workspace_id, ["snapshots"] = Json(all, PyroJsonContext.Default.IReadOnlyListSnapshotInfo) },
                all.Count == 0 ? "no snapshots" : string.Join(", ", all.Select(s => s.Name)));
        });

    /// <summary>snapshot_delete.</summary>
    [McpServerTool(Name = "snapshot_delete", Destructive = true, OpenWorld = false)]
    [Description("Deletes one named snapshot of a workspace; the workspace itself, its baseline and other snapshots are kept.")]
    public Task<CallToolResult> SnapshotDelete(
        [Description(WorkspaceId)] string workspace_id,
        [Description("The snapshot to delete (see snapshot_list).")] string snapshot_name,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            await _pyro.DeleteSnapshotAsync(workspace_id, snapshot_name, cancellationToken).ConfigureAwait(false);
            return Ok(new JsonObject { ["workspace_id"] = workspace_id, ["snapshot_name"] = snapshot_name, ["deleted"] = true }, $"snapshot {snapshot_name} deleted");
        });

    /// <summary>vm_create.</summary>
    [McpServerTool(Name = "vm_create", OpenWorld = false)]
    [Description("""
        Boots a bare microVM (no seed files) that stays up for vm_exec, vm_status, vm_stop, vm_start and vm_delete.
        It is a workspace labeled pyro.kind=vm, so the workspace tools work on it too. Returns vm_id. It is deleted
        when ttl_seconds run out, after vm_exec, or by vm_delete.
        """)]
    public Task<CallToolResult> VmCreate(
        RequestContext<CallToolRequestParams> context,
        [Description(Environment)] string environment,
        [Description("Virtual CPUs, 1 to 32."), Range(1, 32)] int vcpu_count = 1,
        [Description("Guest memory in MiB, 128 to 65536."), Range(128, 65536)] int mem_mib = 1024,
        [Description("Lifetime in seconds, 10 to 604800; the VM is deleted when it runs out."), Range(10, 604800)] int ttl_seconds = 600,
        [Description(NetworkFlag)] bool network = false,
        [Description(HostCompat + " The VM itself always runs as a VM.")] bool allow_host_compat = false,
        CancellationToken cancellationToken = default)
        => Guard(context, async progress =>
        {
            CheckHostCompat(allow_host_compat);
            CheckNetwork(network ? NetworkPolicy.Egress : NetworkPolicy.Off, "network");
            var info = await _pyro.CreateVmAsync(new VmCreateRequest
            {
                Network = network,
                Environment = environment,
                TtlSeconds = ttl_seconds,
                VcpuCount = vcpu_count,
                MemMib = mem_mib,
                Progress = progress,
            }, cancellationToken).ConfigureAwait(false);
            return Vm(info, $"vm {info.WorkspaceId} is {info.State.ToName()}");
        });

    /// <summary>vm_start.</summary>
    [McpServerTool(Name = "vm_start", Idempotent = true, OpenWorld = false)]
    [Description("Boots a stopped or crashed VM again from its disk. Does nothing if it is already running. Returns its status.")]
    public Task<CallToolResult> VmStart([Description(VmId)] string vm_id, CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var before = await _pyro.GetVmAsync(vm_id, cancellationToken).ConfigureAwait(false);
            var info = await _pyro.StartVmAsync(vm_id, cancellationToken).ConfigureAwait(false);
            return before.State == WorkspaceState.Running ? Vm(info, $"vm {info.WorkspaceId} was already running") : Vm(info);
        });

    /// <summary>vm_exec.</summary>
    [McpServerTool(Name = "vm_exec", Destructive = true, OpenWorld = false)]
    [Description("""
        Runs one shell command in a VM made by vm_create and then DELETES the VM (auto-clean, whether the command
        succeeded, failed or timed out). Returns exit_code, stdout, stderr, timed_out and auto_deleted. To run several
        commands in one machine, use a workspace and workspace_exec instead.
        """)]
    public Task<CallToolResult> VmExec(
        [Description(VmId)] string vm_id,
        [Description(ShellCommand)] string command,
        [Description("Seconds before the command's whole process group is killed (exit_code 124, timed_out true), 1 to 86400."), Range(1, 86400)] int timeout_seconds = 30,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var result = await _pyro.ExecVmAsync(vm_id, [command], timeout_seconds, cancellationToken).ConfigureAwait(false);
            return Ok(Json(result, PyroJsonContext.Default.VmExecResult), Exited("vm_exec", result.ExitCode, result.TimedOut, timeout_seconds) + $"; vm {result.VmId} was deleted");
        });

    /// <summary>vm_stop.</summary>
    [McpServerTool(Name = "vm_stop", Idempotent = true, OpenWorld = false)]
    [Description("Powers a VM off cleanly; its disk is kept for vm_start. Returns its status.")]
    public Task<CallToolResult> VmStop([Description(VmId)] string vm_id, CancellationToken cancellationToken = default)
        => Guard(async () => Vm(await _pyro.StopVmAsync(vm_id, cancellationToken).ConfigureAwait(false)));

    /// <summary>vm_delete.</summary>
    [McpServerTool(Name = "vm_delete", Destructive = true, Idempotent = true, OpenWorld = false)]
    [Description("Deletes a VM made by vm_create: its process, disk and history.")]
    public Task<CallToolResult> VmDelete([Description(VmId)] string vm_id, CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var info = await _pyro.GetVmAsync(vm_id, cancellationToken).ConfigureAwait(false);
            var deleted = await _pyro.DeleteVmAsync(info.WorkspaceId, cancellationToken).ConfigureAwait(false);
            return Ok(new JsonObject { ["vm_id"] = info.WorkspaceId, ["deleted"] = deleted }, $"vm {info.WorkspaceId} deleted");
        });

    /// <summary>vm_status.</summary>
    [McpServerTool(Name = "vm_status", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("Shows a VM made by vm_create: state (running, stopped, crashed, failed), resources and expiry.")]
    public Task<CallToolResult> VmStatus([Description(VmId)] string vm_id, CancellationToken cancellationToken = default)
        => Guard(async () => Vm(await _pyro.GetVmAsync(vm_id, cancellationToken).ConfigureAwait(false)));

    /// <summary>vm_network_info.</summary>
    [McpServerTool(Name = "vm_network_info", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("""
        Shows a VM's network: network_policy, and while it runs the guest's address, prefix_length, gateway and
        dns_servers (network is null for a VM made without network=true), and published_ports.
        """)]
    public Task<CallToolResult> VmNetworkInfo([Description(VmId)] string vm_id, CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var info = await _pyro.GetVmNetworkInfoAsync(vm_id, cancellationToken).ConfigureAwait(false);
            var summary = info.Network is { } net
                ? $"vm {info.VmId}: {info.NetworkPolicy.ToName()}, {net}"
                : $"vm {info.VmId}: {info.NetworkPolicy.ToName()}, no guest network{(info.NetworkError is null ? "" : $" ({info.NetworkError})")}";
            return Ok(Json(info, PyroJsonContext.Default.VmNetworkInfo), summary);
        });

    /// <summary>vm_reap_expired.</summary>
    [McpServerTool(Name = "vm_reap_expired", Destructive = true, Idempotent = true, OpenWorld = false)]
    [Description("Deletes every VM and workspace whose TTL has run out, including those whose supervisor died. Returns the deleted ids.")]
    public Task<CallToolResult> VmReapExpired(CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var reaped = await _pyro.ReapExpiredWorkspacesAsync(cancellationToken).ConfigureAwait(false);
            return Ok(new JsonObject { ["reaped"] = Json(reaped, PyroJsonContext.Default.IReadOnlyListString), ["count"] = reaped.Count },
                reaped.Count == 0 ? "nothing had expired" : $"deleted {string.Join(", ", reaped)}");
        });

    private static CallToolResult Workspace(WorkspaceInfo info, string? what = null)
        => Ok(Json(info, PyroJsonContext.Default.WorkspaceInfo), $"workspace {info.WorkspaceId} is {info.State.ToName()}{(info.StateReason is null ? "" : $" ({info.StateReason})")}{(what is null ? "" : "; " + what)}");

    private static CallToolResult Vm(WorkspaceInfo info, string? summary = null)
    {
        var json = Json(info, PyroJsonContext.Default.WorkspaceInfo);
        json["vm_id"] = info.WorkspaceId;
        return Ok(json, summary ?? $"vm {info.WorkspaceId} is {info.State.ToName()}{(info.StateReason is null ? "" : $" ({info.StateReason})")}");
    }

    private static string Exited(string tool, int exitCode, bool timedOut, int timeoutSeconds)
        => timedOut ? $"{tool}: timed out after {timeoutSeconds}s; the command's process group was killed (exit_code {exitCode})" : $"{tool}: exit_code={exitCode}";

    /// <summary>The word an enum value is in JSON, so a summary says what the structured content says.</summary>
    private static string Word<T>(T value) where T : struct, Enum
        => JsonSerializer.SerializeToElement(value, (JsonTypeInfo<T>)PyroJsonContext.Default.GetTypeInfo(typeof(T))!).GetString()!;

    private static JsonObject Json<T>(T value, JsonTypeInfo<T> type) => JsonSerializer.SerializeToNode(value, type)!.AsObject();

    private static JsonArray Json<T>(IReadOnlyList<T> value, JsonTypeInfo<IReadOnlyList<T>> type) => JsonSerializer.SerializeToNode(value, type)!.AsArray();

    /// <summary>
    /// Structured content for programs, and the same JSON in the text block because many hosts
    /// show the model only the text. <paramref name="detail"/> (file text, a patch) follows
    /// unescaped so the model can read it as it is.
    /// </summary>
    private static CallToolResult Ok(JsonObject structured, string summary, string? detail = null)
        => new()
        {
            StructuredContent = JsonSerializer.SerializeToElement(structured, JsonContext.Default.JsonObject),
            Content = [new TextContentBlock { Text = summary + "\n" + structured.ToJsonString() + (detail is null ? "" : "\n" + detail) }],
        };

    /// <summary>
    /// A failed call: the code and message, and when pyro knows them, the tool parameter the error is
    /// about and a hint in the model's terms (<see cref="ToolErrorHints"/>).
    /// </summary>
    private static CallToolResult Error(string code, string message, string? field = null)
    {
        var error = new JsonObject { ["code"] = code, ["message"] = message };
        var text = $"error {code}: {message}";
        if (field is not null)
        {
            error["parameter"] = ToolErrorHints.Parameter(field);
        }

        if (ToolErrorHints.For(code, field) is { } hint)
        {
            error["hint"] = hint;
            text += $"\nhint: {hint}";
        }

        return new()
        {
            IsError = true,
            StructuredContent = JsonSerializer.SerializeToElement(new JsonObject { ["error"] = error }, JsonContext.Default.JsonObject),
            Content = [new TextContentBlock { Text = text }],
        };
    }

    private static async Task<CallToolResult> Guard(Func<Task<CallToolResult>> action)
    {
        try
        {
            return await action().ConfigureAwait(false);
        }
        catch (PyroException ex)
        {
            return Error(ex.Code, ex.Message, (ex as PyroInputException)?.Field);
        }
        catch (ToolError ex)
        {
            return Error(ex.Code, ex.Message);
        }
        catch (HostPathException ex)
        {
            return Error(ex.Code, ex.Message);
        }
        catch (ArgumentException ex)
        {
            return Error("invalid_argument", ex.Message);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return Error("host_io_error", ex.Message);
        }
    }

    /// <summary>Like <see cref="Guard(Func{Task{CallToolResult}})"/>, with pyro's phases relayed as progress notifications when the client sent a progress token.</summary>
    private static async Task<CallToolResult> Guard(RequestContext<CallToolRequestParams> context, Func<IProgress<PyroProgress>?, Task<CallToolResult>> action)
    {
        var relay = context.Params?.ProgressToken is { } token ? new ProgressRelay(context.Server, token) : null;
        try
        {
            return await Guard(() => action(relay)).ConfigureAwait(false);
        }
        finally
        {
            if (relay is not null)
            {
                await relay.FlushAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>The bytes as text, or null when they are not UTF-8 (a cut at max_bytes may split the last character, which is allowed).</summary>
    private static string? AsText(byte[] content, bool truncated)
    {
        if (Array.IndexOf(content, (byte)0) >= 0)
        {
            return null;
        }

        var strict = new UTF8Encoding(false, throwOnInvalidBytes: true);
        for (var drop = 0; drop <= (truncated ? Math.Min(3, content.Length) : 0); drop++)
        {
            try
            {
                return strict.GetString(content, 0, content.Length - drop);
            }
            catch (DecoderFallbackException)
            {
            }
        }

        return null;
    }

    /// <summary>
    /// Sends pyro's phases as progress notifications, one after another: the SDK's own progress
    /// sender does not wait for one notification before the next, so they could reach the client
    /// out of order, and MCP requires the progress value to increase. Flushed before the tool's
    /// result, so every notification precedes it.
    /// </summary>
    private sealed class ProgressRelay(McpServer server, ProgressToken token) : IProgress<PyroProgress>
    {
        private readonly Lock _gate = new();
        private Task _last = Task.CompletedTask;
        private int _step;

        public void Report(PyroProgress value)
        {
            lock (_gate)
            {
                var notification = new ProgressNotificationValue { Progress = ++_step, Message = value.ToString() };
                _last = _last.ContinueWith(_ => server.NotifyProgressAsync(token, notification), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).Unwrap();
            }
        }

        public async Task FlushAsync()
        {
            Task last;
            lock (_gate)
            {
                last = _last;
            }

            try
            {
                await last.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // A notification that could not be sent must not turn a finished operation into a failure.
            }
        }
    }

    private sealed class ToolError(string code, string message) : Exception(message)
    {
        public string Code { get; } = code;
    }
}

// The tools' results, and every type a tool parameter has: the MCP SDK binds arguments and writes
// their schemas through these (no reflection-based JSON, so the CLI can be Native AOT).
// PyroMcpServer.ToolSerializerOptions combines this with the SDK's own context.
[System.Text.Json.Serialization.JsonSerializable(typeof(JsonObject))]
[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
[System.Text.Json.Serialization.JsonSerializable(typeof(bool))]
[System.Text.Json.Serialization.JsonSerializable(typeof(bool?))]
[System.Text.Json.Serialization.JsonSerializable(typeof(int))]
[System.Text.Json.Serialization.JsonSerializable(typeof(int?))]
[System.Text.Json.Serialization.JsonSerializable(typeof(long))]
[System.Text.Json.Serialization.JsonSerializable(typeof(long?))]
[System.Text.Json.Serialization.JsonSerializable(typeof(double?))]
[System.Text.Json.Serialization.JsonSerializable(typeof(string[]))]
[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, string>))]
[System.Text.Json.Serialization.JsonSerializable(typeof(System.Text.Json.JsonElement))]
[System.Text.Json.Serialization.JsonSerializable(typeof(System.Text.Json.JsonElement?))]
internal sealed partial class JsonContext : System.Text.Json.Serialization.JsonSerializerContext;
