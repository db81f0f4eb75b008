using System.Diagnostics;
using Microsoft.Data.Sqlite;
using PyroMcp.Environments;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// A supervisor lives while it holds its workspace's supervisor lock, and is signalled only when
/// pid, start time, owner and command line all match what it recorded when it registered: a
/// stranger's process is never killed.
/// </summary>
public sealed class SupervisorIdentityTests : IDisposable
{
    private readonly string _state = Directory.CreateTempSubdirectory("pyro-identity-").FullName;
    private readonly List<Process> _started = [];

    public void Dispose()
    {
        foreach (var process in _started)
        {
            if (!process.HasExited)
            {
                process.Kill();
                process.WaitForExit();
            }

            process.Dispose();
        }

        Directory.Delete(_state, recursive: true);
    }

    /// <summary>A live process that is not a supervisor but whose command line says it is this workspace's.</summary>
    private Process Impostor(string workspaceId)
    {
        // 'sleep; true' keeps sh itself alive (a lone command would be exec'd), so the command line stays.
        var start = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        foreach (var arg in new[] { "-c", "sleep 600; true", "pyro-supervisor", "--state-dir", _state, "--workspace", workspaceId })
        {
            start.ArgumentList.Add(arg);
        }

        var process = Process.Start(start)!;
        _started.Add(process);
        return process;
    }

    /// <summary>
    /// A process that holds the workspace's supervisor lock, as a supervisor does, with a command
    /// line naming the workspace: flock --no-fork execs tail, which keeps the locked descriptor.
    /// </summary>
    private Process LockHolder(string workspaceId)
    {
        var lockPath = WorkspaceLocks.SupervisorPath(_state, workspaceId);
        Directory.CreateDirectory(Path.GetDirectoryName(lockPath)!);
        var start = new ProcessStartInfo("flock") { UseShellExecute = false };
        foreach (var arg in new[] { "--no-fork", "--exclusive", lockPath, "tail", "-qf", "--", "/dev/null", "pyro-supervisor", "--state-dir", _state, "--workspace", workspaceId })
        {
            start.ArgumentList.Add(arg);
        }

        var process = Process.Start(start)!;
        _started.Add(process);
        return process;
    }

    private (WorkspaceManager Manager, string Id) Workspace()
    {
        var options = new PyroOptions { StateDir = _state };
        var manager = new WorkspaceManager(options, new EnvironmentStore(options));
        var id = "0123456789ab";
        var now = DateTimeOffset.UtcNow;
        StoreSeed.Insert(manager.Store, new WorkspaceRecord
        {
            Id = id, Environment = "debian:12", VcpuCount = 1, MemMib = 512, TtlSeconds = 600, CreatedAt = now, ExpiresAt = now.AddMinutes(10), State = WorkspaceState.Running,
        });
        Directory.CreateDirectory(manager.Store.WorkspaceDir(id));
        return (manager, id);
    }

    private void Point(string id, int pid, long? startTicks, int? uid)
    {
        using var connection = new SqliteConnection($"Data Source={Path.Combine(_state, "pyro.db")}");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE workspaces SET supervisor_pid = $pid, supervisor_start_ticks = $ticks, supervisor_uid = $uid WHERE id = $id";
        command.Parameters.AddWithValue("$pid", pid);
        command.Parameters.AddWithValue("$ticks", (object?)startTicks ?? DBNull.Value);
        command.Parameters.AddWithValue("$uid", (object?)uid ?? DBNull.Value);
        command.Parameters.AddWithValue("$id", id);
        Assert.Equal(1, command.ExecuteNonQuery());
    }

    private static async Task<ProcessIdentity> IdentityAsync(Process process)
    {
        // sh may not have exec'd into its final command line the instant Process.Start returns.
        for (var i = 0; i < 100; i++)
        {
            if (ProcessIdentity.Of(process.Id) is { } identity && File.ReadAllText($"/proc/{process.Id}/cmdline").Contains("pyro-supervisor", StringComparison.Ordinal)
                && (!process.StartInfo.FileName.Equals("flock", StringComparison.Ordinal) || File.ReadAllText($"/proc/{process.Id}/cmdline").StartsWith("tail", StringComparison.Ordinal)))
            {
                return identity;
            }

            await Task.Delay(50);
        }

        throw new InvalidOperationException("the impostor did not start");
    }

    [Theory]
    [InlineData("other start time")]
    [InlineData("no identity recorded")]
    [InlineData("other owner")]
    public async Task AnImpostorWithTheSupervisorsCommandLineIsReportedDeadAndNeverSignalled(string mismatch)
    {
        var (manager, id) = Workspace();
        var impostor = Impostor(id);
        var real = await IdentityAsync(impostor);
        switch (mismatch)
        {
            case "other start time":
                // What a reused pid looks like: the supervisor that registered started at another time.
                Point(id, impostor.Id, real.StartTicks - 1, real.Uid);
                break;
            case "no identity recorded":
                Point(id, impostor.Id, null, null);
                break;
            default:
                Point(id, impostor.Id, real.StartTicks, real.Uid + 1);
                break;
        }

        var record = manager.Store.Get(id);
        Assert.False(SupervisorLauncher.IsProven(record));
        Assert.False(manager.Supervisors.IsAlive(id));
        var status = await manager.StatusAsync(id, CancellationToken.None);
        Assert.Equal(WorkspaceState.Crashed, status.State);
        Assert.Null(status.SupervisorPid);

        var stopped = await manager.StopAsync(id, CancellationToken.None);
        Assert.Equal(WorkspaceState.Stopped, stopped.State);
        Assert.True(await manager.DeleteAsync(id, CancellationToken.None));
        Assert.False(impostor.HasExited, "pyro signalled a process that is not its supervisor");
        Assert.Equal(real, ProcessIdentity.Of(impostor.Id));
    }

    [Fact]
    public async Task ALockHolderWithTheRecordedIdentityIsBelievedAndStoppedThroughItsPidfd()
    {
        var (manager, id) = Workspace();
        var supervisor = LockHolder(id);
        var identity = await IdentityAsync(supervisor);
        Point(id, supervisor.Id, identity.StartTicks, identity.Uid);

        Assert.True(SupervisorLauncher.IsProven(manager.Store.Get(id)));
        Assert.True(manager.Supervisors.IsAlive(id));
        Assert.Equal(supervisor.Id, (await manager.StatusAsync(id, CancellationToken.None)).SupervisorPid);

        // It answers no stop request (no socket): pyro waits its grace, then kills it. Kill is the short path.
        await manager.Supervisors.KillAsync(id, CancellationToken.None);
        Assert.True(supervisor.WaitForExit(TimeSpan.FromSeconds(30)), "the proven supervisor was not stopped");
        Assert.False(manager.Supervisors.IsAlive(id));
        Assert.Equal(WorkspaceState.Crashed, (await manager.StatusAsync(id, CancellationToken.None)).State);
    }

    [Fact]
    public async Task ALockHolderThatIsNotTheRegisteredProcessIsAliveButNeverSignalled()
    {
        var (manager, id) = Workspace();
        var holder = LockHolder(id);
        var identity = await IdentityAsync(holder);
        // The row names another start time: the lock says a supervisor lives, but this one cannot be proven to be it.
        Point(id, holder.Id, identity.StartTicks - 1, identity.Uid);
        Assert.True(manager.Supervisors.IsAlive(id));
        var kill = manager.Supervisors.KillAsync(id, CancellationToken.None);
        await Task.Delay(500);
        Assert.False(holder.HasExited, "pyro signalled a process it could not prove to be the supervisor");
        holder.Kill();
        await kill;
        Assert.False(manager.Supervisors.IsAlive(id));
    }

    [Fact]
    public void ASupervisorRegistersItsOwnIdentityOnlyWhileTheWorkspaceWaitsForOne()
    {
        var options = new PyroOptions { StateDir = _state };
        var store = new WorkspaceStore(_state);
        var now = DateTimeOffset.UtcNow;
        store.Insert(new WorkspaceRecord
        {
            Id = "0123456789ab", Environment = "debian:12", VcpuCount = 1, MemMib = 512, TtlSeconds = 600, CreatedAt = now, ExpiresAt = now.AddMinutes(10), State = WorkspaceState.Creating,
        });
        Assert.True(store.RegisterSupervisor("0123456789ab", Environment.ProcessId));
        var record = store.Get("0123456789ab");
        var self = ProcessIdentity.Of(Environment.ProcessId)!;
        Assert.Equal(self.StartTicks, record.SupervisorStartTicks);
        Assert.Equal(self.Uid, record.SupervisorUid);
        // This test process is no supervisor: its command line does not name the workspace.
        Assert.False(SupervisorLauncher.IsProven(record));
        Assert.False(new SupervisorLauncher(options, store).IsAlive("0123456789ab"));

        // Once running, no second supervisor can register.
        Assert.True(store.TryMove("0123456789ab", WorkspaceTransition.CreateCompleted, WorkspaceState.Creating, null));
        Assert.False(store.RegisterSupervisor("0123456789ab", 1));
        Assert.Equal(Environment.ProcessId, store.Get("0123456789ab").SupervisorPid);
    }

    [Fact]
    public void ADatabaseFromBeforeTheIdentityColumnsIsMigratedInPlace()
    {
        var db = Path.Combine(_state, "pyro.db");
        using (var connection = new SqliteConnection($"Data Source={db}"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = """
                CREATE TABLE workspaces (
                    id TEXT PRIMARY KEY, name TEXT UNIQUE, environment TEXT NOT NULL, vcpu_count INTEGER NOT NULL,
                    mem_mib INTEGER NOT NULL, ttl_seconds INTEGER NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
                    state TEXT NOT NULL, state_reason TEXT, supervisor_pid INTEGER, reset_count INTEGER NOT NULL DEFAULT 0,
                    accelerator TEXT, labels TEXT NOT NULL DEFAULT '{}', seed_source TEXT);
                INSERT INTO workspaces (id, environment, vcpu_count, mem_mib, ttl_seconds, created_at, expires_at, state, supervisor_pid)
                VALUES ('00000000000a', 'debian:12', 1, 512, 600, '2026-12-01T00:00:00.0000000Z', '2126-12-01T00:00:00.0000000Z', 'running', 1);
                """;
            command.ExecuteNonQuery();
        }

        SqliteConnection.ClearAllPools();
        var store = new WorkspaceStore(_state);
        var old = store.Get("00000000000a");
        Assert.Equal(1, old.SupervisorPid);
        Assert.Null(old.SupervisorStartTicks);
        // pid 1 is init, named nothing like a supervisor, and without a recorded identity it is not believed anyway.
        Assert.False(SupervisorLauncher.IsProven(old));

        // A second store on the same (now migrated) database opens cleanly.
        store = new WorkspaceStore(_state);
        Assert.True(store.TryMove("00000000000a", WorkspaceTransition.Crash, WorkspaceState.Running, "test"));
        Assert.Equal(WorkspaceState.Crashed, store.Get("00000000000a").State);
        SqliteConnection.ClearAllPools();
    }
}
