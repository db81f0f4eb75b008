using PyroMcp.Trees;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>Runs alone: allocation is measured for the whole process, so no other test may run meanwhile.</summary>
[CollectionDefinition("allocation", DisableParallelization = true)]
public sealed class AllocationCollection;

/// <summary>
/// The hostile tar corpus through both host readers of guest tar: the export extractor and the
/// diff's tree reader. Nothing may appear, change or be linked to outside the destinations, no
/// exported mode may be group- or world-writable or setuid, and no archive that only claims a
/// huge header may make the process allocate more than a few MiB.
/// </summary>
[Collection("allocation")]
public sealed class HostileTarCorpusTests : IDisposable
{
    private const long MaxBytes = 64L * 1024 * 1024;
    private const long MaxEntries = 2000;
    private const long HugeHeaderAllocationLimit = 8L * 1024 * 1024;

    private readonly string _base = Directory.CreateTempSubdirectory("pyro-corpus-").FullName;
    private readonly string _elsewhere = Directory.CreateTempSubdirectory("pyro-corpus-abs-").FullName;

    private string Outside => Path.Combine(_base, "outside");

    [Fact]
    public async Task TheHostileCorpusWritesNothingOutsideAndAllocatesLittle()
    {
        PlantSentinels(Outside);
        var corpus = HostileTarCorpus.Build(Outside, _elsewhere).Append(ModesArchive()).ToList();
        var before = TreeSnapshot.Take(Outside, _elsewhere);

        var entries = 0;
        var refused = new List<string>();
        var hugeAllocations = new List<(string Name, long Bytes)>();
        long largest = 0;
        for (var i = 0; i < corpus.Count; i++)
        {
            var archive = corpus[i];
            entries += archive.Entries;
            var allocated = GC.GetTotalAllocatedBytes(precise: true);
            try
            {
                await SafeTarExtractor.ExtractAsync(new MemoryStream(archive.Bytes), Path.Combine(_base, $"dest-{i}"), MaxBytes, MaxEntries, CancellationToken.None);
            }
            catch (InvalidDataException)
            {
                refused.Add(archive.Name);
            }

            var used = GC.GetTotalAllocatedBytes(precise: true) - allocated;
            largest = Math.Max(largest, used);
            if (archive.HugeHeader)
            {
                hugeAllocations.Add((archive.Name, used));
            }
        }

        var after = TreeSnapshot.Take(Outside, _elsewhere);
        var escaped = TreeSnapshot.Differences(before, after);
        escaped.AddRange(Directory.GetFileSystemEntries(_base).Where(p => p != Outside && !Path.GetFileName(p).StartsWith("dest-", StringComparison.Ordinal)));
        var badModes = Directory.EnumerateFileSystemEntries(_base, "dest-*", SearchOption.TopDirectoryOnly)
            .SelectMany(d => Directory.EnumerateFileSystemEntries(d, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }).Append(d))
            .Where(p => new FileInfo(p).LinkTarget is null && ((int)File.GetUnixFileMode(p) & 0xE12) != 0)
            .ToList();
        var linksOut = Directory.EnumerateFileSystemEntries(_base, "dest-*", SearchOption.TopDirectoryOnly)
            .SelectMany(d => Directory.EnumerateFileSystemEntries(d, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
                .Where(p => new FileInfo(p).LinkTarget is { } target && !LexicallyInside(d, Path.GetDirectoryName(p)!, target)))
            .ToList();
        var hugeMax = hugeAllocations.Max(h => h.Bytes);
        Figures.Record("hostile tar corpus (export, host)",
            $"{entries} entries tried in {corpus.Count} archives ({refused.Count} refused whole), {escaped.Count} written outside, " +
            $"{badModes.Count} group/world-writable or setuid, huge-header archives allocated at most {hugeMax / 1048576.0:F1} MiB, " +
            $"peak memory {Figures.PeakRssMib():F0} MiB");

        Assert.Empty(escaped);
        Assert.Empty(badModes);
        Assert.Empty(linksOut);
        Assert.All(hugeAllocations, h => Assert.True(h.Bytes < HugeHeaderAllocationLimit, $"{h.Name} made the extractor allocate {h.Bytes} bytes"));
        Assert.All(corpus.Where(a => a.HugeHeader), a => Assert.Contains(a.Name, refused));
        Assert.Contains("bomb of 10000 tiny entries", refused);
    }

    [Fact]
    public async Task TheHostileCorpusThroughTheDiffReaderAllocatesLittleAndFailsClearly()
    {
        var corpus = HostileTarCorpus.Build(Outside, _elsewhere);
        var entries = 0;
        var hugeAllocations = new List<(string Name, long Bytes, string? Code)>();
        foreach (var archive in corpus)
        {
            entries += archive.Entries;
            var allocated = GC.GetTotalAllocatedBytes(precise: true);
            string? code = null;
            try
            {
                await TreeReader.ReadAsync(new MemoryStream(archive.Bytes), CancellationToken.None);
            }
            catch (GuestOperationException ex)
            {
                code = ex.Code;
            }

            var used = GC.GetTotalAllocatedBytes(precise: true) - allocated;
            if (archive.HugeHeader)
            {
                hugeAllocations.Add((archive.Name, used, code));
            }
        }

        var hugeMax = hugeAllocations.Max(h => h.Bytes);
        Figures.Record("hostile tar corpus (diff, host)",
            $"{entries} entries tried in {corpus.Count} archives, huge-header archives allocated at most {hugeMax / 1048576.0:F1} MiB, " +
            $"{hugeAllocations.Count(h => h.Code is "diff_too_large" or "bad_archive")}/{hugeAllocations.Count} refused with a pyro error");

        Assert.All(hugeAllocations, h => Assert.True(h.Bytes < HugeHeaderAllocationLimit, $"{h.Name} made the diff reader allocate {h.Bytes} bytes"));
        Assert.All(hugeAllocations, h => Assert.True(h.Code is "diff_too_large" or "bad_archive", $"{h.Name}: {h.Code ?? "no error"}"));
    }

    [Fact]
    public async Task AHugeHeaderIsRefusedWithTheLimitInTheMessage()
    {
        var archive = new RawTar().HugeMetadata('x', 1L << 30).ToArray(end: false);

        var ex = await Assert.ThrowsAsync<InvalidDataException>(()
            => SafeTarExtractor.ExtractAsync(new MemoryStream(archive), Path.Combine(_base, "dest"), MaxBytes, MaxEntries, CancellationToken.None));

        Assert.Contains("pax extended header of 1073741824 bytes", ex.Message);
        Assert.Contains("at most 65536", ex.Message);
    }

    [Fact]
    public async Task HeadersAndPaddingCountAgainstTheByteLimit()
    {
        // 3000 empty files: no entry data at all, 1.5 MB of headers.
        var tar = new RawTar();
        for (var i = 0; i < 3000; i++)
        {
            tar.File($"f{i}", "");
        }

        var ex = await Assert.ThrowsAsync<InvalidDataException>(()
            => SafeTarExtractor.ExtractAsync(new MemoryStream(tar.ToArray()), Path.Combine(_base, "dest"), 1024 * 1024, long.MaxValue, CancellationToken.None));

        Assert.Contains("more than 1048576 bytes", ex.Message);
        // 1 MiB holds 2048 headers and the end-of-archive blocks do not fit after them.
        Assert.True(Directory.GetFileSystemEntries(Path.Combine(_base, "dest")).Length <= 2048);
    }

    private static HostileArchive ModesArchive()
    {
        var tar = new RawTar()
            .File("world-writable", "x", mode: 0x1FF) // 0777
            .File("setuid", "x", mode: 0x9FF) // 04777
            .File("setgid-group-writable", "x", mode: 0x4B4) // 02264
            .Directory("sticky-world/", mode: 0x3FF) // 01777
            .File("sticky-world/inner", "x", mode: 0x1B6) // 0666
            .File("implicit/parent/file", "x");
        return new HostileArchive("modes", tar.ToArray(), tar.Entries);
    }

    /// <summary>Where a link points, resolved by name only (the extractor never makes links whose later parts are links out).</summary>
    private static bool LexicallyInside(string root, string linkDirectory, string target)
    {
        var resolved = Path.GetFullPath(Path.Combine(linkDirectory, target));
        return resolved == root || resolved.StartsWith(root + "/", StringComparison.Ordinal);
    }

    internal static void PlantSentinels(string outside)
    {
        Directory.CreateDirectory(Path.Combine(outside, "sub"));
        Directory.CreateDirectory(Path.Combine(outside, "dirtarget"));
        File.WriteAllText(Path.Combine(outside, "sentinel"), "host file");
        File.WriteAllText(Path.Combine(outside, "sub", "secret"), "host secret");
    }

    public void Dispose()
    {
        foreach (var directory in new[] { _base, _elsewhere })
        {
            foreach (var sub in Directory.GetDirectories(directory, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint }))
            {
                File.SetUnixFileMode(sub, (UnixFileMode)0x1ED);
            }

            Directory.Delete(directory, recursive: true);
        }
    }
}
