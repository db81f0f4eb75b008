using System.Formats.Tar;
using System.Security.Cryptography;
using PyroMcp.Protocol.Files;

namespace PyroMcp.Tests;

/// <summary>
/// The guard must find every header where TarReader does, and must not refuse what real tar
/// programs write: long names, long link targets, pax records, sparse files, hard links.
/// </summary>
public sealed class TarGuardTests : IDisposable
{
    private readonly string _base = Directory.CreateTempSubdirectory("pyro-guard-").FullName;

    [Theory]
    [InlineData("gnu")]
    [InlineData("pax")]
    [InlineData("ustar")]
    public async Task ArchivesFromGnuTarReadTheSameThroughTheGuard(string format)
    {
        var tree = Directory.CreateDirectory(Path.Combine(_base, "tree")).FullName;
        var deep = Path.Combine(tree, string.Join('/', Enumerable.Repeat("directory-with-a-long-name", 6)));
        Directory.CreateDirectory(deep);
        File.WriteAllText(Path.Combine(deep, "file-" + new string('f', 120)), "deep content");
        File.CreateSymbolicLink(Path.Combine(tree, "long-link"), Path.Combine(deep, "file-" + new string('f', 120)));
        File.WriteAllText(Path.Combine(tree, "a"), "shared");
        Run("ln", Path.Combine(tree, "a"), Path.Combine(tree, "b"));
        using (var sparse = File.Create(Path.Combine(tree, "sparse")))
        {
            foreach (var offset in new long[] { 0, 1 << 20, 3 << 20, 5 << 20, 7 << 20, 9 << 20 })
            {
                sparse.Position = offset;
                sparse.Write("data"u8);
            }
        }

        var archive = Path.Combine(_base, $"{format}.tar");
        var names = format == "ustar" ? new[] { "a", "b", "sparse" } : [".", ];
        // Only pax stores sparse files in a form TarReader reads (GNU 'S' entries it refuses outright).
        string[] sparseFlag = format == "pax" ? ["--sparse"] : [];
        Run("tar", [.. sparseFlag, $"--format={format}", "-cf", archive, "-C", tree, .. names]);
        var bytes = await File.ReadAllBytesAsync(archive);

        var plain = await ReadAllAsync(new MemoryStream(bytes));
        var guard = new TarGuardStream(new MemoryStream(bytes), long.MaxValue);
        var guarded = await ReadAllAsync(guard);

        Assert.Equal(plain, guarded);
        Assert.True(plain.Count >= 3);
        Assert.InRange(guard.BytesRead, 1, bytes.Length);
    }

    [Fact]
    public async Task ALimitJustBelowTheArchiveRefusesItAndOneAtItsSizeDoesNot()
    {
        var bytes = new RawTar().File("a", new string('a', 3000)).File("b", "b").ToArray();

        var fits = await ReadAllAsync(new TarGuardStream(new MemoryStream(bytes), bytes.Length));
        var ex = await Assert.ThrowsAsync<TarLimitException>(() => ReadAllAsync(new TarGuardStream(new MemoryStream(bytes), bytes.Length - 1024 - 512)));

        Assert.Equal(2, fits.Count);
        Assert.Contains($"more than {bytes.Length - 1024 - 512} bytes", ex.Message);
    }

    [Theory]
    [InlineData("size", "12x")]
    [InlineData("size", "")]
    [InlineData("size", "99999999999999999999")]
    public async Task APaxSizeRecordTheGuardCannotReadExactlyIsRefused(string key, string value)
    {
        var bytes = new RawTar().Pax((key, value)).File("f", "x").ToArray();

        await Assert.ThrowsAsync<InvalidDataException>(() => ReadAllAsync(new TarGuardStream(new MemoryStream(bytes), long.MaxValue)));
    }

    [Fact]
    public async Task MetadataInAnOrderTarReaderPairsDifferentlyIsRefused()
    {
        // 'L' then 'x': TarReader would hand the 'x' back as the entry and ignore its size record.
        var bytes = new RawTar().GnuLong('L', "name").Pax(("size", "0")).File("f", "x").ToArray();

        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => ReadAllAsync(new TarGuardStream(new MemoryStream(bytes), long.MaxValue)));

        Assert.Contains("does not read that sequence", ex.Message);
    }

    private static async Task<List<string>> ReadAllAsync(Stream stream)
    {
        var entries = new List<string>();
        await using var reader = new TarReader(stream);
        while (await reader.GetNextEntryAsync() is { } entry)
        {
            var hash = "";
            if (entry.DataStream is { } data)
            {
                using var copy = new MemoryStream();
                await data.CopyToAsync(copy);
                hash = Convert.ToHexString(SHA256.HashData(copy.ToArray()))[..16];
            }

            entries.Add($"{entry.EntryType} {entry.Name} -> {entry.LinkName} {entry.Length} {hash}");
        }

        return entries;
    }

    private static void Run(string program, params string[] args) => Processes.Check(program, args);

    public void Dispose() => Directory.Delete(_base, recursive: true);
}
