using System.Text.Json;
using PyroMcp.Server;

namespace PyroMcp.Tests;

/// <summary><c>pyro mcp serve</c> and <see cref="PyroMcpServer"/> without a guest: tool sets, bad requests as tool errors, the stdio protocol. Every tool against real guests is in the guest tests.</summary>
public sealed class McpServerTests : NoGuestTest
{
    private static readonly string[] VmRun = ["vm_list_environments", "vm_run"];

    private static readonly string[] WorkspaceCore =
    [
        "vm_run", "workspace_create", "workspace_delete", "workspace_diff", "workspace_exec", "workspace_export",
        "workspace_file_list", "workspace_file_read", "workspace_file_write", "workspace_list", "workspace_logs",
        "workspace_patch_apply", "workspace_reset", "workspace_status", "workspace_sync_push",
    ];

    private static readonly string[] WorkspaceFull =
    [
        "service_list", "service_logs", "service_start", "service_status", "service_stop",
        "shell_close", "shell_open", "shell_read", "shell_signal", "shell_write",
        "snapshot_create", "snapshot_delete", "snapshot_list", "vm_create", "vm_delete", "vm_exec",
        "vm_list_environments", "vm_network_info", "vm_reap_expired", "vm_run", "vm_start", "vm_status", "vm_stop",
        "workspace_create", "workspace_delete", "workspace_diff", "workspace_disk_export", "workspace_disk_list", "workspace_disk_read",
        "workspace_exec", "workspace_export",
        "workspace_file_list", "workspace_file_read", "workspace_file_write", "workspace_fork", "workspace_list", "workspace_logs",
        "workspace_patch_apply", "workspace_reset", "workspace_start", "workspace_status", "workspace_stop",
        "workspace_sync_push",
    ];

    [Fact]
    public void EveryToolParameterAndResultHasSourceGeneratedJson()
    {
        // The native CLI has no reflection-based JSON: a tool whose parameter type is missing from
        // the server's context would fail there at start, not in these (JIT) tests. So: each one,
        // resolved through the same options the server gives the SDK, which fall back to nothing.
        var types = PyroMcpServer.AllTools()
            .SelectMany(t => t.Method.GetParameters().Select(p => p.ParameterType).Append(t.Method.ReturnType.GetGenericArguments().Single()))
            .Where(t => t != typeof(CancellationToken))
            .Distinct()
            .ToList();
        Assert.True(types.Count >= 8, $"only {types.Count} parameter types found: the reflection over the tools found too little");
        var missing = types.Where(t =>
        {
            try
            {
                return PyroMcpServer.ToolSerializerOptions.GetTypeInfo(t) is null;
            }
            catch (NotSupportedException)
            {
                return true;
            }
        }).ToList();
        Assert.True(missing.Count == 0, "no source-generated JSON for: " + string.Join(", ", missing));
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
        Assert.Equal(["environment", "command", "vcpu_count", "mem_mib", "timeout_seconds", "network", "allow_host_compat", "cold"], properties.EnumerateObject().Select(p => p.Name));
        Assert.False(properties.GetProperty("cold").GetProperty("default").GetBoolean());
        Assert.False(properties.GetProperty("network").GetProperty("default").GetBoolean());
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
        var result = await PyroCli.RunAsync("mcp", "serve", "--profile", "everything");
        Assert.Equal(2, result.ExitCode);
        Assert.Equal("", result.Stdout);
        Assert.Contains("unknown MCP profile 'everything': use one of workspace-core, vm-run, workspace-full", result.Stderr);
        Assert.Contains("error code: invalid_profile", result.Stderr);
    }

    /// <summary>The real program on stdio: stdout carries JSON-RPC and nothing else; end of input ends the server cleanly.</summary>
    [Fact]
    public async Task ServeSpeaksOnlyJsonRpcOnStdoutAndExitsAtEndOfInput()
    {
        using var process = PyroCli.Start(["mcp", "serve", "--profile", "vm-run"]);
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
}
