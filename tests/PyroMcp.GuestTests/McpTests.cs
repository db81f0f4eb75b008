using System.Text.Json;
using ModelContextProtocol.Protocol;
using PyroMcp.Server;

namespace PyroMcp.GuestTests;

/// <summary>
/// <see cref="PyroMcpServer"/> against real guests: every tool, progress, and a client nobody here
/// wrote. Tool sets and bad requests are in the fast project. The TypeScript client (npm ci, then
/// its own server and workspace) runs in a lane beside the other tests, with scratch of its own.
/// </summary>
[TestCaseOrderer(LaneOrderer.Name, LaneOrderer.Assembly)]
public sealed class McpTests(Lanes lanes) : GuestTest, IClassFixture<Lanes>
{
    private readonly List<string> _created = [];

    public override Task InitializeAsync()
    {
        lanes.Begin(GetType(), key => key == nameof(TypeScriptSdkClientDrivesTheServer) ? TypeScriptSdkClientLaneAsync : throw new ArgumentException($"no lane {key}", nameof(key)));
        return base.InitializeAsync();
    }

    public override async Task DisposeAsync()
    {
        await PyroScratch.DeleteWorkspacesAsync(_created);
        await base.DisposeAsync();
    }

    private string Seed()
    {
        var seed = Path.Combine(HostDir, "seed");
        Directory.CreateDirectory(Path.Combine(seed, "src"));
        File.WriteAllText(Path.Combine(seed, "note.txt"), "hello from the seed\n");
        File.WriteAllText(Path.Combine(seed, "src", "app.py"), "print('v1')\n");
        return seed;
    }

    /// <summary>Every workspace and snapshot tool of workspace-full against one real workspace.</summary>
    [Fact]
    public async Task EveryWorkspaceToolAgainstOneWorkspace()
    {
        await using var mcp = await InProcessMcp.StartAsync("workspace-full");
        var progress = new ProgressLog();
        var created = await mcp.OkAsync("workspace_create", new()
        {
            ["environment"] = "debian:12",
            ["seed_path"] = Seed(),
            ["name"] = "mcp-flow",
            ["labels"] = new Dictionary<string, string> { ["task"] = "mcp" },
            ["ttl_seconds"] = 900,
        }, progress);
        var id = created.GetProperty("workspace_id").GetString()!;
        _created.Add(id);
        Assert.Matches("^[0-9a-f]{12}$", id);
        Assert.Equal("running", created.GetProperty("state").GetString());
        Assert.Equal("mcp", created.GetProperty("labels").GetProperty("task").GetString());

        // Notifications can trail the response by a moment.
        for (var i = 0; i < 50 && !progress.Values.Any(v => v.Message!.StartsWith("[workspace-create] phase=ready")); i++)
        {
            await Task.Delay(100);
        }

        var messages = progress.Values.Select(v => v.Message!).ToList();
        Assert.Contains(messages, m => m.StartsWith("[workspace-create] phase=seed"));
        Assert.Contains(messages, m => m.StartsWith("[workspace-create] phase=ready"));
        // The C# client may hand notifications to the sink concurrently, so order is checked on the
        // wire by the TypeScript client (tests/mcp-e2e); here: one notification per step, none lost.
        Assert.Equal(Enumerable.Range(1, progress.Values.Count).Select(i => (float)i), progress.Values.Select(v => v.Progress).Order());

        var exec = await mcp.OkAsync("workspace_exec", new() { ["workspace_id"] = "mcp-flow", ["command"] = "cat note.txt && pwd && echo oops >&2; exit 3" });
        Assert.Equal(3, exec.GetProperty("exit_code").GetInt32());
        Assert.Equal("hello from the seed\n/workspace\n", exec.GetProperty("stdout").GetString());
        Assert.Equal("oops\n", exec.GetProperty("stderr").GetString());

        var slow = await mcp.CallAsync("workspace_exec", new() { ["workspace_id"] = id, ["command"] = "sleep 10", ["timeout_seconds"] = 1 });
        Assert.NotEqual(true, slow.IsError);
        Assert.True(slow.StructuredContent!.Value.GetProperty("timed_out").GetBoolean());
        Assert.Equal(124, slow.StructuredContent.Value.GetProperty("exit_code").GetInt32());
        Assert.Contains("timed out after 1s", InProcessMcp.Text(slow));

        var written = await mcp.OkAsync("workspace_file_write", new() { ["workspace_id"] = id, ["path"] = "docs/readme.md", ["text"] = "# notes\nline two\n" });
        Assert.Equal(17, written.GetProperty("size").GetInt64());
        var read = await mcp.OkAsync("workspace_file_read", new() { ["workspace_id"] = id, ["path"] = "/workspace/docs/readme.md" });
        Assert.Equal("# notes\nline two\n", read.GetProperty("content").GetString());
        Assert.False(read.GetProperty("truncated").GetBoolean());
        Assert.Equal("utf-8", read.GetProperty("encoding").GetString());
        var cut = await mcp.CallAsync("workspace_file_read", new() { ["workspace_id"] = id, ["path"] = "docs/readme.md", ["max_bytes"] = 4 });
        Assert.Equal("# no", cut.StructuredContent!.Value.GetProperty("content").GetString());
        Assert.True(cut.StructuredContent.Value.GetProperty("truncated").GetBoolean());
        Assert.Contains("truncated at max_bytes=4", InProcessMcp.Text(cut));
        await mcp.OkAsync("workspace_exec", new() { ["workspace_id"] = id, ["command"] = "printf 'a\\000b' > blob.bin" });
        var binary = await mcp.OkAsync("workspace_file_read", new() { ["workspace_id"] = id, ["path"] = "blob.bin" });
        Assert.True(binary.GetProperty("binary").GetBoolean());
        Assert.Equal(Convert.ToBase64String("a\0b"u8.ToArray()), binary.GetProperty("content").GetString());

        var listed = await mcp.OkAsync("workspace_file_list", new() { ["workspace_id"] = id, ["recursive"] = true });
        var paths = listed.GetProperty("entries").EnumerateArray().ToDictionary(e => e.GetProperty("path").GetString()!, e => e.GetProperty("type").GetString());
        Assert.Equal("file", paths["note.txt"]);
        Assert.Equal("directory", paths["src"]);
        Assert.Equal("file", paths["src/app.py"]);
        Assert.Equal("file", paths["docs/readme.md"]);

        var push = Path.Combine(HostDir, "push");
        Directory.CreateDirectory(push);
        File.WriteAllText(Path.Combine(push, "pushed.txt"), "from the host\n");
        var pushed = await mcp.OkAsync("workspace_sync_push", new() { ["workspace_id"] = id, ["source_path"] = push, ["dest"] = "incoming" });
        Assert.Equal("/workspace/incoming", pushed.GetProperty("guest_path").GetString());
        Assert.True(pushed.GetProperty("bytes").GetInt64() >= 14);

        var patch = "--- a/src/app.py\n+++ b/src/app.py\n@@ -1 +1,2 @@\n-print('v1')\n+print('v2')\n+print('more')\n";
        var patched = await mcp.OkAsync("workspace_patch_apply", new() { ["workspace_id"] = id, ["patch"] = patch });
        Assert.Equal(["src/app.py"], patched.GetProperty("files").EnumerateArray().Select(f => f.GetString()));
        Assert.Equal(1, patched.GetProperty("modified").GetInt32());

        // Failures the model can act on; the workspace is unharmed.
        Assert.Contains("does not apply", await mcp.ErrorAsync("workspace_patch_apply", "patch_does_not_apply", new() { ["workspace_id"] = id, ["patch"] = patch }), StringComparison.OrdinalIgnoreCase);
        await mcp.ErrorAsync("workspace_file_read", "path_escapes_workspace", new() { ["workspace_id"] = id, ["path"] = "../etc/passwd" });
        Assert.Contains("outside the workspace", await mcp.ErrorAsync("workspace_file_write", "outside_workspace", new() { ["workspace_id"] = id, ["path"] = "/etc/evil", ["text"] = "x" }));
        Assert.Contains("not a VM", await mcp.ErrorAsync("vm_exec", "not_a_vm", new() { ["vm_id"] = id, ["command"] = "true" }));

        var diff = await mcp.OkAsync("workspace_diff", new() { ["workspace_id"] = id });
        var changes = diff.GetProperty("changes").EnumerateArray().ToDictionary(c => c.GetProperty("path").GetString()!, c => c.GetProperty("change").GetString());
        Assert.Equal("modified", changes["src/app.py"]);
        Assert.Equal("added", changes["docs/readme.md"]);
        Assert.Equal("added", changes["incoming/pushed.txt"]);
        Assert.Contains("+print('v2')", diff.GetProperty("patch").GetString());

        var snapshot = await mcp.OkAsync("snapshot_create", new() { ["workspace_id"] = id, ["snapshot_name"] = "patched" });
        Assert.Equal("patched", snapshot.GetProperty("name").GetString());
        var snapshots = await mcp.OkAsync("snapshot_list", new() { ["workspace_id"] = id });
        Assert.Equal(["patched"], snapshots.GetProperty("snapshots").EnumerateArray().Select(s => s.GetProperty("name").GetString()));

        var reset = await mcp.OkAsync("workspace_reset", new() { ["workspace_id"] = id });
        Assert.Equal(1, reset.GetProperty("reset_count").GetInt32());
        // snapshot defaults to "baseline": the restored tree is the seed's (note.txt, src, src/app.py).
        Assert.Equal("baseline", reset.GetProperty("reset").GetProperty("snapshot").GetString());
        Assert.Equal("baseline", reset.GetProperty("reset").GetProperty("kind").GetString());
        Assert.Equal(3, reset.GetProperty("reset").GetProperty("entries").GetInt64());
        var baseline = await mcp.OkAsync("workspace_exec", new() { ["workspace_id"] = id, ["command"] = "cat src/app.py; ls" });
        Assert.Equal("print('v1')\nnote.txt\nsrc\n", baseline.GetProperty("stdout").GetString());
        var toSnapshot = await mcp.OkAsync("workspace_reset", new() { ["workspace_id"] = id, ["snapshot"] = "patched" });
        Assert.Equal(2, toSnapshot.GetProperty("reset_count").GetInt32());
        Assert.Equal("named", toSnapshot.GetProperty("reset").GetProperty("kind").GetString());
        Assert.Equal(snapshot.GetProperty("entries").GetInt64(), toSnapshot.GetProperty("reset").GetProperty("entries").GetInt64());

        var exportPath = Path.Combine(HostDir, "exported-src");
        var exported = await mcp.OkAsync("workspace_export", new() { ["workspace_id"] = id, ["path"] = "src", ["output_path"] = exportPath });
        Assert.Equal(exportPath, exported.GetProperty("host_path").GetString());
        Assert.Equal("directory", exported.GetProperty("artifact_type").GetString());
        Assert.Equal("print('v2')\nprint('more')\n", File.ReadAllText(Path.Combine(exportPath, "app.py")));

        await mcp.OkAsync("workspace_exec", new() { ["workspace_id"] = id, ["command"] = "echo after-reset > marker" });
        var logs = await mcp.OkAsync("workspace_logs", new() { ["workspace_id"] = id });
        Assert.Equal(["echo after-reset > marker"], logs.GetProperty("commands").EnumerateArray().Select(c => c.GetProperty("command").GetString()));

        var status = await mcp.OkAsync("workspace_status", new() { ["workspace_id"] = id });
        Assert.Equal("running", status.GetProperty("state").GetString());
        Assert.Equal("mcp-flow", status.GetProperty("name").GetString());
        var list = await mcp.OkAsync("workspace_list", new() { ["labels"] = new Dictionary<string, string> { ["task"] = "mcp" } });
        Assert.Equal([id], list.GetProperty("workspaces").EnumerateArray().Select(w => w.GetProperty("workspace_id").GetString()));
        Assert.Equal(0, (await mcp.OkAsync("workspace_list", new() { ["labels"] = new Dictionary<string, string> { ["task"] = "other" } })).GetProperty("count").GetInt32());

        Assert.Equal("stopped", (await mcp.OkAsync("workspace_stop", new() { ["workspace_id"] = id })).GetProperty("state").GetString());
        Assert.Equal("running", (await mcp.OkAsync("workspace_start", new() { ["workspace_id"] = id })).GetProperty("state").GetString());
        var kept = await mcp.OkAsync("workspace_file_read", new() { ["workspace_id"] = id, ["path"] = "marker" });
        Assert.Equal("after-reset\n", kept.GetProperty("content").GetString());

        Assert.True((await mcp.OkAsync("snapshot_delete", new() { ["workspace_id"] = id, ["snapshot_name"] = "patched" })).GetProperty("deleted").GetBoolean());
        Assert.Equal(0, (await mcp.OkAsync("snapshot_list", new() { ["workspace_id"] = id })).GetProperty("snapshots").GetArrayLength());

        Assert.True((await mcp.OkAsync("workspace_delete", new() { ["workspace_id"] = id })).GetProperty("deleted").GetBoolean());
        await mcp.ErrorAsync("workspace_status", "workspace_not_found", new() { ["workspace_id"] = id });
    }

    /// <summary>vm_* lifecycle tools, vm_run and the environment list.</summary>
    [Fact]
    public async Task VmToolsAndOneShotRun()
    {
        await using var mcp = await InProcessMcp.StartAsync("workspace-full");
        var environments = await mcp.OkAsync("vm_list_environments");
        var debian = environments.GetProperty("environments").EnumerateArray().Single(e => e.GetProperty("name").GetString() == "debian:12");
        Assert.True(debian.GetProperty("installed").GetBoolean());

        var progress = new ProgressLog();
        var run = await mcp.OkAsync("vm_run", new() { ["environment"] = "debian:12", ["command"] = "echo \"hi $((6*7))\" | tr a-z A-Z; uname -s" }, progress);
        Assert.Equal(0, run.GetProperty("exit_code").GetInt32());
        Assert.Equal("HI 42\nLinux\n", run.GetProperty("stdout").GetString());
        Assert.Equal("guest_virtio_serial", run.GetProperty("execution_mode").GetString());
        Assert.True(run.GetProperty("cleanup").GetProperty("deleted").GetBoolean());
        for (var i = 0; i < 50 && !progress.Values.Any(v => v.Message!.StartsWith("[run] phase=execute")); i++)
        {
            await Task.Delay(100);
        }

        Assert.Contains(progress.Values, v => v.Message!.StartsWith("[run] phase=start"));

        var created = await mcp.OkAsync("vm_create", new() { ["environment"] = "debian:12", ["ttl_seconds"] = 300 });
        var vm = created.GetProperty("vm_id").GetString()!;
        _created.Add(vm);
        Assert.Equal("vm", created.GetProperty("labels").GetProperty(PyroTools.KindLabel).GetString());
        Assert.Equal("running", (await mcp.OkAsync("vm_status", new() { ["vm_id"] = vm })).GetProperty("state").GetString());
        var started = await mcp.CallAsync("vm_start", new() { ["vm_id"] = vm });
        Assert.Contains("already running", InProcessMcp.Text(started));

        var exec = await mcp.OkAsync("vm_exec", new() { ["vm_id"] = vm, ["command"] = "cat /etc/debian_version >/dev/null && echo in-vm" });
        Assert.Equal("in-vm\n", exec.GetProperty("stdout").GetString());
        Assert.True(exec.GetProperty("auto_deleted").GetBoolean());
        await mcp.ErrorAsync("vm_status", "workspace_not_found", new() { ["vm_id"] = vm });

        var second = (await mcp.OkAsync("vm_create", new() { ["environment"] = "debian:12" })).GetProperty("vm_id").GetString()!;
        _created.Add(second);
        Assert.Equal("stopped", (await mcp.OkAsync("vm_stop", new() { ["vm_id"] = second })).GetProperty("state").GetString());
        Assert.True((await mcp.OkAsync("vm_delete", new() { ["vm_id"] = second })).GetProperty("deleted").GetBoolean());

        // Reaping is global: on the shared state directory it would race every other test's
        // workspaces, so it runs against a state directory of its own.
        var own = Directory.CreateTempSubdirectory("pyro-mcp-reap-").FullName;
        try
        {
            await using var isolated = await InProcessMcp.StartAsync("workspace-full", options: PyroScratch.Options with { StateDir = own });
            var reaped = await isolated.OkAsync("vm_reap_expired");
            Assert.Equal(0, reaped.GetProperty("count").GetInt32());
        }
        finally
        {
            Directory.Delete(own, recursive: true);
        }
    }

    /// <summary>A client nobody here wrote: the official TypeScript SDK spawns <c>pyro mcp serve</c> and drives it.</summary>
    [Fact]
    [Lane(1)]
    public Task TypeScriptSdkClientDrivesTheServer() => lanes.RunAsync(nameof(TypeScriptSdkClientDrivesTheServer), TypeScriptSdkClientLaneAsync);

    private static async Task TypeScriptSdkClientLaneAsync()
    {
        await using var scratch = new LaneScratch("mcp-ts");
        using var host = new TempDir("pyro-mcp-ts-");
        var dir = Path.Combine(Repo.Root, "tests", "mcp-e2e");
        var install = await Processes.RunAsync("npm", ["ci", "--no-audit", "--no-fund"], dir, scratch.Env, TimeSpan.FromMinutes(5));
        Assert.True(install.ExitCode == 0, "npm ci failed:\n" + install);

        var seed = Path.Combine(host.Path, "seed");
        Directory.CreateDirectory(Path.Combine(seed, "src"));
        File.WriteAllText(Path.Combine(seed, "note.txt"), "hello from the seed\n");
        File.WriteAllText(Path.Combine(seed, "src", "app.py"), "print(1)\n");
        var result = await Processes.RunAsync("node", ["client.mjs", Repo.Cli, seed], dir, scratch.Env, TimeSpan.FromMinutes(5));
        Assert.True(result.ExitCode == 0, "the TypeScript client failed:\n" + result);
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var summary = lines[^1];
        Assert.True(summary.GetProperty("ok").GetBoolean());
        Assert.Equal(2, summary.GetProperty("profiles").GetProperty("vm-run").GetInt32());
        Assert.Equal(15, summary.GetProperty("profiles").GetProperty("workspace-core").GetInt32());
        Assert.Equal(43, summary.GetProperty("profiles").GetProperty("workspace-full").GetInt32());
        Assert.True(summary.GetProperty("progress").GetInt32() > 0);
        Assert.Equal(
            ["workspace_create", "workspace_exec", "workspace_file_write", "workspace_patch_apply", "workspace_diff", "workspace_reset", "workspace_exec", "workspace_delete"],
            lines[..^1].Select(l => l.GetProperty("step").GetString()));
        var diff = lines[..^1].Single(l => l.GetProperty("step").GetString() == "workspace_diff").GetProperty("structured");
        Assert.Equal(1, diff.GetProperty("added").GetInt32());
        Assert.Equal(1, diff.GetProperty("modified").GetInt32());
        await scratch.AssertCleanAsync();
    }
}
