using System.Formats.Tar;
using System.Runtime.InteropServices;
using PyroMcp.Vmm;

namespace PyroMcp.GuestTests;

/// <summary>
/// QEMU's own confinement (user, seccomp, owner tie), paths QEMU must not misparse, and the
/// resource caps, on real guests. The comma paths test has directories of its own, so it runs in
/// a lane beside the other two.
/// </summary>
[TestCaseOrderer(LaneOrderer.Name, LaneOrderer.Assembly)]
public sealed class WallsTests(Lanes lanes) : GuestTest, IClassFixture<Lanes>
{
    public override Task InitializeAsync()
    {
        lanes.Begin(GetType(), key => key == nameof(RunAndWorkspaceBootWhenTheirDirectoriesHaveCommas) ? CommaLaneAsync : throw new ArgumentException($"no lane {key}", nameof(key)));
        return base.InitializeAsync();
    }

    private Task<string> CreateAsync(Dictionary<string, string>? env = null) => CreateWorkspaceAsync(env: env);

    private static Task<ProcessResult> Ok(Dictionary<string, string>? env, params string[] args) => PyroCli.OkAsync(env, args);

    private static async Task<T> WaitForAsync<T>(Func<T?> probe, string what, int seconds = 120) where T : struct
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < deadline)
        {
            if (probe() is { } found)
            {
                return found;
            }

            await Task.Delay(50);
        }

        throw new Xunit.Sdk.XunitException("timed out waiting for " + what);
    }

    /// <summary>The real QEMU (by its executable, not a wrapper whose command line names it) whose arguments contain <paramref name="marker"/>.</summary>
    private static int? QemuProcess(string marker)
    {
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
            {
                continue;
            }

            try
            {
                var exe = new FileInfo(Path.Combine(dir, "exe")).LinkTarget ?? "";
                if (Path.GetFileName(exe).StartsWith("qemu-system", StringComparison.Ordinal) && File.ReadAllText(Path.Combine(dir, "cmdline")).Contains(marker, StringComparison.Ordinal))
                {
                    return pid;
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return null;
    }

    private static string StatusField(int pid, string field)
        => File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal))[(field.Length + 1)..].Trim();

    private static int EffectiveUid(int pid) => int.Parse(StatusField(pid, "Uid").Split('\t', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);

    private static string UserName(int uid)
        => File.ReadLines("/etc/passwd").Select(l => l.Split(':')).First(f => f[2] == uid.ToString(System.Globalization.CultureInfo.InvariantCulture))[0];

    /// <summary>Waits until QEMU has dropped its privileges, then reports who it runs as and its seccomp mode.</summary>
    private static async Task<(int Uid, string Seccomp)> ConfinementOfAsync(int qemu)
    {
        // QEMU opens its files as root and drops afterwards: wait for the drop, with a deadline.
        var uid = await WaitForAsync<int>(() => Directory.Exists($"/proc/{qemu}") && EffectiveUid(qemu) != 0 ? EffectiveUid(qemu) : null, "QEMU to drop root", 60);
        return (uid, StatusField(qemu, "Seccomp"));
    }

    [Fact]
    public async Task QemuRunsUnprivilegedUnderSeccompAndDiesWithItsKilledOwner()
    {
        Assert.True(Environment.IsPrivilegedProcess, "this test checks the root path (QEMU drops privileges); the suite runs as root here and in CI");
        var expectedUser = File.ReadLines("/etc/passwd").Any(l => l.StartsWith("pyro-qemu:", StringComparison.Ordinal)) ? "pyro-qemu" : "nobody";

        // 1. pyro run: the CLI process owns QEMU.
        using (var run = PyroCli.Start(["run", "debian:12", "--timeout-seconds", "600", "--", "sleep", "600"]))
        {
            run.StandardInput.Close();
            var qemu = await WaitForAsync<int>(() => QemuProcess(Repo.RunDir), "pyro run's QEMU");
            var (uid, seccomp) = await ConfinementOfAsync(qemu);
            Assert.Equal(expectedUser, UserName(uid));
            Assert.Equal("2", seccomp);

            Assert.Equal(0, Kill(run.Id, 9));
            await run.WaitForExitAsync();
            await WaitForAsync<bool>(() => Directory.Exists($"/proc/{qemu}") ? null : true, "QEMU to die with its kill -9'd owner", 30);
            Assert.Null(QemuProcess(Repo.RunDir));
            Figures.Record("QEMU confinement (pyro run)", $"QEMU ran as {UserName(uid)} (uid {uid}) with seccomp mode {seccomp}; owner kill -9'd: {(QemuProcess(Repo.RunDir) is null ? 0 : 1)} QEMU left");
        }

        // The killed owner could not remove its VM directory: the next start reaps it, as here.
        QemuVm.ReapStale(new PyroOptions { RunDir = Repo.RunDir });

        // 2. A workspace: its supervisor owns QEMU.
        var id = await CreateAsync();
        var workspaceQemu = await WaitForAsync<int>(() => QemuProcess(id), "the workspace's QEMU");
        var (wsUid, wsSeccomp) = await ConfinementOfAsync(workspaceQemu);
        Assert.Equal(expectedUser, UserName(wsUid));
        Assert.Equal("2", wsSeccomp);
        var supervisor = (await Ok(null, "workspace", "status", id, "--json")).Json.GetProperty("supervisor_pid").GetInt32();
        Assert.Equal(0, Kill(supervisor, 9));
        await WaitForAsync<bool>(() => Directory.Exists($"/proc/{workspaceQemu}") ? null : true, "QEMU to die with its kill -9'd supervisor", 30);
        Assert.Null(QemuProcess(id));
        Assert.Equal("crashed", (await Ok(null, "workspace", "status", id, "--json")).Json.GetProperty("state").GetString());
        Figures.Record("QEMU confinement (workspace)", $"QEMU ran as {UserName(wsUid)} (uid {wsUid}) with seccomp mode {wsSeccomp}; supervisor kill -9'd: {(QemuProcess(id) is null ? 0 : 1)} QEMU left");

        // A crashed workspace starts again: the disk QEMU wrote as the unprivileged user is still usable.
        await Ok(null, "workspace", "start", id);
        Assert.Equal("ok\n", (await Ok(null, "workspace", "exec", id, "--", "echo", "ok")).Stdout);
    }

    [Fact]
    [Lane(1)]
    public Task RunAndWorkspaceBootWhenTheirDirectoriesHaveCommas() => lanes.RunAsync(nameof(RunAndWorkspaceBootWhenTheirDirectoriesHaveCommas), CommaLaneAsync);

    private static async Task CommaLaneAsync()
    {
        var root = Directory.CreateTempSubdirectory("pyro-comma-").FullName;
        var env = new Dictionary<string, string>
        {
            ["PYRO_RUN_DIR"] = Path.Combine(root, "run,readonly=on,file=x"),
            ["PYRO_STATE_DIR"] = Path.Combine(root, "state,b"),
        };
        string? id = null;
        try
        {
            var run = await PyroCli.RunAsync(["run", "debian:12", "--", "echo", "comma run"], env);
            Assert.True(run.ExitCode == 0, run.ToString());
            Assert.Equal("comma run\n", run.Stdout);

            var created = await PyroCli.RunAsync(["workspace", "create", "debian:12", "--id-only"], env, TimeSpan.FromMinutes(5));
            Assert.True(created.ExitCode == 0, created.ToString());
            id = created.Stdout.Trim();
            Assert.Equal("comma workspace\n", (await Ok(env, "workspace", "exec", id, "--", "echo", "comma workspace")).Stdout);
            // The disk is the one in the comma directory, written and read back through QEMU.
            await Ok(env, "workspace", "exec", id, "--", "sh", "-c", "echo kept > kept.txt && sync");
            await Ok(env, "workspace", "stop", id);
            await Ok(env, "workspace", "start", id);
            Assert.Equal("kept\n", (await Ok(env, "workspace", "exec", id, "--", "cat", "kept.txt")).Stdout);
            await Ok(env, "workspace", "delete", id);
            id = null;
            Figures.Record("QEMU option escaping (guest)", "run dir and state dir with commas: run and workspace booted, 0 options injected");
            // A lane checks its own scratch: nothing of the run or the workspace is left.
            await Leftovers.AssertNoneAsync(env["PYRO_RUN_DIR"], env["PYRO_STATE_DIR"]);
        }
        finally
        {
            // Cleanup, not a check: what a failed run left.
            if (id is not null)
            {
                await PyroCli.RunAsync(["workspace", "delete", id], env);
            }

            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task SnapshotAndListCapsHoldAgainstARealGuest()
    {
        const long Budget = 3L * 1024 * 1024;
        var env = new Dictionary<string, string>
        {
            ["PYRO_MAX_SNAPSHOTS"] = "2",
            ["PYRO_MAX_SNAPSHOT_BYTES"] = Budget.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["PYRO_MAX_LIST_ENTRIES"] = "3",
            ["PYRO_MAX_SKIPPED_ENTRIES"] = "4",
        };
        var id = await CreateAsync(env);
        var snapshots = Path.Combine(Repo.StateDir, "workspaces", id, "snapshots");

        await Ok(env, "workspace", "exec", id, "--", "sh", "-c", "head -c 1048576 /dev/urandom > a.bin");
        await Ok(env, "workspace", "snapshot", "create", id, "s1");

        // 4 MiB more: the snapshot grows past the budget while it is written, and is removed.
        await Ok(env, "workspace", "exec", id, "--", "sh", "-c", "head -c 4194304 /dev/urandom > b.bin");
        var over = await PyroCli.RunAsync(["workspace", "snapshot", "create", id, "s2"], env);
        Assert.Equal(2, over.ExitCode);
        Assert.Contains("error code: snapshot_limit_reached", over.Stderr);
        var leftOnHost = Directory.GetFiles(snapshots).Where(f => !f.EndsWith("/s1.tar", StringComparison.Ordinal)).Sum(f => new FileInfo(f).Length);
        Assert.Equal(["s1.tar"], Directory.GetFiles(snapshots).Select(Path.GetFileName));
        Assert.Equal(["s1"], (await Ok(env, "workspace", "snapshot", "list", id, "--json")).Json.EnumerateArray().Select(s => s.GetProperty("name").GetString()));

        // The workspace is fine, and with the big file gone the same snapshot fits.
        await Ok(env, "workspace", "exec", id, "--", "rm", "b.bin");
        await Ok(env, "workspace", "snapshot", "create", id, "s2");
        var third = await PyroCli.RunAsync(["workspace", "snapshot", "create", id, "s3"], env);
        Assert.Equal(2, third.ExitCode);
        Assert.Contains("error code: snapshot_limit_reached", third.Stderr);
        Assert.Contains("has 2 snapshots", third.Stderr);
        Assert.False(File.Exists(Path.Combine(snapshots, "s3.tar")));

        // A listing longer than the cap is cut and says so.
        await Ok(env, "workspace", "exec", id, "--", "sh", "-c", "for i in 0 1 2 3 4 5 6 7 8 9; do touch f$i; done");
        var listing = await Ok(env, "workspace", "file", "list", id, "--json");
        Assert.Equal(3, listing.Json.GetArrayLength());
        var shown = System.Text.RegularExpressions.Regex.Match(listing.Stderr, @"showing 3 of (\d+) entries");
        Assert.True(shown.Success && int.Parse(shown.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) >= 11, listing.ToString());

        // Skipped entries of a sync: four reported, all counted.
        var archive = Path.Combine(HostDir, "many-bad.tar");
        const int Bad = 20;
        await using (var file = File.Create(archive))
        await using (var tar = new TarWriter(file, TarEntryFormat.Pax))
        {
            for (var i = 0; i < Bad; i++)
            {
                var entry = new PaxTarEntry(TarEntryType.RegularFile, $"../escape-{i}.txt") { DataStream = new MemoryStream("x"u8.ToArray()) };
                await tar.WriteEntryAsync(entry);
            }
        }

        var push = (await Ok(env, "workspace", "sync", "push", id, archive, "--json")).Json;
        Assert.Equal(4, push.GetProperty("skipped").GetArrayLength());
        Assert.Equal(Bad, push.GetProperty("skipped_total").GetInt64());
        Assert.True(push.GetProperty("skipped_truncated").GetBoolean());

        Figures.Record("snapshot and list caps (guest)",
            $"a snapshot past a {Budget >> 20} MiB budget: refused, {leftOnHost} bytes of it left on the host; a 3rd past a count of 2: refused; " +
            $"listing of {shown.Groups[1].Value} cut to 3 with the total; {Bad} skipped entries reported as 4 with skipped_total {push.GetProperty("skipped_total").GetInt64()}");
        Assert.Equal(0, leftOnHost);
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
