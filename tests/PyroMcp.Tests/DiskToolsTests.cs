using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using PyroMcp.Environments;
using PyroMcp.TestKit;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// The offline disk tools against ext4 images built here (mkfs.ext4 -d, no mount) that hold what a
/// hostile guest can write: names with newlines, control characters, invalid UTF-8 and 255 bytes,
/// names that imitate debugfs output, symlinks to host paths, a 20 GB sparse file, runtime state
/// carrying a marker. Each image is wrapped in a qcow2 overlay in a stopped workspace's directory.
/// </summary>
public sealed class DiskToolsTests : IDisposable
{
    private const string Id = "d15c00000001";
    private const string Marker = "PYRO-SCRUB-MARKER-7f3a9c";
    private const string Keep = "PYRO-KEEP-MARKER-51b2e0";

    private readonly string _state = Directory.CreateTempSubdirectory("pyro-disk-").FullName;

    /// <summary>The hostile names in /workspace, as the raw bytes the guest wrote.</summary>
    private static readonly byte[][] HostileNames =
    [
        "evil\nforged"u8.ToArray(),
        "x\ndebugfs: idump <2>\n0000  ed41 0000"u8.ToArray(),
        "\u0001ctl\u001b[31mred\u0007"u8.ToArray(),
        Encoding.ASCII.GetBytes(new string('n', 255)),
        [(byte)'b', (byte)'a', (byte)'d', 0xff, 0xfe, (byte)'n'],
        "tab\there \r cr"u8.ToArray(),
        "\n"u8.ToArray(),
    ];

    // rm, not Directory.Delete: .NET cannot name a file whose name is not UTF-8.
    public void Dispose() => Process.Start("rm", ["-rf", _state])!.WaitForExit();

    private PyroOptions Options(int maxList = 10_000) => new() { StateDir = _state, RunDir = Path.Combine(_state, "run"), MaxListEntries = maxList };

    /// <summary>Builds the guest tree, the ext4 image and the stopped workspace around it.</summary>
    private async Task<WorkspaceManager> WorkspaceAsync(WorkspaceState state = WorkspaceState.Stopped, int maxList = 10_000, Action<string>? extra = null)
    {
        var root = Path.Combine(_state, "tree");
        Directory.CreateDirectory(root);
        await Sh($"""
            set -e
            cd '{root}'
            mkdir -p workspace/deep/a/b/c/d/e/f var/lib/pyro/services/web run/pyro-secrets run/pyro etc
            printf 'hello disk\n' > workspace/hello.txt
            printf '%s\n' '{Keep}' > workspace/keep.txt
            printf 'deep\n' > workspace/deep/a/b/c/d/e/f/file
            printf 'guest-shadow\n' > etc/shadow
            ln -s /etc/shadow workspace/link
            ln -s ../../.. workspace/up
            ln -s /var/lib/pyro workspace/sneak
            truncate -s 20G workspace/big.sparse
            for i in $(seq 1 200); do printf '%s %s\n' '{Marker}' "$i"; done > var/lib/pyro/services/web/log
            printf '%s\n' '{Marker}' > run/pyro-secrets/TOKEN
            printf '%s\n' '{Marker}' > run/pyro/network
            """);
        foreach (var name in HostileNames)
        {
            var path = Encoding.UTF8.GetBytes(Path.Combine(root, "workspace") + "/").Concat(name).ToArray();
            await Sh("f=\"$(printf \"${1}X\")\"; printf 'hostile\\n' > \"${f%X}\"", [Escape(path)]);
        }

        extra?.Invoke(root);
        var image = Path.Combine(_state, "base.img");
        await Sh($"mkfs.ext4 -q -F -d '{root}' '{image}' 64M");
        var manager = new WorkspaceManager(Options(maxList), new EnvironmentStore(Options(maxList)));
        StoreSeed.Insert(manager.Store, new WorkspaceRecord
        {
            Id = Id, Environment = "debian:12", VcpuCount = 1, MemMib = 512, TtlSeconds = 3600,
            CreatedAt = DateTimeOffset.UtcNow, ExpiresAt = DateTimeOffset.UtcNow.AddHours(1), State = state,
        });
        var directory = PyroMcp.Host.PrivateDirectory.Ensure(manager.Store.WorkspaceDir(Id));
        await Sh($"qemu-img create -q -f qcow2 -b '{image}' -F raw '{Path.Combine(directory, WorkspaceLifecycle.DiskFile)}'");
        return manager;
    }

    private static string Escape(byte[] path) => string.Concat(path.Select(b => $"\\{Convert.ToString(b, 8).PadLeft(3, '0')}"));

    private static async Task<string> Sh(string script, string[]? args = null)
    {
        var start = new ProcessStartInfo("/bin/bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(script);
        start.ArgumentList.Add("sh");
        foreach (var arg in args ?? [])
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"{script}\n{await stderr}");
        return await stdout;
    }

    private static string Shown(byte[] name) => WorkspaceManager.SanitizeName(Encoding.UTF8.GetString(name), 4096);

    [Fact]
    public async Task ListingShowsTheTrueTreeAndNoForgedEntry()
    {
        var manager = await WorkspaceAsync();
        var entries = await manager.ListDiskAsync(Id, "/workspace", recursive: false, CancellationToken.None);

        var expected = new HashSet<string> { "hello.txt", "keep.txt", "deep", "link", "up", "sneak", "big.sparse" };
        expected.UnionWith(HostileNames.Select(Shown));
        var listed = entries.Select(e => e.Path).ToList();
        var forged = listed.Where(p => !expected.Contains(p)).ToList();
        var hostileListed = HostileNames.Count(n => listed.Contains(Shown(n)));
        Figures.Record("disk list hostile names", $"{hostileListed} of {HostileNames.Length} hostile names listed, {forged.Count} forged entries, {listed.Count} entries for {expected.Count} on disk");
        Assert.Empty(forged);
        Assert.Equal(expected.Count, listed.Count);
        Assert.Equal(HostileNames.Length, hostileListed);
        Assert.All(entries, e => Assert.DoesNotContain(e.Path, c => char.IsControl(c)));

        var link = entries.Single(e => e.Path == "link");
        Assert.Equal(EntryKind.Symlink, link.Type);
        Assert.Equal("/etc/shadow", link.LinkTarget);
        Assert.Equal("../../..", entries.Single(e => e.Path == "up").LinkTarget);
        var big = entries.Single(e => e.Path == "big.sparse");
        Assert.Equal(20L << 30, big.Size);
        Assert.Equal(0x1A4, big.Mode);
        Assert.Equal(EntryKind.Directory, entries.Single(e => e.Path == "deep").Type);
        Assert.Equal(new string('n', 255), entries.Single(e => e.Path.Length == 255).Path);

        var deep = await manager.ListDiskAsync(Id, "deep", recursive: true, CancellationToken.None);
        Assert.Equal(["a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e", "a/b/c/d/e/f", "a/b/c/d/e/f/file"], deep.Select(e => e.Path).Order(StringComparer.Ordinal));
        Assert.Empty(Directory.GetDirectories(manager.Store.WorkspaceDir(Id), WorkspaceManager.DiskTempPrefix + "*"));
    }

    [Fact]
    public async Task ListingIsCappedWithTheTotal()
    {
        var manager = await WorkspaceAsync(maxList: 3, extra: root =>
        {
            Directory.CreateDirectory(Path.Combine(root, "many"));
            for (var i = 0; i < 500; i++)
            {
                File.WriteAllText(Path.Combine(root, "many", $"f{i}"), "");
            }
        });
        var entries = await manager.ListDiskAsync(Id, "/many", recursive: false, CancellationToken.None);
        Assert.Equal(3, entries.Count);
        Assert.Equal(500, entries.TotalCount);
        Assert.True(entries.Truncated);
    }

    [Fact]
    public async Task ReadIsCappedAndSymlinksResolveInsideTheImageOnly()
    {
        var manager = await WorkspaceAsync();
        var hello = await manager.ReadDiskAsync(Id, "hello.txt", 0, CancellationToken.None);
        Assert.Equal("hello disk\n", Encoding.UTF8.GetString(hello.Content));
        Assert.False(hello.Truncated);

        var before = DiskUsage(_state);
        var big = await manager.ReadDiskAsync(Id, "big.sparse", 4096, CancellationToken.None);
        Assert.Equal(4096, big.Content.Length);
        Assert.True(big.Truncated);
        Assert.All(big.Content, b => Assert.Equal(0, b));
        // The 20 GB file never landed on the host: the state directory grew by less than a MiB.
        Assert.True(DiskUsage(_state) - before < 1 << 20, $"the state directory grew by {DiskUsage(_state) - before} bytes");

        var shadow = await manager.ReadDiskAsync(Id, "link", 0, CancellationToken.None);
        Assert.Equal("guest-shadow\n", Encoding.UTF8.GetString(shadow.Content));
        Assert.Equal("/etc/shadow", shadow.Path);
        var up = await manager.ReadDiskAsync(Id, "up/etc/shadow", 0, CancellationToken.None);
        Assert.Equal("guest-shadow\n", Encoding.UTF8.GetString(up.Content));

        Assert.Equal("disk_path_is_directory", (await Assert.ThrowsAsync<PyroInputException>(() => manager.ReadDiskAsync(Id, "deep", 0, CancellationToken.None))).Code);
        Assert.Equal("disk_path_not_found", (await Assert.ThrowsAsync<PyroInputException>(() => manager.ReadDiskAsync(Id, "nope", 0, CancellationToken.None))).Code);
    }

    private static long DiskUsage(string path)
        => long.Parse(Sh($"du -sB1 '{path}' | cut -f1").GetAwaiter().GetResult().Trim(), System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task ScrubbedPathsAreHiddenAndRefusedEvenThroughSymlinks()
    {
        var manager = await WorkspaceAsync();
        var tried = new[] { "/var/lib/pyro", "/var/lib/pyro/services/web/log", "/run/pyro-secrets/TOKEN", "/run/pyro/network", "sneak/services/web/log", "sneak" };
        var refused = 0;
        foreach (var path in tried)
        {
            var ex = await Assert.ThrowsAsync<PyroInputException>(() => manager.ReadDiskAsync(Id, path, 0, CancellationToken.None));
            Assert.Equal("disk_path_scrubbed", ex.Code);
            refused++;
        }

        Assert.Equal("disk_path_scrubbed", (await Assert.ThrowsAsync<PyroInputException>(() => manager.ListDiskAsync(Id, "sneak", false, CancellationToken.None))).Code);
        var varLib = await manager.ListDiskAsync(Id, "/var/lib", false, CancellationToken.None);
        var run = await manager.ListDiskAsync(Id, "/run", true, CancellationToken.None);
        var shown = varLib.Count(e => e.Path == "pyro") + run.Count;
        Figures.Record("disk scrubbed paths", $"{tried.Length} reads of runtime-only paths tried, {refused} refused, {shown} scrubbed entries listed");
        Assert.Equal(0, shown);
    }

    [Fact]
    public async Task ExportIsACleanExt4WithoutTheScrubbedBytesAndNeverOverwrites()
    {
        var manager = await WorkspaceAsync();
        var outDir = Directory.CreateDirectory(Path.Combine(_state, "out")).FullName;
        var existing = Path.Combine(outDir, "existing.ext4");
        await File.WriteAllTextAsync(existing, "mine");
        Assert.Equal("output_exists", (await Assert.ThrowsAsync<PyroInputException>(() => manager.ExportDiskAsync(Id, existing, null, CancellationToken.None))).Code);
        Assert.Equal("mine", await File.ReadAllTextAsync(existing));
        Assert.Equal("output_parent_missing", (await Assert.ThrowsAsync<PyroInputException>(() => manager.ExportDiskAsync(Id, Path.Combine(outDir, "no", "x.ext4"), null, CancellationToken.None))).Code);

        // A call killed with -9 left its temp directory and an export temp beside the output: the next call removes both.
        var staleDir = Directory.CreateDirectory(Path.Combine(manager.Store.WorkspaceDir(Id), WorkspaceManager.DiskTempPrefix + "dead")).FullName;
        var staleOut = Path.Combine(outDir, ".pyro-disk-export.dead");
        await File.WriteAllTextAsync(staleOut, "partial");
        await File.WriteAllTextAsync(Path.Combine(staleDir, "pending-output"), staleOut);

        var phases = new List<string>();
        var output = Path.Combine(outDir, "disk.ext4");
        var result = await manager.ExportDiskAsync(Id, output, new SyncProgress<PyroProgress>(p => phases.Add(p.Phase)), CancellationToken.None);
        Assert.Equal(output, result.Output);
        Assert.Equal(["convert", "scrub", "check", "write"], phases);
        Assert.False(Directory.Exists(staleDir));
        Assert.False(File.Exists(staleOut));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(output));
        Assert.Contains("/var/lib/pyro", result.Scrubbed);

        var fsck = await Sh($"e2fsck -fn '{output}' >/dev/null 2>&1; echo $?");
        Assert.Equal("0", fsck.Trim());
        var bytes = await File.ReadAllBytesAsync(output);
        var markers = Count(bytes, Encoding.ASCII.GetBytes(Marker));
        var kept = Count(bytes, Encoding.ASCII.GetBytes(Keep));
        Figures.Record("disk export scrub", $"{markers} scrubbed-marker occurrences in the {bytes.Length}-byte exported image (kept marker found {kept} times), e2fsck -fn exit {fsck.Trim()}");
        Assert.Equal(0, markers);
        Assert.True(kept > 0, "the search would not find a marker that is there");
        Assert.Empty(Directory.GetDirectories(manager.Store.WorkspaceDir(Id), WorkspaceManager.DiskTempPrefix + "*"));
        Assert.Equal(["disk.ext4", "existing.ext4"], Directory.GetFiles(outDir).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        // The exported image reads back with the tools: what was kept is there, what was scrubbed is gone.
        var check = await Sh($"debugfs -R 'cat /workspace/hello.txt' '{output}' 2>/dev/null; debugfs -R 'ls -l /var/lib' '{output}' 2>/dev/null");
        Assert.Contains("hello disk", check);
        Assert.DoesNotContain(" pyro", check);
    }

    private static int Count(byte[] haystack, byte[] needle)
    {
        var count = 0;
        var span = haystack.AsSpan();
        int at;
        while ((at = span.IndexOf(needle)) >= 0)
        {
            count++;
            span = span[(at + needle.Length)..];
        }

        return count;
    }

    [Fact]
    public async Task AKilledExportLeavesNoOutputAndItsTempGoesWithTheNextCall()
    {
        var manager = await WorkspaceAsync();
        var env = new Dictionary<string, string> { ["PYRO_STATE_DIR"] = _state, ["PYRO_RUN_DIR"] = Path.Combine(_state, "run"), ["PYRO_FAULT"] = "disk-export.before-write" };
        var output = Path.Combine(_state, "killed.ext4");
        var killed = await PyroCli.RunAsync(["workspace", "disk", "export", Id, "--output", output], env);
        Assert.Equal(137, killed.ExitCode);
        Assert.Contains("phase=write", killed.Stderr);
        Assert.False(File.Exists(output));
        // The kill left the scrubbed image in the workspace's private temp directory...
        Assert.Single(Directory.GetDirectories(manager.Store.WorkspaceDir(Id), WorkspaceManager.DiskTempPrefix + "*"));

        // ...and the next call, holding the lock, removes it.
        await manager.ListDiskAsync(Id, "/workspace", false, CancellationToken.None);
        Assert.Empty(Directory.GetDirectories(manager.Store.WorkspaceDir(Id), WorkspaceManager.DiskTempPrefix + "*"));
        Assert.False(File.Exists(output));
    }

    [Fact]
    public async Task TwoExportsAtOnceBothEndWell()
    {
        var manager = await WorkspaceAsync();
        var outDir = Directory.CreateDirectory(Path.Combine(_state, "out")).FullName;
        var results = await Task.WhenAll(
            manager.ExportDiskAsync(Id, Path.Combine(outDir, "one.ext4"), null, CancellationToken.None),
            manager.ExportDiskAsync(Id, Path.Combine(outDir, "two.ext4"), null, CancellationToken.None));
        Assert.All(results, r => Assert.True(new FileInfo(r.Output).Length > 0));
        foreach (var r in results)
        {
            Assert.Equal("0", (await Sh($"e2fsck -fn '{r.Output}' >/dev/null 2>&1; echo $?")).Trim());
        }
    }

    [Fact]
    public async Task ANonStoppedWorkspaceAndBadInputGetClearCodes()
    {
        var manager = await WorkspaceAsync(WorkspaceState.Crashed);
        var running = await Assert.ThrowsAsync<WorkspaceStateException>(() => manager.ListDiskAsync(Id, "/workspace", false, CancellationToken.None));
        Assert.Equal("workspace_not_stopped", running.Code);
        Assert.Contains($"pyro workspace stop {Id}", running.Message);
        Assert.Equal("workspace_not_stopped", (await Assert.ThrowsAsync<WorkspaceStateException>(() => manager.ExportDiskAsync(Id, Path.Combine(_state, "x.ext4"), null, CancellationToken.None))).Code);
        Assert.False(File.Exists(Path.Combine(_state, "x.ext4")));

        Assert.Equal("workspace_not_found", (await Assert.ThrowsAsync<PyroInputException>(() => manager.ReadDiskAsync("nope", "a", 0, CancellationToken.None))).Code);
        Assert.Equal("disk_path_invalid", (await Assert.ThrowsAsync<PyroInputException>(() => manager.ReadDiskAsync(Id, "../etc/passwd", 0, CancellationToken.None))).Code);
        Assert.Equal("disk_path_invalid", (await Assert.ThrowsAsync<PyroInputException>(() => manager.ListDiskAsync(Id, "/workspace/../..", false, CancellationToken.None))).Code);
        Assert.Equal("invalid_max_bytes", (await Assert.ThrowsAsync<PyroInputException>(() => manager.ReadDiskAsync(Id, "a", -1, CancellationToken.None))).Code);
        Assert.Equal("invalid_max_bytes", (await Assert.ThrowsAsync<PyroInputException>(() => manager.ReadDiskAsync(Id, "a", WorkspaceManager.MaxDiskReadBytes + 1, CancellationToken.None))).Code);
    }

    [Fact]
    public async Task TheCliPrintsSanitizedLinesAndTheExportLine()
    {
        var manager = await WorkspaceAsync();
        _ = manager;
        var env = new Dictionary<string, string> { ["PYRO_STATE_DIR"] = _state, ["PYRO_RUN_DIR"] = Path.Combine(_state, "run") };
        var list = await PyroCli.RunAsync(["workspace", "disk", "list", Id], env);
        Assert.True(list.ExitCode == 0, list.ToString());
        var lines = list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(7 + HostileNames.Length, lines.Length);
        Assert.DoesNotContain(list.Stdout, c => char.IsControl(c) && c != '\n');

        var read = await PyroCli.RunAsync(["workspace", "disk", "read", Id, "hello.txt", "--content-only"], env);
        Assert.Equal("hello disk\n", read.Stdout);
        var output = Path.Combine(_state, "cli.ext4");
        var export = await PyroCli.RunAsync(["workspace", "disk", "export", Id, "--output", output], env);
        Assert.True(export.ExitCode == 0, export.ToString());
        Assert.Matches($@"^\[workspace-disk-export\] workspace_id={Id} output={Regex.Escape(output)} bytes=\d+\n$", export.Stdout);
        Assert.Contains("phase=convert", export.Stderr);
        Assert.Contains("phase=check", export.Stderr);
        var again = await PyroCli.RunAsync(["workspace", "disk", "export", Id, "--output", output], env);
        Assert.NotEqual(0, again.ExitCode);
        Assert.Contains("output_exists", again.Stderr);
    }
}
