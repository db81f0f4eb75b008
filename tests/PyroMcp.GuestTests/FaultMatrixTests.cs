using System.Diagnostics;
using System.Globalization;
using System.Text;
using PyroMcp.TestKit;

namespace PyroMcp.GuestTests;

/// <summary>
/// The fault matrix: the CLI, the MCP server, the supervisor and QEMU are killed (SIGKILL) at
/// named points of create, start, stop, reset, snapshot, delete and TTL expiry; a later command
/// must leave every workspace settled, with exactly the processes its state implies and no file
/// nobody owns. CI runs this short pass; <c>scripts/fault-soak.sh</c> runs the same cycles a
/// thousand times (PYRO_FAULT_CYCLES). Each lab has its own state directory, so listing (which
/// repairs) never touches another test's workspaces, and the labs run in two lanes at once.
/// </summary>
[TestCaseOrderer(LaneOrderer.Name, LaneOrderer.Assembly)]
public sealed class FaultMatrixTests(Lanes lanes) : GuestTest, IClassFixture<Lanes>
{
    private static readonly int Rounds = int.TryParse(Environment.GetEnvironmentVariable("PYRO_FAULT_ROUNDS"), CultureInfo.InvariantCulture, out var n) && n > 0 ? n : 1;

    public override Task InitializeAsync()
    {
        lanes.Begin(GetType(), Lab);
        return base.InitializeAsync();
    }

    // The longest lab first: the other two take turns in the second lane.
    [Fact]
    [Lane(-3)]
    public Task KilledLifecycleCallsAreRepairedByTheNextCommand() => lanes.RunAsync(nameof(KilledLifecycleCallsAreRepairedByTheNextCommand), LifecycleLabAsync);

    [Fact]
    [Lane(-2)]
    public Task KilledCreatesLeaveNoWorkspaceOrAWholeOne() => lanes.RunAsync(nameof(KilledCreatesLeaveNoWorkspaceOrAWholeOne), CreateLabAsync);

    /// <summary>
    /// Twenty callers at once on one workspace (start, stop, snapshot, reset): they take turns, and
    /// what is left is one workspace in a settled state with exactly the processes it implies.
    /// </summary>
    [Fact]
    [Lane(-1)]
    public Task TwentyConcurrentLifecycleCallsLeaveOneSupervisorAndAStateThatMatches() => lanes.RunAsync(nameof(TwentyConcurrentLifecycleCallsLeaveOneSupervisorAndAStateThatMatches), RaceLabAsync);

    private static Func<Task> Lab(string key) => key switch
    {
        nameof(KilledLifecycleCallsAreRepairedByTheNextCommand) => LifecycleLabAsync,
        nameof(KilledCreatesLeaveNoWorkspaceOrAWholeOne) => CreateLabAsync,
        nameof(TwentyConcurrentLifecycleCallsLeaveOneSupervisorAndAStateThatMatches) => RaceLabAsync,
        _ => throw new ArgumentException($"no lab for {key}", nameof(key)),
    };

    private static async Task CreateLabAsync()
    {
        using var lab = new FaultLab("create");
        for (var round = 0; round < Rounds; round++)
        {
            // The CLI dies at each step of create: nothing of the workspace may survive the next command.
            foreach (var point in new[] { "create.after-lock", "create.after-insert", "create.after-disk", "create.after-boot", "create.after-seed", "create.after-baseline" })
            {
                await lab.KilledAtAsync(point, "workspace", "create", "debian:12", "--name", "doomed", "--seed-path", lab.Seed);
                await lab.VerifyAsync(point, new Dictionary<string, string?> { ["doomed"] = null });
            }

            // The supervisor dies while the create waits for it: the create fails and removes everything itself.
            foreach (var point in new[] { "supervisor.after-register", "supervisor.after-boot" })
            {
                var failed = await lab.PyroAsync(point, "workspace", "create", "debian:12", "--name", "doomed");
                Assert.True(failed.ExitCode != 0, $"create survived its supervisor's death at {point}:\n{failed}");
                await lab.VerifyAsync(point, new Dictionary<string, string?> { ["doomed"] = null });
            }

            // The MCP server dies in the middle of workspace_create.
            await McpKilledDuringCreateAsync(lab);
            await lab.VerifyAsync("mcp create.after-boot", new Dictionary<string, string?>());
            Assert.Empty(await lab.ListAsync());
        }

        Report(lab, "create");
    }

    private static async Task LifecycleLabAsync()
    {
        using var lab = new FaultLab("lifecycle");
        // A second workspace whose TTL runs out during the matrix. Its supervisor inherits the
        // create's environment, so it dies at ttl.after-begin (the CLI has no such point).
        var brief = await lab.PyroAsync("ttl.after-begin", "workspace", "create", "debian:12", "--name", "brief", "--ttl-seconds", "60");
        Assert.True(brief.ExitCode == 0, brief.ToString());
        await lab.CreateAsync("w");
        for (var round = 0; round < Rounds; round++)
        {
            // stop: killed after the state says stopping, and after the VM is down.
            await lab.KilledAtAsync("stop.after-begin", "workspace", "stop", "w");
            await lab.VerifyAsync("stop.after-begin", new Dictionary<string, string?> { ["w"] = "stopped" });

            // start: killed before the VM boots (it stays stopped), and after it booted (it is running).
            await lab.KilledAtAsync("start.after-begin", "workspace", "start", "w");
            await lab.VerifyAsync("start.after-begin", new Dictionary<string, string?> { ["w"] = "stopped" });
            await lab.KilledAtAsync("start.after-boot", "workspace", "start", "w");
            await lab.VerifyAsync("start.after-boot", new Dictionary<string, string?> { ["w"] = "running" });
            await AssertSeedAsync(lab);

            // snapshot: killed with the tree half written, and with the file written but not recorded.
            await lab.KilledAtAsync("tree.after-partial", "workspace", "snapshot", "create", "w", "s1");
            await lab.VerifyAsync("snapshot tree.after-partial", new Dictionary<string, string?> { ["w"] = "running" });
            await lab.KilledAtAsync("snapshot.after-file", "workspace", "snapshot", "create", "w", "s1");
            await lab.VerifyAsync("snapshot.after-file", new Dictionary<string, string?> { ["w"] = "running" });
            var snapshots = await lab.PyroAsync(null, "workspace", "snapshot", "list", "w", "--json");
            Assert.DoesNotContain("s1", snapshots.Stdout);
            Assert.DoesNotContain(Directory.GetFiles(Path.Combine(lab.StateDir, "workspaces"), "*.tar", SearchOption.AllDirectories), f => f.Contains("snapshots", StringComparison.Ordinal));

            // QEMU dies under a running workspace: crashed, and start brings it back with its files.
            lab.KillProcess(IdOf(await lab.ListAsync(), "w"), "qemu");
            await lab.WaitForStateAsync("w", "crashed", TimeSpan.FromSeconds(60));
            var crashed = await lab.VerifyAsync("qemu killed", new Dictionary<string, string?> { ["w"] = "crashed" });
            Assert.Contains("QEMU exited", crashed[IdOf(crashed, "w")].GetProperty("state_reason").GetString());
            var refused = await lab.PyroAsync(null, "workspace", "exec", "w", "--", "true");
            Assert.True(refused.ExitCode == 1 && refused.Stderr.Contains("workspace_not_running", StringComparison.Ordinal), refused.ToString());
            Assert.Equal(0, (await lab.PyroAsync(null, "workspace", "start", "w")).ExitCode);

            // The supervisor dies (QEMU must die with it): crashed, then started again from the same disk.
            lab.KillProcess(IdOf(await lab.ListAsync(), "w"), "supervisor");
            crashed = await lab.VerifyAsync("supervisor killed", new Dictionary<string, string?> { ["w"] = "crashed" });
            Assert.Contains("supervisor", crashed[IdOf(crashed, "w")].GetProperty("state_reason").GetString());
            Assert.Equal(0, (await lab.PyroAsync(null, "workspace", "start", "w")).ExitCode);
            await AssertSeedAsync(lab);

            // reset: killed on a fresh disk, and with the new VM up: failed, with the step; a reset then repairs it.
            foreach (var (point, step) in new[] { ("reset.after-disk", "making a fresh disk"), ("reset.after-boot", "booting its VM") })
            {
                await lab.KilledAtAsync(point, "workspace", "reset", "w");
                var after = await lab.VerifyAsync(point, new Dictionary<string, string?> { ["w"] = "failed" });
                Assert.Contains(step, after[IdOf(after, "w")].GetProperty("state_reason").GetString());
            }

            Assert.Equal(0, (await lab.PyroAsync(null, "workspace", "reset", "w")).ExitCode);
            await AssertSeedAsync(lab);

            // fork: killed once the source is saved (no copy; the image is cleared by the next
            // command, the source runs on), and after its first copy (that copy is whole and runs).
            await lab.KilledAtAsync("fork.after-save", "workspace", "fork", "w", "--count", "2", "--name-prefix", $"f{round}");
            await lab.VerifyAsync("fork.after-save", new Dictionary<string, string?> { ["w"] = "running", [$"f{round}-1"] = null });
            await lab.KilledAtAsync("fork.after-copy", "workspace", "fork", "w", "--count", "2", "--name-prefix", $"g{round}");
            await lab.VerifyAsync("fork.after-copy", new Dictionary<string, string?> { ["w"] = "running", [$"g{round}-1"] = "running", [$"g{round}-2"] = null });
            Assert.Equal(0, (await lab.PyroAsync(null, "workspace", "delete", $"g{round}-1")).ExitCode);
            await AssertSeedAsync(lab);
            await lab.KilledAtAsync("stop.after-poweroff", "workspace", "stop", "w");
            await lab.VerifyAsync("stop.after-poweroff", new Dictionary<string, string?> { ["w"] = "stopped" });
            if (round < Rounds - 1)
            {
                Assert.Equal(0, (await lab.PyroAsync(null, "workspace", "start", "w")).ExitCode);
            }
        }

        // The TTL workspace made at the start has expired by now; its supervisor died while deleting it.
        await lab.WaitForStateAsync("brief", "gone", TimeSpan.FromSeconds(120));
        await lab.VerifyAsync("ttl.after-begin", new Dictionary<string, string?> { ["brief"] = null });

        // delete: killed once the state says deleting, and with the VM gone but files left.
        await lab.KilledAtAsync("delete.after-kill", "workspace", "delete", "w");
        await lab.VerifyAsync("delete.after-kill", new Dictionary<string, string?> { ["w"] = null });
        await lab.CreateAsync("w2");
        await lab.KilledAtAsync("delete.after-begin", "workspace", "delete", "w2");
        await lab.VerifyAsync("delete.after-begin", new Dictionary<string, string?> { ["w2"] = null });
        Report(lab, "lifecycle");
    }

    private static async Task RaceLabAsync()
    {
        using var lab = new FaultLab("race");
        var id = await lab.CreateAsync("busy");
        var options = new PyroOptions
        {
            StateDir = lab.StateDir, RunDir = lab.RunDir, AgentPath = Repo.AgentPath,
            SupervisorPath = Repo.SupervisorPath,
        };
        var kinds = new[] { "start", "stop", "snapshot", "reset", "start", "snapshot", "stop", "start", "snapshot", "snapshot",
            "start", "stop", "snapshot", "start", "reset", "stop", "snapshot", "start", "start", "stop" };
        var outcomes = await Task.WhenAll(kinds.Select(async (kind, i) =>
        {
            var pyro = new Pyro(options);
            try
            {
                switch (kind)
                {
                    case "start":
                        await pyro.StartWorkspaceAsync(id);
                        break;
                    case "stop":
                        await pyro.StopWorkspaceAsync(id);
                        break;
                    case "snapshot":
                        await pyro.CreateSnapshotAsync(id, $"s{i}");
                        break;
                    default:
                        await pyro.ResetWorkspaceAsync(id);
                        break;
                }

                return $"{kind}: ok";
            }
            catch (PyroException ex)
            {
                // A snapshot of a stopped workspace is refused; that is an answer, not a fault.
                Assert.True(kind == "snapshot" && ex.Code == "workspace_not_running", $"{kind} failed: {ex.Code}: {ex.Message}");
                return $"{kind}: {ex.Code}";
            }
        }));

        var after = await lab.VerifyAsync("20 concurrent calls", new Dictionary<string, string?>());
        var state = after[id].GetProperty("state").GetString();
        Assert.True(state is "running" or "stopped", $"the workspace ended {state}");
        var snapshotFiles = Directory.GetFiles(Path.Combine(lab.StateDir, "workspaces", id, "snapshots"), "*.tar").Select(f => Path.GetFileNameWithoutExtension(f)!).Order().ToList();
        var recorded = (await new Pyro(options).ListSnapshotsAsync(id)).Select(s => s.Name).Order().ToList();
        Assert.Equal(recorded, snapshotFiles);
        Assert.Equal(outcomes.Count(o => o.StartsWith("snapshot: ok", StringComparison.Ordinal)), recorded.Count);
        Figures.Record("lifecycle race", $"{kinds.Length} concurrent calls on one workspace ({string.Join(", ", outcomes.GroupBy(o => o).Select(g => $"{g.Count()}x {g.Key}"))}); " +
            $"ended {state} with {lab.Processes().Count(p => p.Kind == "supervisor")} supervisor(s) and {lab.Processes().Count(p => p.Kind == "qemu")} QEMU(s); " +
            $"{lab.OrphanProcesses} orphan processes, {lab.StateMismatches} state mismatches, {lab.LeakedFiles} leaked files");
        Assert.True(lab.Problems.Count == 0, string.Join("\n", lab.Problems));
        Assert.Equal(0, (await lab.PyroAsync(null, "workspace", "delete", id)).ExitCode);
    }

    private static string IdOf(Dictionary<string, System.Text.Json.JsonElement> list, string name)
        => list.Single(w => w.Value.GetProperty("name").GetString() == name).Key;

    private static async Task AssertSeedAsync(FaultLab lab)
    {
        var cat = await lab.PyroAsync(null, "workspace", "exec", "w", "--", "cat", "/workspace/hello.txt");
        Assert.True(cat.ExitCode == 0 && cat.Stdout.Contains("hello from the seed", StringComparison.Ordinal), cat.ToString());
    }

    private static void Report(FaultLab lab, string suite)
    {
        Figures.Record($"fault matrix ({suite})", lab.Figure);
        Assert.True(lab.Problems.Count == 0, string.Join("\n", lab.Problems));
    }

    /// <summary>Drives 'pyro mcp serve' over stdio with raw JSON-RPC until it dies at create.after-boot.</summary>
    private static async Task McpKilledDuringCreateAsync(FaultLab lab)
    {
        using var server = PyroCli.Start(["mcp", "serve"], new Dictionary<string, string>
        {
            ["PYRO_STATE_DIR"] = lab.StateDir, ["PYRO_RUN_DIR"] = lab.RunDir, ["PYRO_FAULT"] = "create.after-boot",
        });
        var stderr = server.StandardError.ReadToEndAsync();
        string[] messages =
        [
            """{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fault-matrix","version":"1"}}}""",
            """{"jsonrpc":"2.0","method":"notifications/initialized"}""",
            """{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"workspace_create","arguments":{"environment":"debian:12","name":"mcp-doomed"}}}""",
        ];
        var stdout = server.StandardOutput.ReadToEndAsync();
        foreach (var message in messages)
        {
            await server.StandardInput.WriteLineAsync(message);
            await server.StandardInput.FlushAsync();
        }

        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await server.WaitForExitAsync(limit.Token);
        Assert.True(server.ExitCode == 137, $"the MCP server was to die at create.after-boot; exit {server.ExitCode}\n{await stdout}\n{await stderr}");
    }
}
