using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using PyroMcp;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Protocol;
using PyroMcp.Runtime;
using PyroMcp.Vmm;

// Measures pyro against its floor in one run and prints ratios. Never a pass/fail: numbers only.
//   dotnet run -c Release --project bench/PyroMcp.Bench [-- ROUNDS]
var rounds = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 3;
var root = FindRoot();
var config = "release";
var cli = Path.Combine(root, "artifacts", "bin", "PyroMcp.Cli", config, "pyro.dll");
var options = new PyroOptions { AgentPath = Path.Combine(root, "artifacts", "bin", "PyroMcp.Cli", config, "guest", "pyro-agent") };
if (!File.Exists(cli))
{
    Console.Error.WriteLine($"build first: {cli} is missing (./test.sh or dotnet build -c Release)");
    return 1;
}

const string EnvironmentName = "debian:12";
var pyro = new Pyro(options);
var environment = await pyro.PullEnvironmentAsync(EnvironmentName);
var bundle = await RuntimeBundle.EnsureAsync(options, null, CancellationToken.None);
var accelerator = KvmProbe.Detect().Choose(options.Accelerator).Chosen;
Console.WriteLine($"pyro bench: environment={EnvironmentName} accelerator={accelerator.ToString().ToLowerInvariant()} rounds={rounds} cores={Environment.ProcessorCount}");

// 1. cold `pyro run ENV -- true`, start to exit, beside a bare QEMU boot of the same kernel and disk.
var runTimes = new List<double>();
var bareTimes = new List<double>();
for (var i = 0; i < rounds; i++)
{
    // Interleaved so drift on the machine hits both sides alike.
    runTimes.Add(await TimeAsync("dotnet", [cli, "run", EnvironmentName, "--", "true"]));
    bareTimes.Add(await BareBootAsync());
}

var run = Median(runTimes);
var bare = Median(bareTimes);
Console.WriteLine($"cold run (pyro run {EnvironmentName} -- true):   median {run:0} ms  [{string.Join(", ", runTimes.Select(t => t.ToString("0", CultureInfo.InvariantCulture)))}]");
Console.WriteLine($"bare QEMU boot to a shell that exits:      median {bare:0} ms  [{string.Join(", ", bareTimes.Select(t => t.ToString("0", CultureInfo.InvariantCulture)))}]");
Console.WriteLine($"ratio cold_run / bare_boot = {run / bare:0.00} (target <= 1.2)");

// 1b. Where a cold run spends its time: the boot phases of one-shot runs through the SDK (the
// phases start at QEMU's spawn, so the CLI's own start-up is not in them), median per phase.
var phaseRuns = new List<BootPhases>();
for (var i = 0; i < rounds; i++)
{
    var phased = await pyro.RunAsync(new RunRequest { Environment = EnvironmentName, Command = ["true"] });
    phaseRuns.Add(phased.BootPhasesMs ?? throw new InvalidOperationException("the guest agent reported no boot times"));
}

double PhaseMedian(Func<BootPhases, long> phase) => Median([.. phaseRuns.Select(p => (double)phase(p))]);
Console.WriteLine($"agent_start_ms (in-guest, agent process start to ready): median {PhaseMedian(p => p.Agent):0}");
Console.WriteLine($"boot_phases_ms (median of {rounds}): qemu_start={PhaseMedian(p => p.QemuStart):0} kernel={PhaseMedian(p => p.Kernel):0} " +
    $"init={PhaseMedian(p => p.Init):0} agent={PhaseMedian(p => p.Agent):0} first_exec={PhaseMedian(p => p.FirstExec):0}");

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

    Console.WriteLine($"exec round trip of true (30 in one VM): median {Median(trips):0.0} ms  min {trips.Min():0.0} ms");

}

// 3. Workspaces: create to first exec, exec round trip through the supervisor, tree throughput.
var state = Directory.CreateTempSubdirectory("pyro-bench-state-").FullName;
var tree = Directory.CreateTempSubdirectory("pyro-bench-tree-").FullName;
var workspaceOptions = options with { StateDir = state, SupervisorPath = Path.Combine(root, "artifacts", "bin", "PyroMcp.Cli", config, "pyro-supervisor.dll") };
var workspaces = new Pyro(workspaceOptions);
var benchFailed = false;
try
{
    var create = Stopwatch.StartNew();
    var ws = await workspaces.CreateWorkspaceAsync(new WorkspaceCreateRequest { Environment = EnvironmentName });
    await workspaces.ExecWorkspaceAsync(ws.WorkspaceId, new WorkspaceExecRequest { Command = ["true"] });
    Console.WriteLine($"workspace create to first exec (cold boot): {create.Elapsed.TotalMilliseconds:0} ms  (warm restore from a memory snapshot: not built yet)");

    var trips = new List<double>();
    for (var i = 0; i < 30; i++)
    {
        var clock = Stopwatch.StartNew();
        await workspaces.ExecWorkspaceAsync(ws.WorkspaceId, new WorkspaceExecRequest { Command = ["true"] });
        trips.Add(clock.Elapsed.TotalMilliseconds);
    }

    Console.WriteLine($"workspace exec round trip of true (30, via supervisor, history recorded): median {Median(trips):0.0} ms");

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

        Console.WriteLine($"workspace exec round trip of true beside a client that never reads: median {Median(stalledTrips):0.0} ms");
        Console.WriteLine($"stalled_client_exec_rtt_over_normal = {Median(stalledTrips) / Median(trips):0.00} (goal <= 2.0)");
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
    Console.WriteLine($"raw guest channel (one 100 MiB file read): {rawMbps:0.0} MB/s");
    await workspaces.ExecWorkspaceAsync(ws.WorkspaceId, new WorkspaceExecRequest { Command = ["rm", "raw.bin"] });
    var push = Stopwatch.StartNew();
    var pushed = await workspaces.PushWorkspaceSyncAsync(ws.WorkspaceId, tree, "bench");
    var pushMbps = pushed.Bytes / 1e6 / push.Elapsed.TotalSeconds;
    var export = Stopwatch.StartNew();
    var exported = await workspaces.ExportWorkspaceAsync(ws.WorkspaceId, "bench", Path.Combine(state, "export"));
    var exportMbps = exported.Bytes / 1e6 / export.Elapsed.TotalSeconds;
    Console.WriteLine($"sync push of 100 MiB tree: {pushMbps:0.0} MB/s  ratio to raw channel {pushMbps / rawMbps:0.00} (target >= 0.5)");
    Console.WriteLine($"export of 100 MiB tree:    {exportMbps:0.0} MB/s  ratio to raw channel {exportMbps / rawMbps:0.00} (target >= 0.5)");
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

return benchFailed ? 1 : 0;

// An idle workspace's host cost (supervisor and QEMU resident memory) and the CLI's own share of
// `pyro workspace exec ID -- true`: its wall time minus the SDK's in-process exec round trip.
async Task ReportHostOverheadAsync(string workspaceId, int? supervisorPid, double sdkExecMs)
{
    await Task.Delay(TimeSpan.FromSeconds(3));
    if (supervisorPid is { } pid)
    {
        Console.WriteLine($"supervisor_rss_mib = {ResidentMib(pid):0.0} (idle workspace; pss {ProportionalMib(pid):0.0} MiB)");
    }

    var cliTimes = new List<double>();
    for (var i = 0; i < 5; i++)
    {
        cliTimes.Add(await TimeCliAsync([cli, "workspace", "exec", workspaceId, "--", "true"], state));
    }

    var cliExec = Median(cliTimes);
    Console.WriteLine($"pyro workspace exec ID -- true (CLI, 5): median {cliExec:0} ms  [{string.Join(", ", cliTimes.Select(t => t.ToString("0", CultureInfo.InvariantCulture)))}]");
    Console.WriteLine($"cli_overhead_ms = {cliExec - sdkExecMs:0} (CLI wall minus the in-process exec round trip {sdkExecMs:0.0} ms)");
}

// The CLI against the bench's own state directory (its workspaces live there, not in ~/.local/state).
static async Task<double> TimeCliAsync(string[] arguments, string stateDir)
{
    var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
    foreach (var arg in arguments)
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
        throw new InvalidOperationException($"pyro {string.Join(' ', arguments.Skip(1))} exited {process.ExitCode}: {output[1]}");
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
        await Process(HostTools.Qemu.Require(), [.. QemuCommandLine.Build(launch)]);
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
