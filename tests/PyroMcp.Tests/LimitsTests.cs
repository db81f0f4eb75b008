using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>Requests larger than the host, and the caps on workspaces, snapshots and lists: each refused with its code, before any work.</summary>
public sealed class LimitsTests : IDisposable
{
    private readonly string _state = Directory.CreateTempSubdirectory("pyro-limits-").FullName;

    public void Dispose() => Directory.Delete(_state, recursive: true);

    private PyroOptions Options(int maxWorkspaces = 100, int maxSnapshots = 32, long maxSnapshotBytes = 1L << 32, int maxList = 10_000)
        => new() { StateDir = _state, RunDir = Path.Combine(_state, "run"), MaxWorkspaces = maxWorkspaces, MaxSnapshots = maxSnapshots, MaxSnapshotBytes = maxSnapshotBytes, MaxListEntries = maxList };

    private static WorkspaceManager Manager(PyroOptions options) => new(options, new EnvironmentStore(options));

    private static WorkspaceRecord Record(string id, WorkspaceState state = WorkspaceState.Stopped) => new()
    {
        Id = id,
        Environment = "debian:12",
        VcpuCount = 1,
        MemMib = 512,
        TtlSeconds = 3600,
        CreatedAt = DateTimeOffset.UtcNow,
        ExpiresAt = DateTimeOffset.UtcNow.AddHours(1),
        State = state,
    };

    // ---- host capacity -------------------------------------------------------------------

    [Fact]
    public void MemTotalIsReadFromMeminfo()
    {
        Assert.Equal(24105, HostCapacity.ParseMemTotalMib("MemTotal:       24683584 kB\nMemFree:        1000 kB\n"));
        Assert.Null(HostCapacity.ParseMemTotalMib("MemFree: 1 kB\n"));
        Assert.True(HostCapacity.Current.MemTotalMib > 0);
        Assert.Equal(Environment.ProcessorCount, HostCapacity.Current.Cores);
    }

    [Fact]
    public void RequestsLargerThanTheHostAreRefusedSayingWhatItHas()
    {
        var host = new HostCapacity(2, 4096);
        var vcpus = Assert.Throws<PyroInputException>(() => new RunRequest { Environment = "debian:12", Command = ["true"], VcpuCount = 3 }.Validate(host));
        Assert.Equal("vcpu_count_exceeds_host", vcpus.Code);
        Assert.Contains("2 cores", vcpus.Message);
        var mem = Assert.Throws<PyroInputException>(() => new RunRequest { Environment = "debian:12", Command = ["true"], MemMib = 4000 }.Validate(host));
        Assert.Equal("mem_exceeds_host", mem.Code);
        Assert.Contains("4096 MiB", mem.Message);
        Assert.Contains($"{host.MaxGuestMemMib} MiB or less", mem.Message);
        // Within the host: accepted.
        new RunRequest { Environment = "debian:12", Command = ["true"], VcpuCount = 2, MemMib = (int)host.MaxGuestMemMib }.Validate(host);

        Assert.Equal("vcpu_count_exceeds_host", Assert.Throws<PyroInputException>(() => WorkspaceManager.Validate(new WorkspaceCreateRequest { Environment = "debian:12", VcpuCount = 3 }, host)).Code);
        Assert.Equal("mem_exceeds_host", Assert.Throws<PyroInputException>(() => WorkspaceManager.Validate(new WorkspaceCreateRequest { Environment = "debian:12", MemMib = 4000 }, host)).Code);

        // SDK messages speak of vCPUs and memory, not of CLI flags.
        Assert.DoesNotContain("--", vcpus.Message);
        Assert.DoesNotContain("--", mem.Message);
    }

    [Fact]
    public async Task TheSdkRefusesMoreVcpusThanThisHostHasBeforeBooting()
    {
        var cores = Environment.ProcessorCount;
        Assert.True(cores < 32, "this check needs a host with fewer than 32 cores");
        var pyro = new Pyro(Options());
        var run = await Assert.ThrowsAsync<PyroInputException>(() => pyro.RunAsync(new RunRequest { Environment = "debian:12", Command = ["true"], VcpuCount = cores + 1 }));
        Assert.Equal("vcpu_count_exceeds_host", run.Code);
        Assert.Contains($"has {cores} core", run.Message);
        var create = await Assert.ThrowsAsync<PyroInputException>(() => pyro.CreateWorkspaceAsync(new WorkspaceCreateRequest { Environment = "debian:12", VcpuCount = cores + 1 }));
        Assert.Equal("vcpu_count_exceeds_host", create.Code);
        Assert.Empty(new WorkspaceStore(_state).List());
    }

    // ---- workspaces per host -------------------------------------------------------------

    [Fact]
    public async Task CreateRefusesPastTheWorkspaceLimitBeforeAnyWork()
    {
        var options = Options(maxWorkspaces: 2);
        var manager = Manager(options);
        StoreSeed.Insert(manager.Store, Record("aaaaaaaaaaa1"));
        StoreSeed.Insert(manager.Store, Record("aaaaaaaaaaa2"));

        var ex = await Assert.ThrowsAsync<PyroInputException>(() => manager.CreateAsync(new WorkspaceCreateRequest { Environment = "debian:12" }, CancellationToken.None));
        Assert.Equal("workspace_limit_reached", ex.Code);
        Assert.Contains("2 workspaces exist", ex.Message);
        Assert.Contains("delete", ex.Message);
        Assert.Equal(2, manager.Store.List().Count);
        // The store makes the (private) workspaces directory; no workspace got one inside it.
        var workspaces = Path.Combine(_state, "workspaces");
        Assert.True(!Directory.Exists(workspaces) || Directory.GetFileSystemEntries(workspaces).Length == 0);
    }

    [Fact]
    public async Task ConcurrentCreatesCannotAllSlipPastTheLimit()
    {
        const int Limit = 3;
        const int Tries = 16;
        var options = Options(maxWorkspaces: Limit);
        // One manager per "process": each opens its own database connection and lock file handle.
        var attempts = Enumerable.Range(0, Tries).Select(i => Task.Run(async () =>
        {
            try
            {
                await Manager(options).InsertWithinLimitAsync(Record($"b{i:x11}", WorkspaceState.Creating), CancellationToken.None);
                return true;
            }
            catch (PyroInputException ex) when (ex.Code == "workspace_limit_reached")
            {
                return false;
            }
        })).ToList();
        var admitted = (await Task.WhenAll(attempts)).Count(ok => ok);
        var stored = new WorkspaceStore(_state).List().Count;

        Figures.Record("workspace limit", $"{Tries} concurrent creates against a limit of {Limit}: {admitted} admitted, {Tries - admitted} refused, {Math.Max(0, stored - Limit)} over the limit");
        Assert.Equal(Limit, admitted);
        Assert.Equal(Limit, stored);
    }

    [Fact]
    public void TheWorkspaceLimitDefaultsToOnePerGibOfHostMemory()
    {
        Assert.Equal(23, new HostCapacity(2, 24105).DefaultMaxWorkspaces);
        Assert.Equal(1, new HostCapacity(1, 700).DefaultMaxWorkspaces);
        Assert.Equal(HostCapacity.Current.DefaultMaxWorkspaces, new PyroOptions().MaxWorkspaces);
    }

    // ---- snapshots -----------------------------------------------------------------------

    [Fact]
    public async Task SnapshotCreateRefusesPastTheCountLimitBeforeDoingWork()
    {
        var manager = Manager(Options(maxSnapshots: 2));
        StoreSeed.Insert(manager.Store, Record("cccccccccccc", WorkspaceState.Running));
        manager.Store.AddSnapshot("cccccccccccc", new SnapshotInfo("one", DateTimeOffset.UtcNow, 1, 1));
        manager.Store.AddSnapshot("cccccccccccc", new SnapshotInfo("two", DateTimeOffset.UtcNow, 1, 1));

        // No VM runs here: a check that came after connecting would fail with workspace_not_running instead.
        var ex = await Assert.ThrowsAsync<PyroInputException>(() => manager.CreateSnapshotAsync("cccccccccccc", "three", CancellationToken.None));
        Assert.Equal("snapshot_limit_reached", ex.Code);
        Assert.Contains("has 2 snapshots", ex.Message);
    }

    [Fact]
    public async Task SnapshotCreateRefusesWhenTheByteBudgetIsSpent()
    {
        var manager = Manager(Options(maxSnapshotBytes: 4096));
        StoreSeed.Insert(manager.Store, Record("dddddddddddd", WorkspaceState.Running));
        var snapshots = Path.Combine(manager.Store.WorkspaceDir("dddddddddddd"), "snapshots");
        Directory.CreateDirectory(snapshots);
        await File.WriteAllBytesAsync(Path.Combine(snapshots, "big.tar"), new byte[4096]);
        manager.Store.AddSnapshot("dddddddddddd", new SnapshotInfo("big", DateTimeOffset.UtcNow, 1, 10));

        var ex = await Assert.ThrowsAsync<PyroInputException>(() => manager.CreateSnapshotAsync("dddddddddddd", "more", CancellationToken.None));
        Assert.Equal("snapshot_limit_reached", ex.Code);
        Assert.Contains("4096 bytes", ex.Message);
        Assert.Equal(["big.tar"], Directory.GetFiles(snapshots).Select(Path.GetFileName));
    }

    // ---- lists ---------------------------------------------------------------------------

    [Fact]
    public async Task TheWorkspaceListIsCutAtTheLimitAndSaysSo()
    {
        var manager = Manager(Options(maxList: 3));
        for (var i = 0; i < 5; i++)
        {
            StoreSeed.Insert(manager.Store, Record($"e{i:x11}"));
        }

        var list = await manager.ListAsync(null, CancellationToken.None);
        Assert.Equal(3, list.Count);
        Assert.Equal(5, list.TotalCount);
        Assert.True(list.Truncated);

        var all = await Manager(Options(maxList: 5)).ListAsync(null, CancellationToken.None);
        Assert.Equal(5, all.Count);
        Assert.False(all.Truncated);
    }

    [Fact]
    public async Task CommandHistoryKeepsTheLatestAndSaysHowManyThereAre()
    {
        var manager = Manager(Options(maxList: 3));
        StoreSeed.Insert(manager.Store, Record("ffffffffffff"));
        for (var i = 0; i < 7; i++)
        {
            manager.Store.AppendCommand("ffffffffffff", $"echo {i}", "/workspace", 0, 1, DateTimeOffset.UtcNow);
        }

        var history = await manager.LogsAsync("ffffffffffff", CancellationToken.None);
        Assert.Equal([5, 6, 7], history.Select(c => c.Sequence));
        Assert.Equal(7, history.TotalCount);
        Assert.True(history.Truncated);
    }

    [Fact]
    public void ACappedListCountsWhatItDoesNotKeep()
    {
        var capped = CappedList<int>.Take(Enumerable.Range(0, 25_000), 10_000);
        Assert.Equal(10_000, capped.Count);
        Assert.Equal(25_000, capped.TotalCount);
        Assert.True(capped.Truncated);
        Assert.Equal(9_999, capped[^1]);
        Assert.False(CappedList<int>.Take([1, 2], 2).Truncated);
    }
}

/// <summary>Environment variables are process-wide: this class runs alone, so no other test builds options meanwhile.</summary>
[CollectionDefinition("process environment", DisableParallelization = true)]
public sealed class ProcessEnvironmentCollection;

[Collection("process environment")]
public sealed class LimitOptionsTests
{
    [Fact]
    public void LimitsHaveDefaultsAndEnvironmentOverrides()
    {
        var defaults = new PyroOptions();
        Assert.Equal(32, defaults.MaxSnapshots);
        Assert.Equal(4L << 30, defaults.MaxSnapshotBytes);
        Assert.Equal(10_000, defaults.MaxListEntries);
        Assert.Equal(1_000, defaults.MaxSkippedEntries);
        Assert.True(defaults.MaxWorkspaces >= 1);

        // Environment variables are process-wide: only unset ones are touched, and restored.
        string[] names = ["PYRO_MAX_WORKSPACES", "PYRO_MAX_SNAPSHOTS", "PYRO_MAX_SNAPSHOT_BYTES", "PYRO_MAX_LIST_ENTRIES", "PYRO_MAX_SKIPPED_ENTRIES"];
        Assert.All(names, n => Assert.Null(Environment.GetEnvironmentVariable(n)));
        try
        {
            foreach (var (name, i) in names.Select((n, i) => (n, i)))
            {
                Environment.SetEnvironmentVariable(name, (i + 2).ToString(System.Globalization.CultureInfo.InvariantCulture));
            }

            var set = new PyroOptions();
            Assert.Equal((2, 3, 4L, 5, 6), (set.MaxWorkspaces, set.MaxSnapshots, set.MaxSnapshotBytes, set.MaxListEntries, set.MaxSkippedEntries));
            Environment.SetEnvironmentVariable("PYRO_MAX_SNAPSHOTS", "-1");
            Assert.Equal("invalid_limit", Assert.Throws<PyroInputException>(() => new PyroOptions()).Code);
        }
        finally
        {
            foreach (var name in names)
            {
                Environment.SetEnvironmentVariable(name, null);
            }
        }
    }
}
