using System.Text.Json;
using System.Text.Json.Nodes;
using ModelContextProtocol.Protocol;
using PyroMcp.Server;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// Every command result is one <see cref="ExecResult"/>: the fields it declares have one JSON name
/// and value in a one-shot run, a workspace command and a VM command, and each result's JSON keeps
/// the shape the CLI and MCP tools have always printed.
/// </summary>
public sealed class ExecResultTests
{
    private static readonly string[] SharedKeys =
        ["command", "execution_mode", "exit_code", "signal", "timed_out", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "duration_ms"];

    private static RunResult Run() => new()
    {
        Environment = "debian:12",
        ExecutionMode = ExecutionMode.Guest,
        VmId = "0123456789ab",
        Command = "sh -c 'exit 3'",
        ExitCode = 3,
        Signal = "SIGTERM",
        TimedOut = true,
        Stdout = "out\n",
        Stderr = "err\n",
        StdoutTruncated = true,
        StderrTruncated = false,
        DurationMs = 1234,
        GuestKernel = "6.1.0-test",
        Cleanup = new CleanupInfo(true, "post_exec_cleanup", "0123456789ab"),
    };

    private static WorkspaceExecResult Workspace() => new()
    {
        WorkspaceId = "0123456789ab",
        Sequence = 7,
        Command = "sh -c 'exit 3'",
        Cwd = "/workspace",
        ExitCode = 3,
        Signal = "SIGTERM",
        TimedOut = true,
        Stdout = "out\n",
        Stderr = "err\n",
        StdoutTruncated = true,
        StderrTruncated = false,
        DurationMs = 1234,
    };

    private static JsonObject Json<T>(T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
        => JsonSerializer.SerializeToNode(value, type)!.AsObject();

    [Fact]
    public void RunAndWorkspaceResultsWriteTheSharedFieldsUnderTheSameNames()
    {
        var run = Json(Run(), PyroJsonContext.Default.RunResult);
        var workspace = Json(Workspace(), PyroJsonContext.Default.WorkspaceExecResult);

        // The shared record's properties, as the source-generated context names them.
        var declared = typeof(ExecResult).GetProperties().Select(p => JsonNamingPolicy.SnakeCaseLower.ConvertName(p.Name)).Order().ToList();
        Assert.Equal(SharedKeys.Order(), declared);
        foreach (var key in SharedKeys)
        {
            Assert.True(run.ContainsKey(key), $"run result lacks {key}");
            Assert.True(workspace.ContainsKey(key), $"workspace result lacks {key}");
            Assert.True(JsonNode.DeepEquals(run[key], workspace[key]), $"{key}: {run[key]?.ToJsonString()} vs {workspace[key]?.ToJsonString()}");
        }
    }

    [Fact]
    public void EachResultKeepsItsJsonShape()
    {
        // Field names and order as the CLI's --json and the MCP tools printed them before the results shared a record.
        // boot_phases_ms was added after them, at the end (issue 15), then the start fields (issue 12).
        Assert.Equal(
            ["environment", "execution_mode", "vm_id", "command", "exit_code", "signal", "timed_out", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "duration_ms", "guest_kernel", "cleanup", "boot_phases_ms", "start_mode", "start_ms", "cold_start_reason"],
            Json(Run(), PyroJsonContext.Default.RunResult).Select(p => p.Key));
        string[] workspaceKeys = ["workspace_id", "sequence", "command", "cwd", "execution_mode", "exit_code", "signal", "timed_out", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "duration_ms"];
        Assert.Equal(workspaceKeys, Json(Workspace(), PyroJsonContext.Default.WorkspaceExecResult).Select(p => p.Key));

        // vm_exec's output: the workspace command's fields, then vm_id and auto_deleted.
        var vm = Json(new VmExecResult(Workspace(), "0123456789ab"), PyroJsonContext.Default.VmExecResult);
        Assert.Equal([.. workspaceKeys, "vm_id", "auto_deleted"], vm.Select(p => p.Key));
        Assert.True(vm["auto_deleted"]!.GetValue<bool>());
        Assert.Equal("guest_virtio_serial", vm["execution_mode"]!.GetValue<string>());
        foreach (var key in SharedKeys)
        {
            Assert.True(JsonNode.DeepEquals(Json(Workspace(), PyroJsonContext.Default.WorkspaceExecResult)[key], vm[key]), key);
        }
    }

    [Fact]
    public void ThrowOnFailureWorksOnEveryResultAndKeepsItsType()
    {
        var ok = Workspace() with { ExitCode = 0 };
        WorkspaceExecResult same = ok.ThrowOnFailure();
        Assert.Same(ok, same);

        var thrown = Assert.Throws<CommandFailedException>(() => Workspace().ThrowOnFailure());
        Assert.Equal(3, thrown.Result.ExitCode);
        Assert.IsType<WorkspaceExecResult>(thrown.Result);
        Assert.Contains("(timed out)", thrown.Message);
        Assert.IsType<RunResult>(Assert.Throws<CommandFailedException>(() => Run().ThrowOnFailure()).Result);
    }
}

/// <summary>The VM methods refuse a workspace that is not a VM, and leave it alone: no guest needed, the refusal is the host's.</summary>
public sealed class VmKindTests : IDisposable
{
    private readonly string _state = Directory.CreateTempSubdirectory("pyro-vmkind-").FullName;

    public void Dispose() => Directory.Delete(_state, recursive: true);

    private PyroOptions Options => new() { StateDir = _state, RunDir = Path.Combine(_state, "run") };

    private string Insert(string id, IReadOnlyDictionary<string, string>? labels = null)
    {
        var store = new WorkspaceStore(_state);
        var now = DateTimeOffset.UtcNow;
        StoreSeed.Insert(store, new WorkspaceRecord
        {
            Id = id, Environment = "debian:12", VcpuCount = 1, MemMib = 512, TtlSeconds = 600, CreatedAt = now, ExpiresAt = now.AddMinutes(10),
            State = WorkspaceState.Stopped, Labels = labels ?? new Dictionary<string, string>(),
        });
        Directory.CreateDirectory(store.WorkspaceDir(id));
        return id;
    }

    [Fact]
    public async Task VmMethodsRefuseAWorkspaceWithNotAVmAndKeepIt()
    {
        var pyro = new Pyro(Options);
        var id = Insert("aaaaaaaaaaaa", new Dictionary<string, string> { ["task"] = "mine" });

        var calls = new Func<Task>[]
        {
            () => pyro.GetVmAsync(id),
            () => pyro.StartVmAsync(id),
            () => pyro.StopVmAsync(id),
            () => pyro.ExecVmAsync(id, ["true"]),
            () => pyro.DeleteVmAsync(id),
        };
        foreach (var call in calls)
        {
            var refused = await Assert.ThrowsAsync<PyroInputException>(call);
            Assert.Equal("not_a_vm", refused.Code);
            Assert.Contains("not a VM", refused.Message);
            // SDK words: no CLI flags or commands, no MCP tool names.
            Assert.DoesNotContain("--", refused.Message);
            Assert.DoesNotContain("pyro ", refused.Message);
            Assert.DoesNotContain("vm_", refused.Message);
        }

        // Refused means untouched: the workspace is still there, as it was.
        var after = await pyro.GetWorkspaceAsync(id);
        Assert.Equal(WorkspaceState.Stopped, after.State);
        Assert.Equal("mine", after.Labels["task"]);

        Assert.Equal("workspace_not_found", (await Assert.ThrowsAsync<PyroInputException>(() => pyro.GetVmAsync("bbbbbbbbbbbb"))).Code);
    }

    [Fact]
    public async Task AWorkspaceLabeledAsAVmIsOne()
    {
        var pyro = new Pyro(Options);
        var id = Insert("cccccccccccc", new Dictionary<string, string> { [VmLabels.Kind] = VmLabels.Vm });
        var vm = await pyro.GetVmAsync(id);
        Assert.Equal(id, vm.WorkspaceId);
        Assert.Equal(WorkspaceState.Stopped, vm.State);
        Assert.Equal(VmLabels.Kind, PyroTools.KindLabel);
        Assert.True(await pyro.DeleteVmAsync(id));
        Assert.Equal("workspace_not_found", (await Assert.ThrowsAsync<PyroInputException>(() => pyro.GetVmAsync(id))).Code);
    }

    [Fact]
    public async Task TheVmToolsReportNotAVmAsAToolErrorAndDeleteNothing()
    {
        var pyro = new Pyro(Options);
        var id = Insert("dddddddddddd");
        var tools = new PyroTools(pyro, new McpServerPolicy { AllowedPaths = [_state] });

        foreach (var result in new[] { await tools.VmExec(id, "true"), await tools.VmStatus(id), await tools.VmDelete(id), await tools.VmStop(id), await tools.VmStart(id) })
        {
            Assert.True(result.IsError);
            Assert.Equal("not_a_vm", result.StructuredContent!.Value.GetProperty("error").GetProperty("code").GetString());
            Assert.StartsWith("error not_a_vm: ", ((TextContentBlock)result.Content[0]).Text);
        }

        Assert.Equal(id, (await pyro.GetWorkspaceAsync(id)).WorkspaceId);
    }
}
