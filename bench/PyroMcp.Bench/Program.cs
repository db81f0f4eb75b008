using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using ModelContextProtocol.Client;
using PyroMcp;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Protocol;
using PyroMcp.Runtime;
using PyroMcp.Vmm;

// Measures pyro against its floor in one run and prints ratios. Never a pass/fail: numbers only.
//   dotnet run -c Release --project bench/PyroMcp.Bench [-- [--json] [ROUNDS]]
// With --json the readable lines go to stderr and one JSON object of the figures to stdout.
var json = args.Contains("--json");
var rounds = args.Where(a => a != "--json").Select(a => int.Parse(a, CultureInfo.InvariantCulture)).FirstOrDefault(3);
var root = FindRoot();
var config = "release";
var build = Path.Combine(root, "artifacts", "bin", "PyroMcp.Cli", config);
// The CLI as ./pyro runs it (Native AOT), and its managed build beside it for the same figures.
string[] cli = [Path.Combine(root, "artifacts", "pyro", "pyro")];
string[] managedCli = ["dotnet", Path.Combine(build, "pyro.dll")];
var options = new PyroOptions { AgentPath = Path.Combine(build, "guest", "pyro-agent") };
if (!File.Exists(cli[0]) || !File.Exists(managedCli[1]))
{
    Console.Error.WriteLine($"build first: {cli[0]} or {managedCli[1]} is missing (./test.sh builds both)");
    return 1;
}

var figures = new SortedDictionary<string, object>(StringComparer.Ordinal);
void Say(string line) => (json ? Console.Error : Console.Out).WriteLine(line);

const string EnvironmentName = "debian:12";
var pyro = new Pyro(options);
var environment = await pyro.PullEnvironmentAsync(EnvironmentName);
var bundle = await RuntimeBundle.EnsureAsync(options, null, CancellationToken.None);
var accelerator = KvmProbe.Detect().Choose(options.Accelerator).Chosen;
Say($"pyro bench: environment={EnvironmentName} accelerator={accelerator.ToString().ToLowerInvariant()} rounds={rounds} cores={Environment.ProcessorCount}");

// 1. `pyro run ENV -- true`, start to exit, cold (booted) and warm (restored from the template,
// which the pull above built), beside a bare QEMU boot of the same kernel and disk.
var runTimes = new List<double>();
var warmTimes = new List<double>();
var bareTimes = new List<double>();
for (var i = 0; i < rounds; i++)
{
    // Interleaved so drift on the machine hits all sides alike.
    runTimes.Add(await TimeAsync(cli[0], ["run", EnvironmentName, "--cold", "--", "true"]));
    warmTimes.Add(await TimeAsync(cli[0], ["run", EnvironmentName, "--", "true"]));
    bareTimes.Add(await BareBootAsync());
}

string List(List<double> times) => string.Join(", ", times.Select(t => t.ToString("0", CultureInfo.InvariantCulture)));
var run = Median(runTimes);
var warm = Median(warmTimes);
var bare = Median(bareTimes);
Say($"cold run (pyro run {EnvironmentName} --cold -- true): median {run:0} ms  [{List(runTimes)}]");
Say($"warm run (pyro run {EnvironmentName} -- true):        median {warm:0} ms  [{List(warmTimes)}]");
Say($"bare QEMU boot to a shell that exits:             median {bare:0} ms  [{List(bareTimes)}]");
Say($"ratio cold_run / bare_boot = {run / bare:0.00} (target <= 1.2)");
Say($"ratio warm_run / bare_boot = {warm / bare:0.00} (target <= 0.5)");
figures["cold_run_ms"] = Math.Round(run);
figures["warm_run_ms"] = Math.Round(warm);
figures["bare_boot_ms"] = Math.Round(bare);
figures["cold_run_over_bare_boot"] = Math.Round(run / bare, 2);
figures["warm_run_over_bare_boot"] = Math.Round(warm / bare, 2);

// 1b. Where a cold run spends its time: the boot phases of one-shot runs through the SDK (the
// phases start at QEMU's spawn, so the CLI's own start-up is not in them), median per phase.
var phaseRuns = new List<BootPhases>();
for (var i = 0; i < rounds; i++)
{
    var phased = await pyro.RunAsync(new RunRequest { Environment = EnvironmentName, Command = ["true"], Cold = true });
    phaseRuns.Add(phased.BootPhasesMs ?? throw new InvalidOperationException("the guest agent reported no boot times"));
}

double PhaseMedian(Func<BootPhases, long> phase) => Median([.. phaseRuns.Select(p => (double)phase(p))]);
Say($"agent_start_ms (in-guest, agent process start to ready): median {PhaseMedian(p => p.Agent):0}");
Say($"boot_phases_ms (median of {rounds}): qemu_start={PhaseMedian(p => p.QemuStart):0} kernel={PhaseMedian(p => p.Kernel):0} " +
    $"init={PhaseMedian(p => p.Init):0} agent={PhaseMedian(p => p.Agent):0} first_exec={PhaseMedian(p => p.FirstExec):0}");
figures["agent_start_ms"] = PhaseMedian(p => p.Agent);
figures["boot_phases_ms"] = new SortedDictionary<string, object>(StringComparer.Ordinal)
{
    ["qemu_start"] = PhaseMedian(p => p.QemuStart), ["kernel"] = PhaseMedian(p => p.Kernel), ["init"] = PhaseMedian(p => p.Init),
    ["agent"] = PhaseMedian(p => p.Agent), ["first_exec"] = PhaseMedian(p => p.FirstExec),
};

var rawMbps = 0.0;

// 2. exec round trip of `true` in one booted guest (informational until the qemu-ga peer joins).
await using (var vm = await QemuVm.StartAsync(QemuVm.NewId(), new VmSpec(1, 1024, accelerator), environment.RootfsImage, bundle, options, CancellationToken.None))
{
    var trips = new List<double>();
    for (var i = 0; i < 30; i++)
    {
        var clock = Stopwatch.StartNew();
        await vm.Agent.ExecAsync(new ExecRequest { Argv = ["true"] }, null, null, 1024, CancellationToken.None);
        trips.Add(clock.Elapsed.TotalMilliseconds);
    }

    Say($"exec round trip of true (30 in one VM): median {Median(trips):0.0} ms  min {trips.Min():0.0} ms");
    figures["exec_rtt_ms"] = Math.Round(Median(trips), 1);

}

// 2b. The peer: qemu-guest-agent's guest-exec of /bin/true, polled to exited, in the same kind of guest (QemuGuestAgentPeer.cs).
var qgaTrips = await QemuGuestAgentPeer.ExecRoundTripsAsync(new VmSpec(1, 1024, accelerator), environment.RootfsImage, bundle, options, 30, CancellationToken.None);
Say($"qemu-ga guest-exec round trip of /bin/true (30 in one VM, status polled to exited): median {Median(qgaTrips):0.0} ms  min {qgaTrips.Min():0.0} ms");
Say($"exec_rtt_over_qemu_ga = {(double)figures["exec_rtt_ms"] / Median(qgaTrips):0.00} (pyro exec_rtt_ms / qemu_ga_exec_rtt_ms)");
figures["qemu_ga_exec_rtt_ms"] = Math.Round(Median(qgaTrips), 1);
figures["exec_rtt_over_qemu_ga"] = Math.Round((double)figures["exec_rtt_ms"] / Median(qgaTrips), 2);

// 3. Workspaces: create to first exec, exec round trip through the supervisor, tree throughput.
var state = Directory.CreateTempSubdirectory("pyro-bench-state-").FullName;
var tree = Directory.CreateTempSubdirectory("pyro-bench-tree-").FullName;
var workspaceOptions = options with { StateDir = state, SupervisorPath = PyroOptions.DefaultSupervisorPath(build) };
var workspaces = new Pyro(workspaceOptions);
var benchFailed = false;
try
{
    // Create to first exec, cold (booted) and warm (restored from the template), interleaved.
    var coldCreates = new List<double>();
    var warmCreates = new List<double>();
    for (var i = 0; i < rounds; i++)
    {
        foreach (var (cold, times) in new[] { (true, coldCreates), (false, warmCreates) })
        {
            var clock = Stopwatch.StartNew();
            var made = await workspaces.CreateWorkspaceAsync(new WorkspaceCreateRequest { Environment = EnvironmentName, Cold = cold });
            await workspaces.ExecWorkspaceAsync(made.WorkspaceId, new WorkspaceExecRequest { Command = ["true"] });
            times.Add(clock.Elapsed.TotalMilliseconds);
            if (made.StartMode != (cold ? "cold" : "warm"))
            {
                throw new InvalidOperationException($"a {(cold ? "cold" : "warm")} create started {made.StartMode}: {made.ColdStartReason}");
            }

            await workspaces.DeleteWorkspaceAsync(made.WorkspaceId);
        }
    }

    var coldCreate = Median(coldCreates);
    var warmCreate = Median(warmCreates);
    Say($"workspace create to first exec, cold: median {coldCreate:0} ms  [{List(coldCreates)}]");
    Say($"workspace create to first exec, warm: median {warmCreate:0} ms  [{List(warmCreates)}]");
    Say($"ratio warm_create / cold_create = {warmCreate / coldCreate:0.00} (target <= 0.1)");
    figures["cold_create_ms"] = Math.Round(coldCreate);
    figures["warm_create_ms"] = Math.Round(warmCreate);
    figures["workspace_create_ms"] = Math.Round(warmCreate);
    figures["warm_create_over_cold_create"] = Math.Round(warmCreate / coldCreate, 2);

    var ws = await workspaces.CreateWorkspaceAsync(new WorkspaceCreateRequest { Environment = EnvironmentName });
    await workspaces.ExecWorkspaceAsync(ws.WorkspaceId, new WorkspaceExecRequest { Command = ["true"] });

    // Fork: copies of a running workspace, to each copy's first exec, per copy.
    const int ForkCopies = 2;
    var forkClock = Stopwatch.StartNew();
    var forked = await workspaces.ForkWorkspaceAsync(ws.WorkspaceId, new WorkspaceForkRequest { Count = ForkCopies });
    foreach (var copy in forked.Workspaces)
    {
        await workspaces.ExecWorkspaceAsync(copy.WorkspaceId, new WorkspaceExecRequest { Command = ["true"] });
    }

    var perCopy = forkClock.Elapsed.TotalMilliseconds / ForkCopies;
    foreach (var copy in forked.Workspaces)
    {
        await workspaces.DeleteWorkspaceAsync(copy.WorkspaceId);
    }

    Say($"fork of a running workspace into {ForkCopies} copies, to each copy's first exec: {perCopy:0} ms per copy");
    Say($"ratio fork_per_copy / cold_create = {perCopy / coldCreate:0.00}");
    figures["fork_per_copy_ms"] = Math.Round(perCopy);
    figures["fork_per_copy_over_cold_create"] = Math.Round(perCopy / coldCreate, 2);

    var trips = new List<double>();
    for (var i = 0; i < 30; i++)
    {
        var clock = Stopwatch.StartNew();
        await workspaces.ExecWorkspaceAsync(ws.WorkspaceId, new WorkspaceExecRequest { Command = ["true"] });
        trips.Add(clock.Elapsed.TotalMilliseconds);
    }

    Say($"workspace exec round trip of true (30, via supervisor, history recorded): median {Median(trips):0.0} ms");
    figures["workspace_exec_rtt_ms"] = Math.Round(Median(trips), 1);

    // The supervisor's own memory while its workspace idles, and what the CLI process adds to one exec.
    await ReportHostOverheadAsync(ws.WorkspaceId, ws.SupervisorPid, Median(trips));

    // One client starts endless output and never reads it; the others' exec round trip beside the normal one.
    using (var stalled = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
    {
        await stalled.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(state, "workspaces", ws.WorkspaceId, PyroMcp.Workspaces.WorkspaceSupervisor.SocketName)));
        var yes = new RunRequest { Environment = EnvironmentName, Command = ["yes"], TimeoutSeconds = 600 }.ToExecRequest("/workspace") with { MaxOutputBytes = 1L << 40 };
        var request = new ArrayBufferWriter<byte>();
        FrameCodec.Write(request, new Frame(1, FrameType.Request, ProtocolJsonContext.Encode(new AgentRequest { Op = AgentOps.Exec, Exec = yes })));
        await stalled.SendAsync(request.WrittenMemory);
        while (stalled.Available < 32 * 1024)
        {
            await Task.Delay(50);
        }

        var stalledTrips = new List<double>();
        for (var i = 0; i < 30; i++)
        {
            var clock = Stopwatch.StartNew();
            await workspaces.ExecWorkspaceAsync(ws.WorkspaceId, new WorkspaceExecRequest { Command = ["true"] });
            stalledTrips.Add(clock.Elapsed.TotalMilliseconds);
        }

        Say($"workspace exec round trip of true beside a client that never reads: median {Median(stalledTrips):0.0} ms");
        Say($"stalled_client_exec_rtt_over_normal = {Median(stalledTrips) / Median(trips):0.00} (goal <= 2.0)");
        figures["stalled_client_exec_rtt_over_normal"] = Math.Round(Median(stalledTrips) / Median(trips), 2);
    }

    // 100 files of 1 MiB of random bytes: incompressible, like real build output.
    var random = new Random(42);
    var chunk = new byte[1024 * 1024];
    for (var i = 0; i < 100; i++)
    {
        random.NextBytes(chunk);
        await File.WriteAllBytesAsync(Path.Combine(tree, $"blob-{i:000}.bin"), chunk);
    }

    // The channel's own ceiling: one 100 MiB file streamed guest->host, no tar, no pipes.
    await workspaces.ExecWorkspaceAsync(ws.WorkspaceId, new WorkspaceExecRequest { Command = ["sh", "-c", "head -c 104857600 /dev/urandom > raw.bin"], TimeoutSeconds = 300 });
    var raw = Stopwatch.StartNew();
    var rawFile = await workspaces.ReadWorkspaceFileAsync(ws.WorkspaceId, "raw.bin", 200L * 1024 * 1024);
    rawMbps = rawFile.Size / 1e6 / raw.Elapsed.TotalSeconds;
    Say($"raw guest channel (one 100 MiB file read): {rawMbps:0.0} MB/s");
    figures["raw_channel_mbps"] = Math.Round(rawMbps, 1);
    await workspaces.ExecWorkspaceAsync(ws.WorkspaceId, new WorkspaceExecRequest { Command = ["rm", "raw.bin"] });
    var push = Stopwatch.StartNew();
    var pushed = await workspaces.PushWorkspaceSyncAsync(ws.WorkspaceId, tree, "bench");
    var pushMbps = pushed.Bytes / 1e6 / push.Elapsed.TotalSeconds;
    var export = Stopwatch.StartNew();
    var exported = await workspaces.ExportWorkspaceAsync(ws.WorkspaceId, "bench", Path.Combine(state, "export"));
    var exportMbps = exported.Bytes / 1e6 / export.Elapsed.TotalSeconds;
    Say($"sync push of 100 MiB tree: {pushMbps:0.0} MB/s  ratio to raw channel {pushMbps / rawMbps:0.00} (target >= 0.5)");
    Say($"export of 100 MiB tree:    {exportMbps:0.0} MB/s  ratio to raw channel {exportMbps / rawMbps:0.00} (target >= 0.5)");
    figures["sync_push_over_raw_channel"] = Math.Round(pushMbps / rawMbps, 2);
    figures["export_over_raw_channel"] = Math.Round(exportMbps / rawMbps, 2);
    // The same two ratios under the names issue 12 gives them.
    figures["sync_over_channel"] = figures["sync_push_over_raw_channel"];
    figures["export_over_channel"] = figures["export_over_raw_channel"];
    await workspaces.DeleteWorkspaceAsync(ws.WorkspaceId);
}
catch (Exception ex)
{
    // Caught here so the cleanup below runs: an unhandled exception ends the process before any
    // finally, and would leave this run's workspaces (supervisor and QEMU) running.
    Console.Error.WriteLine("pyro bench: " + ex);
    benchFailed = true;
}
finally
{
    foreach (var left in await workspaces.ListWorkspacesAsync())
    {
        await workspaces.DeleteWorkspaceAsync(left.WorkspaceId);
    }

    Directory.Delete(tree, recursive: true);
    Directory.Delete(state, recursive: true);
}

// 4. Environments as OCI artifacts: publish to a loopback registry, pull it back with an empty
// cache beside skopeo copy of the same reference, and the first run that pull serves.
try
{
    await OciPull.MeasureAsync(cli[0], EnvironmentName, Path.GetDirectoryName(environment.RootfsImage)!, rounds, Say, figures);
}
catch (Exception ex)
{
    Console.Error.WriteLine("pyro bench: " + ex);
    benchFailed = true;
}

if (json)
{
    figures["bench_failed"] = benchFailed;
    figures["rounds"] = rounds;
    figures["accelerator"] = accelerator.ToString().ToLowerInvariant();
    Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(figures, new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
}

return benchFailed ? 1 : 0;

// An idle workspace's host cost (the supervisor and what it started, QEMU above all), with the
// managed supervisor beside the native one, and the CLI's own share of `pyro workspace exec ID --
// true` (its wall time minus the SDK's in-process exec round trip), native and managed.
async Task ReportHostOverheadAsync(string workspaceId, int? supervisorPid, double sdkExecMs)
{
    await Task.Delay(TimeSpan.FromSeconds(3));
    if (supervisorPid is { } pid)
    {
        // Each read once, so the figures printed and their sums and ratios agree.
        var supervisorMib = ResidentMib(pid);
        var supervisorPss = ProportionalMib(pid);
        var vmMib = Descendants(pid).Sum(ResidentMib);
        Say($"supervisor_rss_mib = {supervisorMib:0.0} (native, idle workspace; pss {supervisorPss:0.0} MiB); its QEMU and helpers {vmMib:0.0} MiB");
        figures["supervisor_rss_mib"] = Math.Round(supervisorMib, 1);
        figures["supervisor_pss_mib"] = Math.Round(supervisorPss, 1);
        figures["qemu_rss_mib"] = Math.Round(vmMib, 1);
        figures["idle_rss_mib_per_workspace"] = Math.Round(supervisorMib + vmMib, 1);

        // Beside a bare QEMU of the same size and disk whose guest sleeps, read at the same age (IdleFloor.cs).
        var age = IdleFloor.AgeSeconds(IdleFloor.FindQemu(Descendants(pid)));
        var bareIdleMib = await IdleFloor.BareQemuIdleRssMibAsync(new VmSpec(1, 1024, accelerator), environment.RootfsImage, bundle, age, CancellationToken.None);
        Say($"bare QEMU idle RSS (pyro.bare=idle, read at the workspace's age {age:0} s): {bareIdleMib:0.0} MiB; idle_rss_over_bare_qemu = {(supervisorMib + vmMib) / bareIdleMib:0.00} (goal <= 1.2)");
        Say($"idle_workspaces_per_8gib = floor(8192 MiB / {supervisorMib + vmMib:0.0} MiB idle per workspace) = {Math.Floor(8192 / (supervisorMib + vmMib)):0}");
        figures["bare_qemu_idle_rss_mib"] = Math.Round(bareIdleMib, 1);
        figures["idle_rss_over_bare_qemu"] = Math.Round((supervisorMib + vmMib) / bareIdleMib, 2);
        figures["idle_workspaces_per_8gib"] = Math.Floor(8192 / (supervisorMib + vmMib));

        // The same idle workspace under the managed supervisor (dotnet pyro-supervisor.dll).
        var managedPyro = new Pyro(workspaceOptions with { SupervisorPath = Path.Combine(build, "pyro-supervisor.dll") });
        var managed = await managedPyro.CreateWorkspaceAsync(new WorkspaceCreateRequest { Environment = EnvironmentName });
        try
        {
            await managedPyro.ExecWorkspaceAsync(managed.WorkspaceId, new WorkspaceExecRequest { Command = ["true"] });
            await Task.Delay(TimeSpan.FromSeconds(3));
            var managedPid = managed.SupervisorPid ?? throw new InvalidOperationException("the managed supervisor has no pid");
            var managedMib = ResidentMib(managedPid);
            Say($"supervisor_rss_mib_managed = {managedMib:0.0} (pss {ProportionalMib(managedPid):0.0} MiB); native / managed = {supervisorMib / managedMib:0.00}");
            figures["supervisor_rss_mib_managed"] = Math.Round(managedMib, 1);
            figures["supervisor_native_over_managed_rss"] = Math.Round(supervisorMib / managedMib, 2);
        }
        finally
        {
            await managedPyro.DeleteWorkspaceAsync(managed.WorkspaceId);
        }
    }

    // The managed figures carry the suffix: the unsuffixed names are what ./pyro runs.
    var clis = new[] { (Name: "native", Command: cli, Suffix: ""), (Name: "managed", Command: managedCli, Suffix: "_managed") };
    foreach (var (name, command, suffix) in clis)
    {
        var cliTimes = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            cliTimes.Add(await TimeCliAsync(command, ["workspace", "exec", workspaceId, "--", "true"], state));
        }

        var cliExec = Median(cliTimes);
        var key = "cli_overhead_ms" + suffix;
        Say($"pyro workspace exec ID -- true ({name} CLI, 5): median {cliExec:0} ms  [{string.Join(", ", cliTimes.Select(t => t.ToString("0", CultureInfo.InvariantCulture)))}]");
        Say($"{key} = {cliExec - sdkExecMs:0} (CLI wall minus the in-process exec round trip {sdkExecMs:0.0} ms)");
        figures[key] = Math.Round(cliExec - sdkExecMs);
    }

    // What an MCP client waits for: `pyro mcp serve` spawned to its tool list answered.
    foreach (var (name, command, suffix) in clis)
    {
        var times = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            var clock = Stopwatch.StartNew();
            await using var client = await McpClient.CreateAsync(new StdioClientTransport(new StdioClientTransportOptions
            {
                Name = "pyro-bench",
                Command = command[0],
                Arguments = [.. command.Skip(1), "mcp", "serve", "--profile", "workspace-full"],
                EnvironmentVariables = new Dictionary<string, string?> { ["PYRO_STATE_DIR"] = state },
            }));
            var tools = await client.ListToolsAsync();
            times.Add(clock.Elapsed.TotalMilliseconds);
            if (tools.Count == 0)
            {
                throw new InvalidOperationException("pyro mcp serve listed no tools");
            }
        }

        var key = "mcp_ready_ms" + suffix;
        Say($"{key} = {Median(times):0} (pyro mcp serve, {name} CLI: spawn to the tool list, median of 5)");
        figures[key] = Math.Round(Median(times));
    }
}

// Every process below pid (its children's children too), from /proc/PID/task/TID/children.
static List<int> Descendants(int pid)
{
    var found = new List<int>();
    var queue = new Queue<int>([pid]);
    while (queue.TryDequeue(out var next))
    {
        foreach (var task in Directory.EnumerateDirectories($"/proc/{next}/task"))
        {
            var text = File.Exists(Path.Combine(task, "children")) ? File.ReadAllText(Path.Combine(task, "children")) : "";
            foreach (var child in text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(c => int.Parse(c, CultureInfo.InvariantCulture)))
            {
                found.Add(child);
                queue.Enqueue(child);
            }
        }
    }

    return found;
}

// The CLI against the bench's own state directory (its workspaces live there, not in ~/.local/state).
static async Task<double> TimeCliAsync(string[] command, string[] arguments, string stateDir)
{
    var start = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
    foreach (var arg in command.Skip(1).Concat(arguments))
    {
        start.ArgumentList.Add(arg);
    }

    start.Environment["PYRO_STATE_DIR"] = stateDir;
    var clock = Stopwatch.StartNew();
    using var process = System.Diagnostics.Process.Start(start)!;
    var drain = Task.WhenAll(process.StandardOutput.ReadToEndAsync(), process.StandardError.ReadToEndAsync());
    await process.WaitForExitAsync();
    var output = await drain;
    var elapsed = clock.Elapsed.TotalMilliseconds;
    if (process.ExitCode != 0)
    {
        throw new InvalidOperationException($"pyro {string.Join(' ', arguments)} exited {process.ExitCode}: {output[1]}");
    }

    return elapsed;
}

static double ResidentMib(int pid) => StatusKib(Path.Combine("/proc", pid.ToString(CultureInfo.InvariantCulture), "status"), "VmRSS:") / 1024.0;

static double ProportionalMib(int pid) => StatusKib(Path.Combine("/proc", pid.ToString(CultureInfo.InvariantCulture), "smaps_rollup"), "Pss:") / 1024.0;

static double StatusKib(string file, string key)
{
    var line = File.ReadLines(file).First(l => l.StartsWith(key, StringComparison.Ordinal));
    return double.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
}

async Task<double> BareBootAsync()
{
    var dir = Directory.CreateTempSubdirectory("pyro-bench-bare-").FullName;
    try
    {
        var disk = Path.Combine(dir, "disk.qcow2");
        var clock = Stopwatch.StartNew();
        // The overlay is part of what a bare boot of a shared image needs too, so it is timed.
        await Process(HostTools.QemuImg.Require(), ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", environment.RootfsImage, disk]);
        // The runtime's own command line (machine, devices, sandbox, privilege drop), so the floor
        // moves with it; only the guest's init differs: straight to a shell that powers off.
        var launch = new QemuLaunch(QemuVm.NewId(), new VmSpec(1, 1024, accelerator), bundle.KernelPath, bundle.InitramfsPath, disk,
            Path.Combine(dir, "agent.sock"), HostTools.QemuDropUser(), Bare: true);
        // Spawned as the runtime spawns QEMU (its disk an fdset when it drops privileges).
        using var qemu = await QemuVm.SpawnAsync(launch, dir);
        qemu.StandardInput.Close();
        var output = Task.WhenAll(qemu.StandardOutput.ReadToEndAsync(), qemu.StandardError.ReadToEndAsync());
        await qemu.WaitForExitAsync();
        await output;
        return clock.Elapsed.TotalMilliseconds;
    }
    finally
    {
        Directory.Delete(dir, recursive: true);
    }
}

static async Task<double> TimeAsync(string file, string[] arguments)
{
    var clock = Stopwatch.StartNew();
    await Process(file, arguments);
    return clock.Elapsed.TotalMilliseconds;
}

static async Task<int> Process(string file, string[] arguments)
{
    var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
    foreach (var arg in arguments)
    {
        start.ArgumentList.Add(arg);
    }

    using var process = System.Diagnostics.Process.Start(start)!;
    var drain = Task.WhenAll(process.StandardOutput.ReadToEndAsync(), process.StandardError.ReadToEndAsync());
    await process.WaitForExitAsync();
    var output = await drain;
    if (process.ExitCode != 0)
    {
        throw new InvalidOperationException($"{file} exited {process.ExitCode}: {output[1]}");
    }

    return process.ExitCode;
}

static double Median(List<double> values)
{
    var sorted = values.Order().ToList();
    return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
}

static string FindRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        if (File.Exists(Path.Combine(dir.FullName, "pyro.slnx")))
        {
            return dir.FullName;
        }
    }

    throw new InvalidOperationException("run the bench from inside the checkout");
}
