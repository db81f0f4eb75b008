using System.Diagnostics;
using System.IO.Pipelines;
using System.Text.Json;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;
using PyroMcp.Server;

namespace PyroMcp.GuestTests;

/// <summary>An MCP client connected to an in-process <see cref="PyroMcpServer"/> over pipes.</summary>
internal sealed class InProcessMcp : IAsyncDisposable
{
    private readonly Pipe _toServer = new();
    private readonly Pipe _toClient = new();
    private readonly CancellationTokenSource _stop = new();
    private Task _server = Task.CompletedTask;

    internal McpClient Client { get; private set; } = null!;

    internal static PyroOptions Options => new()
    {
        AgentPath = Repo.AgentPath,
        RunDir = Repo.RunDir,
        StateDir = Repo.StateDir,
        SupervisorPath = Path.Combine(Path.GetDirectoryName(Repo.CliDll)!, "pyro-supervisor.dll"),
    };

    /// <summary>A server whose client may use host paths under <paramref name="allowedPaths"/> (default: the temp directory tests seed from).</summary>
    internal static async Task<InProcessMcp> StartAsync(string profile, McpServerPolicy? policy = null, PyroOptions? options = null)
    {
        var mcp = new InProcessMcp();
        policy ??= new McpServerPolicy { AllowedPaths = [Path.GetTempPath()] };
        mcp._server = PyroMcpServer.RunAsync(mcp._toServer.Reader.AsStream(), mcp._toClient.Writer.AsStream(), profile, options ?? Options, policy, cancellationToken: mcp._stop.Token);
        mcp.Client = await McpClient.CreateAsync(new StreamClientTransport(mcp._toServer.Writer.AsStream(), mcp._toClient.Reader.AsStream()));
        return mcp;
    }

    internal async Task<CallToolResult> CallAsync(string tool, Dictionary<string, object?>? args = null, IProgress<ProgressNotificationValue>? progress = null)
    {
        if (progress is null)
        {
            return await Client.CallToolAsync(tool, args ?? []);
        }

        // The per-call progress sink of CallToolAsync is removed when the response arrives, and the
        // client dispatches notifications concurrently, so the last one (sent before the response)
        // can be dropped on our side. A session-level handler stays, and the test waits for it.
        var token = Guid.NewGuid().ToString("N");
        _ = Client.RegisterNotificationHandler(NotificationMethods.ProgressNotification, (notification, _) =>
        {
            if (notification.Params is { } p && p["progressToken"]?.GetValue<string>() == token)
            {
                progress.Report(new ProgressNotificationValue { Progress = p["progress"]!.GetValue<float>(), Message = p["message"]?.GetValue<string>() });
            }

            return ValueTask.CompletedTask;
        });
        return await Client.CallToolAsync(new CallToolRequestParams
        {
            Name = tool,
            Arguments = (args ?? []).ToDictionary(a => a.Key, a => JsonSerializer.SerializeToElement(a.Value)),
            Meta = new System.Text.Json.Nodes.JsonObject { ["progressToken"] = token },
        });
    }

    /// <summary>Calls a tool that must succeed; returns its structured content.</summary>
    internal async Task<JsonElement> OkAsync(string tool, Dictionary<string, object?>? args = null, IProgress<ProgressNotificationValue>? progress = null)
    {
        var result = await CallAsync(tool, args, progress);
        Assert.True(result.IsError != true, $"{tool} failed: {Text(result)}");
        Assert.NotNull(result.StructuredContent);
        Assert.Equal(JsonValueKind.Object, result.StructuredContent!.Value.ValueKind);
        Assert.False(string.IsNullOrWhiteSpace(Text(result)));
        return result.StructuredContent.Value;
    }

    /// <summary>Calls a tool that must fail with <paramref name="code"/>; returns the message.</summary>
    internal async Task<string> ErrorAsync(string tool, string code, Dictionary<string, object?> args)
    {
        var result = await CallAsync(tool, args);
        Assert.True(result.IsError == true, $"{tool} should have failed with {code}: {Text(result)}");
        var error = result.StructuredContent!.Value.GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.StartsWith($"error {code}: ", Text(result));
        return error.GetProperty("message").GetString()!;
    }

    internal static string Text(CallToolResult result) => string.Concat(result.Content.OfType<TextContentBlock>().Select(t => t.Text));

    public async ValueTask DisposeAsync()
    {
        await Client.DisposeAsync();
        await _toServer.Writer.CompleteAsync();
        _stop.Cancel();
        try
        {
            await _server;
        }
        catch (OperationCanceledException)
        {
        }
    }
}

/// <summary>Synchronous progress sink: <see cref="Progress{T}"/> would post and could lose the race with the assertion.</summary>
internal sealed class ProgressLog : IProgress<ProgressNotificationValue>
{
    private readonly List<ProgressNotificationValue> _values = [];

    internal IReadOnlyList<ProgressNotificationValue> Values
    {
        get
        {
            lock (_values)
            {
                return [.. _values];
            }
        }
    }

    public void Report(ProgressNotificationValue value)
    {
        lock (_values)
        {
            _values.Add(value);
        }
    }
}

/// <summary><c>pyro mcp serve</c> and <see cref="PyroMcpServer"/>: tool sets, every tool against real guests, error results, progress.</summary>
public sealed class McpTests : GuestTest
{
    private readonly string _host = Directory.CreateTempSubdirectory("pyro-mcp-test-").FullName;
    private readonly List<string> _created = [];

    internal static readonly string[] VmRun = ["vm_list_environments", "vm_run"];

    internal static readonly string[] WorkspaceCore =
    [
        "vm_run", "workspace_create", "workspace_delete", "workspace_diff", "workspace_exec", "workspace_export",
        "workspace_file_list", "workspace_file_read", "workspace_file_write", "workspace_list", "workspace_logs",
        "workspace_patch_apply", "workspace_reset", "workspace_status", "workspace_sync_push",
    ];

    internal static readonly string[] WorkspaceFull =
    [
        "snapshot_create", "snapshot_delete", "snapshot_list", "vm_create", "vm_delete", "vm_exec",
        "vm_list_environments", "vm_reap_expired", "vm_run", "vm_start", "vm_status", "vm_stop",
        "workspace_create", "workspace_delete", "workspace_diff", "workspace_exec", "workspace_export",
        "workspace_file_list", "workspace_file_read", "workspace_file_write", "workspace_list", "workspace_logs",
        "workspace_patch_apply", "workspace_reset", "workspace_start", "workspace_status", "workspace_stop",
        "workspace_sync_push",
    ];

    public override async Task DisposeAsync()
    {
        var pyro = new Pyro(InProcessMcp.Options);
        foreach (var id in _created)
        {
            try
            {
                await pyro.DeleteWorkspaceAsync(id);
            }
            catch (PyroException)
            {
            }
        }

        Directory.Delete(_host, recursive: true);
        await base.DisposeAsync();
    }

    private string Seed()
    {
        var seed = Path.Combine(_host, "seed");
        Directory.CreateDirectory(Path.Combine(seed, "src"));
        File.WriteAllText(Path.Combine(seed, "note.txt"), "hello from the seed\n");
        File.WriteAllText(Path.Combine(seed, "src", "app.py"), "print('v1')\n");
        return seed;
    }

    [Theory]
    [InlineData("vm-run")]
    [InlineData("workspace-core")]
    [InlineData("workspace-full")]
    public async Task EachProfileListsExactlyItsTools(string profile)
    {
        await using var mcp = await InProcessMcp.StartAsync(profile);
        var tools = await mcp.Client.ListToolsAsync();
        var expected = profile switch { "vm-run" => VmRun, "workspace-core" => WorkspaceCore, _ => WorkspaceFull };
        Assert.Equal(expected.Order(StringComparer.Ordinal), tools.Select(t => t.Name).Order(StringComparer.Ordinal));
        Assert.Equal(expected.Order(StringComparer.Ordinal), PyroMcpServer.ToolNames(profile).Order(StringComparer.Ordinal));
        foreach (var tool in tools)
        {
            Assert.True(tool.Description?.Length > 40, $"{tool.Name} needs a description a model can act on");
            Assert.Equal("object", tool.JsonSchema.GetProperty("type").GetString());
        }

        var run = tools.Single(t => t.Name == "vm_run").JsonSchema;
        Assert.Equal(["environment", "command"], run.GetProperty("required").EnumerateArray().Select(e => e.GetString()));
        var properties = run.GetProperty("properties");
        Assert.Equal(["environment", "command", "vcpu_count", "mem_mib", "timeout_seconds", "allow_host_compat"], properties.EnumerateObject().Select(p => p.Name));
        Assert.Equal(30, properties.GetProperty("timeout_seconds").GetProperty("default").GetInt32());
        Assert.Equal(86400, properties.GetProperty("timeout_seconds").GetProperty("maximum").GetInt32());
        Assert.Equal("integer", properties.GetProperty("mem_mib").GetProperty("type").GetString());
        Assert.False(properties.GetProperty("allow_host_compat").GetProperty("default").GetBoolean());
    }

    [Fact]
    public async Task BadRequestsAreToolErrorsNotProtocolErrors()
    {
        await using var mcp = await InProcessMcp.StartAsync("workspace-full");
        Assert.Contains("no workspace '000000000000'", await mcp.ErrorAsync("workspace_status", "workspace_not_found", new() { ["workspace_id"] = "000000000000" }));
        await mcp.ErrorAsync("workspace_exec", "workspace_not_found", new() { ["workspace_id"] = "nope", ["command"] = "true" });
        await mcp.ErrorAsync("vm_status", "workspace_not_found", new() { ["vm_id"] = "nope" });
        Assert.Contains("unknown environment", await mcp.ErrorAsync("vm_run", "unknown_environment", new() { ["environment"] = "plan9:4", ["command"] = "true" }), StringComparison.OrdinalIgnoreCase);
        Assert.Contains("vCPU count must be between 1 and 32", await mcp.ErrorAsync("vm_run", "invalid_vcpu_count", new() { ["environment"] = "debian:12", ["command"] = "true", ["vcpu_count"] = 99 }));

        // The SDK's message is in its own terms; the server names its parameter and the tool to call next, never a CLI flag.
        var vcpu = await mcp.CallAsync("vm_run", new() { ["environment"] = "debian:12", ["command"] = "true", ["vcpu_count"] = 99 });
        var vcpuError = vcpu.StructuredContent!.Value.GetProperty("error");
        Assert.Equal("vcpu_count", vcpuError.GetProperty("parameter").GetString());
        Assert.Equal("vcpu_count must be between 1 and 32", vcpuError.GetProperty("hint").GetString());
        Assert.Contains("\nhint: vcpu_count must be between 1 and 32", InProcessMcp.Text(vcpu));
        Assert.DoesNotContain("--", InProcessMcp.Text(vcpu));
        var missing = await mcp.CallAsync("workspace_status", new() { ["workspace_id"] = "000000000000" });
        Assert.Contains("workspace_list", missing.StructuredContent!.Value.GetProperty("error").GetProperty("hint").GetString());

        // The server survives all of that.
        Assert.Equal(0, (await mcp.OkAsync("workspace_list")).GetProperty("count").GetInt32());
    }

    [Fact]
    public async Task ServeRejectsAnUnknownProfileWithExit2()
    {
        var result = await Cli.RunAsync("mcp", "serve", "--profile", "everything");
        Assert.Equal(2, result.ExitCode);
        Assert.Equal("", result.Stdout);
        Assert.Contains("unknown MCP profile 'everything': use one of workspace-core, vm-run, workspace-full", result.Stderr);
        Assert.Contains("error code: invalid_profile", result.Stderr);
    }

    /// <summary>The real program on stdio: stdout carries JSON-RPC and nothing else; end of input ends the server cleanly.</summary>
    [Fact]
    public async Task ServeSpeaksOnlyJsonRpcOnStdoutAndExitsAtEndOfInput()
    {
        using var process = Cli.Start(["mcp", "serve", "--profile", "vm-run"]);
        var stderr = process.StandardError.ReadToEndAsync();
        string[] requests =
        [
            """{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}""",
            """{"jsonrpc":"2.0","method":"notifications/initialized"}""",
            """{"jsonrpc":"2.0","id":2,"method":"tools/list"}""",
            """{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"vm_list_environments","arguments":{}}}""",
            """{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"workspace_status","arguments":{"workspace_id":"x"}}}""",
        ];
        foreach (var request in requests)
        {
            await process.StandardInput.WriteLineAsync(request);
        }

        await process.StandardInput.FlushAsync();
        var replies = new List<JsonElement>();
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (replies.Count(r => r.TryGetProperty("id", out _)) < 4)
        {
            var line = await process.StandardOutput.ReadLineAsync(limit.Token);
            if (line is null)
            {
                Assert.Fail("the server closed stdout early: " + await stderr);
            }

            // Every line on stdout must be a JSON-RPC message; anything else would break the client.
            replies.Add(JsonDocument.Parse(line!).RootElement);
        }

        // End of input is how a stdio client says goodbye: the server must exit 0 and write nothing more.
        process.StandardInput.Close();
        var rest = await process.StandardOutput.ReadToEndAsync(limit.Token);
        await process.WaitForExitAsync(limit.Token);
        Assert.True(process.ExitCode == 0, await stderr);
        Assert.Equal("", rest.Trim());
        Assert.All(replies, r => Assert.Equal("2.0", r.GetProperty("jsonrpc").GetString()));
        var byId = replies.Where(r => r.TryGetProperty("id", out _)).ToDictionary(r => r.GetProperty("id").GetInt32());
        Assert.Equal("pyro", byId[1].GetProperty("result").GetProperty("serverInfo").GetProperty("name").GetString());
        Assert.Equal(2, byId[2].GetProperty("result").GetProperty("tools").GetArrayLength());
        Assert.Contains("debian:12", byId[3].GetProperty("result").GetProperty("content")[0].GetProperty("text").GetString());
        // workspace_status is not in vm-run: the protocol's own error for an unknown tool.
        Assert.Contains("workspace_status", byId[4].GetProperty("error").GetProperty("message").GetString());
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

        var push = Path.Combine(_host, "push");
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
        var baseline = await mcp.OkAsync("workspace_exec", new() { ["workspace_id"] = id, ["command"] = "cat src/app.py; ls" });
        Assert.Equal("print('v1')\nnote.txt\nsrc\n", baseline.GetProperty("stdout").GetString());
        var toSnapshot = await mcp.OkAsync("workspace_reset", new() { ["workspace_id"] = id, ["snapshot"] = "patched" });
        Assert.Equal(2, toSnapshot.GetProperty("reset_count").GetInt32());

        var exportPath = Path.Combine(_host, "exported-src");
        var exported = await mcp.OkAsync("workspace_export", new() { ["workspace_id"] = id, ["path"] = "src", ["output_path"] = exportPath });
        Assert.Equal(exportPath, exported.GetProperty("host_path").GetString());
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
            await using var isolated = await InProcessMcp.StartAsync("workspace-full", options: InProcessMcp.Options with { StateDir = own });
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
    public async Task TypeScriptSdkClientDrivesTheServer()
    {
        var dir = Path.Combine(Repo.Root, "tests", "mcp-e2e");
        var install = await Exec("npm", ["ci", "--no-audit", "--no-fund"], dir, TimeSpan.FromMinutes(5));
        Assert.True(install.ExitCode == 0, "npm ci failed:\n" + install);

        var seed = Path.Combine(_host, "seed");
        Directory.CreateDirectory(Path.Combine(seed, "src"));
        File.WriteAllText(Path.Combine(seed, "note.txt"), "hello from the seed\n");
        File.WriteAllText(Path.Combine(seed, "src", "app.py"), "print(1)\n");
        var result = await Exec("node", ["client.mjs", Repo.CliDll, seed], dir, TimeSpan.FromMinutes(5));
        Assert.True(result.ExitCode == 0, "the TypeScript client failed:\n" + result);
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var summary = lines[^1];
        Assert.True(summary.GetProperty("ok").GetBoolean());
        Assert.Equal(2, summary.GetProperty("profiles").GetProperty("vm-run").GetInt32());
        Assert.Equal(15, summary.GetProperty("profiles").GetProperty("workspace-core").GetInt32());
        Assert.Equal(28, summary.GetProperty("profiles").GetProperty("workspace-full").GetInt32());
        Assert.True(summary.GetProperty("progress").GetInt32() > 0);
        Assert.Equal(
            ["workspace_create", "workspace_exec", "workspace_file_write", "workspace_patch_apply", "workspace_diff", "workspace_reset", "workspace_exec", "workspace_delete"],
            lines[..^1].Select(l => l.GetProperty("step").GetString()));
        var diff = lines[..^1].Single(l => l.GetProperty("step").GetString() == "workspace_diff").GetProperty("structured");
        Assert.Equal(1, diff.GetProperty("added").GetInt32());
        Assert.Equal(1, diff.GetProperty("modified").GetInt32());
    }

    private static async Task<CliResult> Exec(string program, string[] args, string cwd, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(program) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["PYRO_RUN_DIR"] = Repo.RunDir;
        start.Environment["PYRO_STATE_DIR"] = Repo.StateDir;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var limit = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish:\n{await stderr}");
        }

        return new CliResult(process.ExitCode, await stdout, await stderr);
    }
}
