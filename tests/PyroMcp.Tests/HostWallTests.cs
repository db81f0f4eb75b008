using PyroMcp.Trees;
using System.Formats.Tar;
using PyroMcp.Host;
using PyroMcp.Vmm;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// The host's own walls: directories pyro keeps its files in must be this user's alone, the state
/// database is 0600, and a seed directory never sends what lies outside it. These tests run as
/// root in CI and plant what another local user could (chown to 65534).
/// </summary>
public sealed class HostWallTests : IDisposable
{
    private const int Nobody = 65534;
    private readonly string _base = Directory.CreateTempSubdirectory("pyro-walls-").FullName;

    [Fact]
    public void ADirectoryOwnedByAnotherUserIsRefusedWithItsPath()
    {
        var planted = Directory.CreateDirectory(Path.Combine(_base, "planted")).FullName;
        Chown(planted, Nobody);

        var ex = Assert.Throws<HostRequirementException>(() => PrivateDirectory.Ensure(planted));

        Assert.Equal("unsafe_directory", ex.Code);
        Assert.Contains(planted, ex.Message);
        Assert.Contains($"owned by uid {Nobody}", ex.Message);
        Assert.Contains("To fix:", ex.Message);
    }

    [Fact]
    public void AGroupWritableDirectoryIsRefused()
    {
        var shared = Directory.CreateDirectory(Path.Combine(_base, "shared")).FullName;
        File.SetUnixFileMode(shared, (UnixFileMode)0x1F8); // 0770

        var ex = Assert.Throws<HostRequirementException>(() => PrivateDirectory.Ensure(shared));

        Assert.Equal("unsafe_directory", ex.Code);
        Assert.Contains(shared, ex.Message);
        Assert.Contains("writable by group or others (mode 770)", ex.Message);
    }

    [Fact]
    public void ASymlinkToADirectoryIsRefusedAndNothingIsWrittenThroughIt()
    {
        var target = Directory.CreateDirectory(Path.Combine(_base, "target")).FullName;
        var link = Path.Combine(_base, "state");
        File.CreateSymbolicLink(link, target);

        var ex = Assert.Throws<HostRequirementException>(() => new WorkspaceStore(link));

        Assert.Equal("unsafe_directory", ex.Code);
        Assert.Contains(link, ex.Message);
        Assert.Contains("symbolic link", ex.Message);
        Assert.Empty(Directory.GetFileSystemEntries(target));
    }

    [Fact]
    public void AStateDirectoryPlantedByAnotherUserGetsNoDatabase()
    {
        var planted = Directory.CreateDirectory(Path.Combine(_base, "state")).FullName;
        Chown(planted, Nobody);

        var ex = Assert.Throws<HostRequirementException>(() => new WorkspaceStore(planted));

        Assert.Equal("unsafe_directory", ex.Code);
        Assert.Empty(Directory.GetFileSystemEntries(planted));
    }

    [Fact]
    public void ARunDirectoryPlantedByAnotherUserIsNeitherReapedNorUsed()
    {
        // qemu-img and the agent socket go under RunDir/vms/ID: another user's directory there
        // could receive a VM's commands or redirect a file pyro writes.
        var run = Directory.CreateDirectory(Path.Combine(_base, "run")).FullName;
        var stale = Directory.CreateDirectory(Path.Combine(run, "vms", "stale-vm")).FullName;
        File.WriteAllText(Path.Combine(stale, "bait"), "keep");
        Chown(run, Nobody);
        var options = new PyroOptions { RunDir = run };

        var ex = Assert.Throws<HostRequirementException>(() => QemuVm.ReapStale(options));

        Assert.Equal("unsafe_directory", ex.Code);
        Assert.Contains(run, ex.Message);
        Assert.Equal("keep", File.ReadAllText(Path.Combine(stale, "bait")));
    }

    [Fact]
    public void PrivateDirectoriesAreCreatedOwnerOnly()
    {
        var created = PrivateDirectory.Ensure(Path.Combine(_base, "new", "run"));

        Assert.Equal((UnixFileMode)0x1C0, File.GetUnixFileMode(created) & (UnixFileMode)0x1FF);
        PrivateDirectory.Ensure(created);
    }

    [Fact]
    public void TheStateDatabaseAndItsWalAndShmAre0600()
    {
        var state = Path.Combine(_base, "fresh-state");

        _ = new WorkspaceStore(state);

        foreach (var file in new[] { "pyro.db", "pyro.db-wal", "pyro.db-shm" })
        {
            var path = Path.Combine(state, file);
            Assert.True(File.Exists(path), $"{file} should exist while the store's pooled connection is open");
            Assert.Equal((UnixFileMode)0x180, File.GetUnixFileMode(path));
        }

        Assert.Equal((UnixFileMode)0x1C0, File.GetUnixFileMode(state) & (UnixFileMode)0x1FF);
    }

    [Fact]
    public void AnOlderWorldReadableDatabaseIsTightenedOnOpen()
    {
        var state = Directory.CreateDirectory(Path.Combine(_base, "old-state")).FullName;
        _ = new WorkspaceStore(state);
        File.SetUnixFileMode(Path.Combine(state, "pyro.db"), (UnixFileMode)0x1B6); // 0666

        _ = new WorkspaceStore(state);

        Assert.Equal((UnixFileMode)0x180, File.GetUnixFileMode(Path.Combine(state, "pyro.db")));
    }

    [Fact]
    public async Task ASeedNeverSendsWhatLiesOutsideIt()
    {
        var home = Directory.CreateDirectory(Path.Combine(_base, "home")).FullName;
        var ssh = Directory.CreateDirectory(Path.Combine(home, ".ssh")).FullName;
        File.WriteAllText(Path.Combine(ssh, "id_ed25519"), "PRIVATE KEY");
        var seed = Directory.CreateDirectory(Path.Combine(_base, "seed")).FullName;
        File.WriteAllText(Path.Combine(seed, "main.c"), "int main(void) { return 0; }\n");
        File.CreateSymbolicLink(Path.Combine(seed, "ssh"), ssh);
        File.CreateSymbolicLink(Path.Combine(seed, "etc"), "/etc");
        File.CreateSymbolicLink(Path.Combine(seed, "key"), Path.Combine(ssh, "id_ed25519"));
        Run("ln", Path.Combine(ssh, "id_ed25519"), Path.Combine(seed, "hardlinked-key"));
        File.WriteAllText(Path.Combine(seed, "a"), "shared inside");
        Run("ln", Path.Combine(seed, "a"), Path.Combine(seed, "b"));
        Run("mkfifo", Path.Combine(seed, "pipe"));
        Run("mknod", Path.Combine(seed, "null"), "c", "1", "3");

        var tar = new MemoryStream();
        await HostTarBuilder.WriteDirectoryAsync(seed, tar, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(60));

        var entries = new List<(string Name, TarEntryType Type, string Link, string Content)>();
        tar.Position = 0;
        using (var reader = new TarReader(tar))
        {
            while (reader.GetNextEntry() is { } entry)
            {
                entries.Add((entry.Name, entry.EntryType, entry.LinkName, entry.DataStream is null ? "" : new StreamReader(entry.DataStream).ReadToEnd()));
            }
        }

        Assert.Equal(["a", "b", "etc", "key", "main.c", "ssh"], entries.Select(e => e.Name));
        Assert.DoesNotContain(entries, e => e.Content.Contains("PRIVATE KEY", StringComparison.Ordinal));
        Assert.Equal((TarEntryType.SymbolicLink, ssh), (entries.Single(e => e.Name == "ssh").Type, entries.Single(e => e.Name == "ssh").Link));
        Assert.Equal((TarEntryType.SymbolicLink, "/etc"), (entries.Single(e => e.Name == "etc").Type, entries.Single(e => e.Name == "etc").Link));
        Assert.Equal(TarEntryType.SymbolicLink, entries.Single(e => e.Name == "key").Type);
        Assert.Equal((TarEntryType.RegularFile, "shared inside"), (entries.Single(e => e.Name == "a").Type, entries.Single(e => e.Name == "a").Content));
        Assert.Equal((TarEntryType.HardLink, "a"), (entries.Single(e => e.Name == "b").Type, entries.Single(e => e.Name == "b").Link));
    }

    private static void Chown(string path, int uid) => Run("chown", $"{uid}:{uid}", path);

    private static void Run(string program, params string[] args) => Processes.Check(program, args, "these tests plant files as root");

    public void Dispose() => Directory.Delete(_base, recursive: true);
}
