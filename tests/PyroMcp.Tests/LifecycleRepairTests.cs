using System.Diagnostics;
using PyroMcp.Environments;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// What a killed process leaves, and what the next call makes of it, without a guest: rows in
/// states in progress with their locks free (or held by a live process), stray files and locks.
/// The fault-matrix guest tests do the same with real kills at real points.
/// </summary>
public sealed class LifecycleRepairTests : IDisposable
{
    private readonly string _state = Directory.CreateTempSubdirectory("pyro-repair-").FullName;
    private readonly List<Process> _holders = [];

    public void Dispose()
    {
        _holders.ForEach(FlockHolder.Stop);
        Directory.Delete(_state, recursive: true);
    }

    private WorkspaceManager Manager()
    {
        var options = new PyroOptions { StateDir = _state, RunDir = Path.Combine(_state, "run") };
        return new WorkspaceManager(options, new EnvironmentStore(options));
    }

    /// <summary>A workspace as a process killed in <paramref name="state"/> at <paramref name="step"/> leaves it: row, directory, lock files (free).</summary>
    private string Abandoned(WorkspaceManager manager, string id, WorkspaceState state, string step = "a step")
    {
        StoreSeed.Insert(manager.Store, new WorkspaceRecord
        {
            Id = id, Environment = "debian:12", VcpuCount = 1, MemMib = 512, TtlSeconds = 600,
            CreatedAt = DateTimeOffset.UtcNow, ExpiresAt = DateTimeOffset.UtcNow.AddMinutes(10), State = state,
        });
        if (WorkspaceTransition.IsInProgress(state))
        {
            Assert.True(manager.Store.SetStep(id, state, step));
        }

        Directory.CreateDirectory(Path.Combine(manager.Store.WorkspaceDir(id), "snapshots"));
        PyroMcp.Host.PrivateDirectory.Ensure(WorkspaceLocks.Directory(_state));
        File.WriteAllText(WorkspaceLocks.OperationPath(_state, id), "");
        File.WriteAllText(WorkspaceLocks.SupervisorPath(_state, id), "");
        return id;
    }

    private Process Hold(string lockPath, params string[] label)
    {
        var holder = FlockHolder.Start(lockPath, label);
        _holders.Add(holder);
        return holder;
    }

    [Theory]
    [InlineData(WorkspaceState.Creating)]
    [InlineData(WorkspaceState.Deleting)]
    public async Task AnAbandonedCreateOrDeleteLeavesNothing(WorkspaceState state)
    {
        var manager = Manager();
        var id = Abandoned(manager, "00000000c0de", state);
        File.WriteAllText(Path.Combine(manager.Store.WorkspaceDir(id), "baseline.tar.partial"), "half");

        Assert.Empty(await manager.ListAsync(null, CancellationToken.None));
        Assert.Null(manager.Store.Find(id));
        Assert.False(Directory.Exists(manager.Store.WorkspaceDir(id)));
        Assert.Empty(Directory.GetFiles(WorkspaceLocks.Directory(_state)));
    }

    [Fact]
    public async Task AnOperationStillUnderWayIsLeftToItsOwner()
    {
        var manager = Manager();
        var id = Abandoned(manager, "00000000beef", WorkspaceState.Creating, "booting its VM");
        Hold(WorkspaceLocks.OperationPath(_state, id));

        var listed = Assert.Single(await manager.ListAsync(null, CancellationToken.None));
        Assert.Equal(WorkspaceState.Creating, listed.State);
        Assert.Equal("booting its VM", listed.StateReason);
        Assert.True(Directory.Exists(manager.Store.WorkspaceDir(id)));
    }

    [Fact]
    public async Task AnAbandonedStartEndsStoppedWithoutASupervisorAndRunningWithABootedOne()
    {
        var manager = Manager();
        var cold = Abandoned(manager, "0000000000a1", WorkspaceState.Starting);
        Assert.Equal(WorkspaceState.Stopped, (await manager.StatusAsync(cold, CancellationToken.None)).State);
        Assert.Contains("start was interrupted", manager.Store.Get(cold).StateReason);

        var warm = Abandoned(manager, "0000000000a2", WorkspaceState.Starting);
        var supervisor = Hold(WorkspaceLocks.SupervisorPath(_state, warm), "pyro-supervisor", "--state-dir", _state, "--workspace", warm);
        Assert.True(manager.Store.RegisterSupervisor(warm, supervisor.Id));
        Assert.True(manager.Store.MarkBooted(warm, supervisor.Id));
        var info = await manager.StatusAsync(warm, CancellationToken.None);
        Assert.Equal(WorkspaceState.Running, info.State);
        Assert.Equal(supervisor.Id, info.SupervisorPid);
    }

    [Fact]
    public async Task AnAbandonedResetEndsFailedAndSaysWhichStepItReached()
    {
        var manager = Manager();
        var id = Abandoned(manager, "0000000000b1", WorkspaceState.Resetting, "making a fresh disk");
        var info = await manager.StatusAsync(id, CancellationToken.None);
        Assert.Equal(WorkspaceState.Failed, info.State);
        Assert.Contains("interrupted while making a fresh disk", info.StateReason);
    }

    [Fact]
    public async Task AnAbandonedStopEndsStoppedAndARunningWorkspaceWithoutSupervisorIsCrashed()
    {
        var manager = Manager();
        var stopping = Abandoned(manager, "0000000000c1", WorkspaceState.Stopping);
        Assert.Equal(WorkspaceState.Stopped, (await manager.StatusAsync(stopping, CancellationToken.None)).State);

        var running = Abandoned(manager, "0000000000c2", WorkspaceState.Running);
        Assert.Equal(WorkspaceState.Crashed, (await manager.StatusAsync(running, CancellationToken.None)).State);
        // The repair is written down, not only reported.
        Assert.Equal(WorkspaceState.Crashed, manager.Store.Get(running).State);
    }

    [Fact]
    public async Task HalfWrittenFilesUnknownSnapshotsAndOrphanLocksAndDirectoriesAreSwept()
    {
        var manager = Manager();
        var id = Abandoned(manager, "0000000000d1", WorkspaceState.Stopped);
        var snapshots = Path.Combine(manager.Store.WorkspaceDir(id), "snapshots");
        File.WriteAllText(Path.Combine(snapshots, "s1.tar.partial"), "half");
        File.WriteAllText(Path.Combine(snapshots, "unrecorded.tar"), "never made it into the database");
        File.WriteAllText(Path.Combine(snapshots, "kept.tar"), "recorded");
        manager.Store.AddSnapshot(id, new SnapshotInfo("kept", DateTimeOffset.UtcNow, 1, 8));
        // A create killed after its lock but before its row, and a directory of a row that is gone.
        File.WriteAllText(WorkspaceLocks.OperationPath(_state, "0000000000d2"), "");
        Directory.CreateDirectory(manager.Store.WorkspaceDir("0000000000d3"));
        // One whose create is still running elsewhere keeps its lock.
        Hold(WorkspaceLocks.OperationPath(_state, "0000000000d4"));

        var listed = Assert.Single(await manager.ListAsync(null, CancellationToken.None));
        Assert.Equal(id, listed.WorkspaceId);
        Assert.Equal(["kept.tar"], Directory.GetFiles(snapshots).Select(Path.GetFileName));
        Assert.False(File.Exists(WorkspaceLocks.OperationPath(_state, "0000000000d2")));
        Assert.False(Directory.Exists(manager.Store.WorkspaceDir("0000000000d3")));
        Assert.True(File.Exists(WorkspaceLocks.OperationPath(_state, "0000000000d4")));
    }
}
