using System.Diagnostics;
using System.Text.Json;

namespace PyroMcp.GuestTests;

/// <summary>
/// A state directory of its own where processes get killed on purpose, and the checks that what
/// they left behind was repaired: after a reconciling call, every workspace is in a settled
/// state, exactly the processes that state implies exist (one supervisor and one QEMU while
/// running, none otherwise), and no file is left that no workspace owns.
/// </summary>
internal sealed class FaultLab : IDisposable
{
    internal FaultLab(string name)
    {
        StateDir = Directory.CreateTempSubdirectory($"pyro-fault-{name}-").FullName;
        RunDir = Path.Combine(StateDir, "run");
        Seed = Path.Combine(StateDir, "seed-source");
        Directory.CreateDirectory(Seed);
        File.WriteAllText(Path.Combine(Seed, "hello.txt"), "hello from the seed\n");
    }

    internal string StateDir { get; }
    internal string RunDir { get; }
    internal string Seed { get; }

    internal int Cycles { get; private set; }
    internal int OrphanProcesses { get; private set; }
    internal int StateMismatches { get; private set; }
    internal int LeakedFiles { get; private set; }
    internal List<string> Problems { get; } = [];

    internal string Figure => $"{Cycles} cycles, {OrphanProcesses} orphan processes, {StateMismatches} state mismatches, {LeakedFiles} leaked files";

    private Dictionary<string, string> Env(string? fault)
    {
        var env = new Dictionary<string, string> { ["PYRO_STATE_DIR"] = StateDir, ["PYRO_RUN_DIR"] = RunDir };
        if (fault is not null)
        {
            env["PYRO_FAULT"] = fault;
        }

        return env;
    }

    /// <summary>The CLI against this lab's state, optionally armed to kill itself at <paramref name="fault"/>.</summary>
    internal Task<ProcessResult> PyroAsync(string? fault, params string[] args) => PyroCli.RunAsync(args, Env(fault), TimeSpan.FromMinutes(5));

    /// <summary>Runs a command armed with a fault point and asserts that it really died there (SIGKILL: exit 137).</summary>
    internal async Task KilledAtAsync(string fault, params string[] args)
    {
        var result = await PyroAsync(fault, args);
        Assert.True(result.ExitCode == 137, $"'{string.Join(' ', args)}' was to die at {fault}; it did not:\n{result}");
    }

    internal async Task<string> CreateAsync(string name, int ttlSeconds = 3600)
    {
        var created = await PyroAsync(null, "workspace", "create", "debian:12", "--name", name, "--seed-path", Seed, "--ttl-seconds", ttlSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture), "--json");
        Assert.True(created.ExitCode == 0, created.ToString());
        return created.Json.GetProperty("workspace_id").GetString()!;
    }

    /// <summary>Workspaces as a later command sees them (listing repairs what a crash left).</summary>
    internal async Task<Dictionary<string, JsonElement>> ListAsync()
    {
        var list = await PyroAsync(null, "workspace", "list", "--json");
        Assert.True(list.ExitCode == 0, list.ToString());
        var root = list.Json;
        var items = root.ValueKind == JsonValueKind.Array ? root : root.GetProperty("workspaces");
        return items.EnumerateArray().ToDictionary(w => w.GetProperty("workspace_id").GetString()!, w => w.Clone());
    }

    /// <summary>
    /// One cycle's verdict: lists (which repairs), then checks processes, states and files against
    /// each other, giving processes that are dying a moment to go. Counts what never settles.
    /// <paramref name="expected"/> maps a workspace name to the state it must be in (null: gone).
    /// </summary>
    internal async Task<Dictionary<string, JsonElement>> VerifyAsync(string trial, IReadOnlyDictionary<string, string?>? expected = null)
    {
        Cycles++;
        Dictionary<string, JsonElement> workspaces = [];
        (int Orphans, int Mismatches, int Leaks, List<string> Why) verdict = default;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        do
        {
            workspaces = await ListAsync();
            verdict = Check(workspaces, expected);
            if (verdict.Orphans + verdict.Mismatches + verdict.Leaks == 0)
            {
                return workspaces;
            }

            await Task.Delay(250);
        }
        while (DateTime.UtcNow < deadline);

        OrphanProcesses += verdict.Orphans;
        StateMismatches += verdict.Mismatches;
        LeakedFiles += verdict.Leaks;
        Problems.AddRange(verdict.Why.Select(w => $"{trial}: {w}"));
        return workspaces;
    }

    private (int Orphans, int Mismatches, int Leaks, List<string> Why) Check(Dictionary<string, JsonElement> workspaces, IReadOnlyDictionary<string, string?>? expected)
    {
        var why = new List<string>();
        int orphans = 0, mismatches = 0, leaks = 0;
        var processes = Processes();
        var names = workspaces.ToDictionary(w => w.Value.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : w.Key, w => w.Key);
        foreach (var (name, state) in expected ?? new Dictionary<string, string?>())
        {
            var actual = names.TryGetValue(name, out var id) ? workspaces[id].GetProperty("state").GetString() : null;
            if (actual != state)
            {
                mismatches++;
                why.Add($"{name} is {actual ?? "gone"}, expected {state ?? "gone"}");
            }
        }

        foreach (var (id, workspace) in workspaces)
        {
            var state = workspace.GetProperty("state").GetString();
            if (state is "creating" or "starting" or "stopping" or "resetting" or "deleting")
            {
                mismatches++;
                why.Add($"{id} is still {state} after a later command");
            }

            var supervisors = processes.Count(p => p.Id == id && p.Kind == "supervisor");
            var qemus = processes.Count(p => p.Id == id && p.Kind == "qemu");
            var want = state == "running" ? 1 : 0;
            if (supervisors != want || qemus != want)
            {
                orphans += Math.Abs(supervisors - want) + Math.Abs(qemus - want);
                why.Add($"{id} is {state} with {supervisors} supervisors and {qemus} QEMUs");
            }
        }

        foreach (var process in processes.Where(p => p.Id is null || !workspaces.ContainsKey(p.Id)))
        {
            orphans++;
            why.Add($"process of no workspace: {process.CommandLine}");
        }

        var dirs = Directory.Exists(Path.Combine(StateDir, "workspaces")) ? Directory.GetDirectories(Path.Combine(StateDir, "workspaces")).Select(Path.GetFileName).ToList() : [];
        var lockIds = Directory.Exists(Path.Combine(StateDir, "locks")) ? Directory.GetFiles(Path.Combine(StateDir, "locks")).Select(Path.GetFileNameWithoutExtension).Distinct().ToList() : [];
        foreach (var stray in dirs.Concat(lockIds).Where(id => id is null || !workspaces.ContainsKey(id)))
        {
            leaks++;
            why.Add($"files of no workspace: {stray}");
        }

        foreach (var image in Directory.EnumerateDirectories(StateDir, "fork-image", SearchOption.AllDirectories))
        {
            leaks++;
            why.Add($"fork image nobody uses: {image}");
        }

        foreach (var partial in Directory.EnumerateFiles(StateDir, "*.partial", SearchOption.AllDirectories))
        {
            leaks++;
            why.Add($"half-written file: {partial}");
        }

        var vms = Path.Combine(RunDir, "vms");
        if (Directory.Exists(vms) && Directory.GetDirectories(vms).Length > 0)
        {
            leaks++;
            why.Add("VM scratch left in the run directory");
        }

        return (orphans, mismatches, leaks, why);
    }

    internal sealed record LabProcess(int Pid, string Kind, string? Id, string CommandLine);

    /// <summary>Supervisors and QEMUs of this lab (their command lines name its state directory).</summary>
    internal List<LabProcess> Processes()
    {
        var found = new List<LabProcess>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
            {
                continue;
            }

            try
            {
                var args = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0');
                var line = string.Join(' ', args);
                if (!line.Contains(StateDir, StringComparison.Ordinal) || File.ReadAllText(Path.Combine(dir, "stat")).Split(") ")[1].StartsWith('Z'))
                {
                    continue;
                }

                if (args.Any(a => a.Contains("pyro-supervisor", StringComparison.Ordinal)))
                {
                    var at = Array.IndexOf(args, "--workspace");
                    found.Add(new LabProcess(pid, "supervisor", at >= 0 && at + 1 < args.Length ? args[at + 1] : null, line));
                }
                else if (args[0].EndsWith("qemu-system-x86_64", StringComparison.Ordinal) || args[0].EndsWith("qemu-system-aarch64", StringComparison.Ordinal))
                {
                    var name = Array.IndexOf(args, "-name");
                    found.Add(new LabProcess(pid, "qemu", name >= 0 && name + 1 < args.Length ? args[name + 1].Replace("pyro-", "", StringComparison.Ordinal) : null, line));
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or IndexOutOfRangeException)
            {
            }
        }

        return found;
    }

    /// <summary>SIGKILL to the workspace's QEMU or supervisor, from outside: a crash pyro did not see coming.</summary>
    internal void KillProcess(string id, string kind)
    {
        var target = Processes().Single(p => p.Id == id && p.Kind == kind);
        Process.GetProcessById(target.Pid).Kill();
    }

    /// <summary>Waits (on the state, not a guess) until the workspace is in <paramref name="state"/>.</summary>
    internal async Task WaitForStateAsync(string name, string state, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var list = await ListAsync();
            var match = list.Values.FirstOrDefault(w => w.TryGetProperty("name", out var n) && n.GetString() == name);
            var actual = match.ValueKind == JsonValueKind.Undefined ? "gone" : match.GetProperty("state").GetString();
            if (actual == state)
            {
                return;
            }

            Assert.True(DateTime.UtcNow < deadline, $"{name} stayed {actual}, never {state}");
            await Task.Delay(500);
        }
    }

    public void Dispose()
    {
        foreach (var process in Processes())
        {
            try
            {
                Process.GetProcessById(process.Pid).Kill();
            }
            catch (ArgumentException)
            {
            }
        }

        try
        {
            Directory.Delete(StateDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
