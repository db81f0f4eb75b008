using PyroMcp.Trees;
using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// Host-side tar handling. The extractor is fed archives a hostile guest could send; each test
/// checks that nothing appeared outside the destination: <c>outside</c> (its sibling) and a
/// separate temp directory (the target of absolute names) stay empty.
/// </summary>
public sealed class SafeTarTests : IDisposable
{
    private const long Unlimited = long.MaxValue;
    private readonly string _base = Directory.CreateTempSubdirectory("pyro-safetar-").FullName;
    private readonly string _elsewhere = Directory.CreateTempSubdirectory("pyro-safetar-abs-").FullName;

    public SafeTarTests()
    {
        Directory.CreateDirectory(Outside);
    }

    private string Destination => Path.Combine(_base, "dest");

    private string Outside => Path.Combine(_base, "outside");

    [Fact]
    public async Task TraversalAndAbsoluteNamesAreRefused()
    {
        var absolute = Path.Combine(_elsewhere, "evil");
        var archive = Tar(
            File("../evil", "up one"),
            File("../outside/evil", "into the sibling"),
            File("a/../../evil", "hidden mid-path"),
            File(absolute, "absolute"),
            File("./fine.txt", "legitimate"));

        var summary = await ExtractAsync(archive);

        Assert.Equal(
            [("../evil", "path_traversal"), ("../outside/evil", "path_traversal"), ("a/../../evil", "path_traversal"), (absolute, "absolute_path")],
            summary.Skipped.Select(s => (s.Name, s.Reason)));
        Assert.Equal(1, summary.Files);
        Assert.Equal("legitimate", System.IO.File.ReadAllText(Path.Combine(Destination, "fine.txt")));
        AssertNothingEscaped();
        Assert.False(System.IO.File.Exists(absolute));
    }

    [Fact]
    public async Task ALinkOutThenAFileThroughItWritesNothingOutside()
    {
        var archive = Tar(
            Link(TarEntryType.SymbolicLink, "abs", Outside),
            File("abs/evil", "through an absolute link"),
            Link(TarEntryType.SymbolicLink, "rel", "../outside"),
            File("rel/evil", "through a relative link"),
            Link(TarEntryType.SymbolicLink, "deep/er/up", "../../.."),
            File("deep/er/up/outside/evil", "through a link climbing out"));

        var summary = await ExtractAsync(archive);

        Assert.Equal("symlink_outside", Reason(summary, "abs"));
        Assert.Equal("symlink_outside", Reason(summary, "rel"));
        Assert.Equal("symlink_outside", Reason(summary, "deep/er/up"));
        Assert.Equal(0, summary.Symlinks);
        // The links were never made, so those names became plain directories inside the destination.
        Assert.Equal("through a relative link", System.IO.File.ReadAllText(Path.Combine(Destination, "rel", "evil")));
        Assert.Null(new DirectoryInfo(Path.Combine(Destination, "rel")).LinkTarget);
        AssertNothingEscaped();
    }

    [Fact]
    public async Task NothingIsWrittenThroughALinkEvenOneThatStaysInside()
    {
        var archive = Tar(
            new PaxTarEntry(TarEntryType.Directory, "real/"),
            Link(TarEntryType.SymbolicLink, "alias", "real"),
            File("alias/file", "through an inside link"));

        var summary = await ExtractAsync(archive);

        Assert.Equal(1, summary.Symlinks);
        Assert.Equal("real", new FileInfo(Path.Combine(Destination, "alias")).LinkTarget);
        Assert.Equal("symlink_in_path", Reason(summary, "alias/file"));
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(Destination, "real")));
    }

    [Fact]
    public async Task AChainOfLinksThatEachLookInsideCannotClimbOut()
    {
        // x resolves to the destination itself; y = x/.. ends inside lexically but really at its parent.
        var archive = Tar(
            Link(TarEntryType.SymbolicLink, "a/b/x", "../.."),
            Link(TarEntryType.SymbolicLink, "a/b/y", "x/.."),
            Link(TarEntryType.SymbolicLink, "a/b/ok", "../../a/b/x"));

        var summary = await ExtractAsync(archive);

        Assert.Equal("symlink_outside", Reason(summary, "a/b/y"));
        Assert.Equal(2, summary.Symlinks);
        Assert.Equal("../..", new FileInfo(Path.Combine(Destination, "a/b/x")).LinkTarget);
        Assert.False(Path.Exists(Path.Combine(Destination, "a/b/y")));
        AssertNothingEscaped();
    }

    [Fact]
    public async Task HardLinksDevicesAndFifosAreNeverMade()
    {
        System.IO.File.WriteAllText(Path.Combine(Outside, "target"), "host file");
        var archive = Tar(
            File("inside", "x"),
            Link(TarEntryType.HardLink, "hard-in", "inside"),
            Link(TarEntryType.HardLink, "hard-out", Path.Combine(Outside, "target")),
            Link(TarEntryType.HardLink, "hard-up", "../outside/target"),
            new PaxTarEntry(TarEntryType.CharacterDevice, "mem") { DeviceMajor = 1, DeviceMinor = 1 },
            new PaxTarEntry(TarEntryType.BlockDevice, "disk") { DeviceMajor = 8, DeviceMinor = 0 },
            new PaxTarEntry(TarEntryType.Fifo, "pipe"));

        var summary = await ExtractAsync(archive);

        Assert.Equal("hardlink", Reason(summary, "hard-in"));
        Assert.Equal("hardlink", Reason(summary, "hard-out"));
        Assert.Equal("hardlink", Reason(summary, "hard-up"));
        Assert.Equal("special_file", Reason(summary, "mem"));
        Assert.Equal("special_file", Reason(summary, "disk"));
        Assert.Equal("special_file", Reason(summary, "pipe"));
        Assert.Equal(["inside"], Directory.GetFileSystemEntries(Destination).Select(Path.GetFileName));
        Assert.Equal(["target"], Directory.GetFileSystemEntries(Outside).Select(Path.GetFileName));
        Assert.Equal("host file", System.IO.File.ReadAllText(Path.Combine(Outside, "target")));
    }

    [Fact]
    public async Task AnExistingDestinationIsNeverWrittenInto()
    {
        Directory.CreateDirectory(Destination);
        System.IO.File.WriteAllText(Path.Combine(Destination, "mine"), "keep");
        var link = Path.Combine(_base, "link-dest");
        System.IO.File.CreateSymbolicLink(link, Outside);

        var exists = await Assert.ThrowsAsync<IOException>(() => ExtractAsync(Tar(File("mine", "overwritten")), Destination));
        var viaLink = await Assert.ThrowsAsync<IOException>(() => ExtractAsync(Tar(File("evil", "x")), link));

        Assert.Contains("already exists", exists.Message);
        Assert.Contains("already exists", viaLink.Message);
        Assert.Equal("keep", System.IO.File.ReadAllText(Path.Combine(Destination, "mine")));
        Assert.Empty(Directory.GetFileSystemEntries(Outside));
    }

    [Fact]
    public async Task ADuplicateNameIsSkippedNotOverwritten()
    {
        var archive = Tar(File("f", "first"), File("f", "second"), Link(TarEntryType.SymbolicLink, "f", "elsewhere"), new PaxTarEntry(TarEntryType.Directory, "f/"));

        var summary = await ExtractAsync(archive);

        Assert.Equal("first", System.IO.File.ReadAllText(Path.Combine(Destination, "f")));
        Assert.Equal(3, summary.Skipped.Count(s => s.Reason == "duplicate_entry"));
    }

    [Fact]
    public async Task ExportedModesLoseSetuidStickyAndGroupOrWorldWrite()
    {
        var archive = Tar(
            File("tool", "x", (UnixFileMode)0x9ED), // 04755
            File("open", "x", (UnixFileMode)0x1FF), // 0777
            new PaxTarEntry(TarEntryType.Directory, "shared/") { Mode = (UnixFileMode)0x3FF }, // 01777
            new PaxTarEntry(TarEntryType.Directory, "sealed/") { Mode = UnixFileMode.None },
            File("implicit/parent/file", "x"));

        await ExtractAsync(archive);

        var umask = Umask();
        Assert.Equal((UnixFileMode)(0x1ED & ~umask), System.IO.File.GetUnixFileMode(Path.Combine(Destination, "tool")));
        Assert.Equal((UnixFileMode)(0x1ED & ~umask), System.IO.File.GetUnixFileMode(Path.Combine(Destination, "open")));
        Assert.Equal((UnixFileMode)(0x1ED & ~umask), System.IO.File.GetUnixFileMode(Path.Combine(Destination, "shared")));
        // The owner can always get back in to clean up.
        Assert.Equal((UnixFileMode)0x1C0, System.IO.File.GetUnixFileMode(Path.Combine(Destination, "sealed")));
        // Directories made on the way, and the destination itself, are never writable by others either.
        Assert.Equal((UnixFileMode)(0x1ED & ~umask), System.IO.File.GetUnixFileMode(Path.Combine(Destination, "implicit")));
        Assert.Equal((UnixFileMode)(0x1ED & ~umask), System.IO.File.GetUnixFileMode(Destination));
    }

    [Fact]
    public async Task ExportedModesDoNotLeanOnTheUmask()
    {
        // The rule masks group and world write itself: under a umask of 000 (some service
        // managers set it) the result is the same, never 0777.
        var archive = Tar(File("open", "x", (UnixFileMode)0x1FF), new PaxTarEntry(TarEntryType.Directory, "d/") { Mode = (UnixFileMode)0x1FF });

        await ExtractAsync(archive);

        Assert.Equal(0, (int)System.IO.File.GetUnixFileMode(Path.Combine(Destination, "open")) & 0x12);
        Assert.Equal(0, (int)System.IO.File.GetUnixFileMode(Path.Combine(Destination, "d")) & 0x12);
        Assert.Equal(0x1ED & ~Umask(), SafeTarExtractor.ExportedMode(0x1FF, directory: true, Umask()));
        Assert.Equal(0x1ED, SafeTarExtractor.ExportedMode(0xFFF, directory: true, umask: 0));
        Assert.Equal(0x1ED, SafeTarExtractor.ExportedMode(0xFFF, directory: false, umask: 0));
        Assert.Equal(0x1C0, SafeTarExtractor.ExportedMode(0, directory: true, umask: 0));
    }

    [Fact]
    public async Task TheByteLimitThrows()
    {
        var archive = Tar(File("a", new string('a', 600)), File("b", new string('b', 600)));

        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => SafeTarExtractor.ExtractAsync(new MemoryStream(archive), Destination, 1000, Unlimited, CancellationToken.None));

        Assert.Contains("1000 bytes", ex.Message);
        AssertNothingEscaped();
    }

    [Fact]
    public async Task TheEntryLimitThrows()
    {
        var archive = Tar(Enumerable.Range(0, 11).Select(i => (TarEntry)File($"f{i}", "x")).ToArray());

        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => SafeTarExtractor.ExtractAsync(new MemoryStream(archive), Destination, Unlimited, 10, CancellationToken.None));

        Assert.Contains("10 entries", ex.Message);
        Assert.Equal(10, Directory.GetFileSystemEntries(Destination).Length);
    }

    [Fact]
    public async Task SkippedDataCountsAgainstTheByteLimit()
    {
        // The second copy is refused as a duplicate, but its bytes still had to be read. The limit
        // falls inside the second entry (its 1024 bytes of padded data end 1024 bytes before the end).
        var archive = Tar(File("f", new string('a', 600)), File("f", new string('b', 600)));
        var limit = archive.Length - 1600;

        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => SafeTarExtractor.ExtractAsync(new MemoryStream(archive), Destination, limit, Unlimited, CancellationToken.None));

        Assert.Contains($"{limit} bytes", ex.Message);
        Assert.Equal(new string('a', 600), System.IO.File.ReadAllText(Path.Combine(Destination, "f")));
    }

    [Fact]
    public async Task ACorruptArchiveIsInvalidData()
    {
        var archive = Tar(File("a", "x"));
        // The size field of the first header: no longer an octal number.
        "zzzzzzzzzzz"u8.CopyTo(archive.AsSpan(124));

        await Assert.ThrowsAsync<InvalidDataException>(() => ExtractAsync(archive));
    }

    [Fact]
    public async Task SkippedNamesAreSanitizedForDisplay()
    {
        var hostile = "/\u001b]0;pwned\u0007\u001b[2J/" + new string('A', 3000);

        var summary = await ExtractAsync(Tar(File(hostile, "x")));

        var shown = Assert.Single(summary.Skipped);
        Assert.Equal("absolute_path", shown.Reason);
        Assert.DoesNotContain(shown.Name, char.IsControl);
        Assert.Equal(300, shown.Name.Length);
        Assert.StartsWith("/]0;pwned[2J/AAA", shown.Name);
    }

    [Fact]
    public async Task ATreeRoundTripsThroughTheBuilderAndTheExtractor()
    {
        var source = Directory.CreateDirectory(Path.Combine(_base, "src")).FullName;
        Directory.CreateDirectory(Path.Combine(source, "bin"));
        Directory.CreateDirectory(Path.Combine(source, "empty"));
        System.IO.File.WriteAllText(Path.Combine(source, "readme"), "hello");
        System.IO.File.SetUnixFileMode(Path.Combine(source, "readme"), (UnixFileMode)0x1A0); // 0640
        System.IO.File.WriteAllText(Path.Combine(source, "bin", "run.sh"), "#!/bin/sh\n");
        System.IO.File.SetUnixFileMode(Path.Combine(source, "bin", "run.sh"), (UnixFileMode)0x1ED); // 0755
        System.IO.File.WriteAllText(Path.Combine(source, ".env"), "dot files too");
        var big = new byte[1_000_000];
        Random.Shared.NextBytes(big);
        System.IO.File.WriteAllBytes(Path.Combine(source, "bin", "blob"), big);
        System.IO.File.CreateSymbolicLink(Path.Combine(source, "run"), "bin/run.sh");
        System.IO.File.CreateSymbolicLink(Path.Combine(source, "bin", "self"), "../readme");
        System.IO.File.CreateSymbolicLink(Path.Combine(source, "host-link"), Outside);
        MakeFifo(Path.Combine(source, "pipe"));

        var tar = new MemoryStream();
        await HostTarBuilder.WriteDirectoryAsync(source, tar, CancellationToken.None);
        var names = ReadNames(tar.ToArray());
        tar.Position = 0;
        var summary = await SafeTarExtractor.ExtractAsync(tar, Destination, Unlimited, Unlimited, CancellationToken.None);

        Assert.Equal([".env", "bin/", "bin/blob", "bin/run.sh", "bin/self", "empty/", "host-link", "readme", "run"], names);
        Assert.Equal((4L, 2L, 2L), (summary.Files, summary.Directories, summary.Symlinks));
        Assert.Equal(1_000_000 + 5 + 10 + 13, summary.Bytes);
        // An absolute link is fine in a seed but never recreated on the host from a guest archive.
        Assert.Equal(("host-link", "symlink_outside"), (Assert.Single(summary.Skipped).Name, summary.Skipped[0].Reason));
        Assert.Equal("hello", System.IO.File.ReadAllText(Path.Combine(Destination, "readme")));
        Assert.Equal((UnixFileMode)0x1A0, System.IO.File.GetUnixFileMode(Path.Combine(Destination, "readme")));
        Assert.Equal((UnixFileMode)0x1ED, System.IO.File.GetUnixFileMode(Path.Combine(Destination, "bin", "run.sh")));
        Assert.Equal(big, System.IO.File.ReadAllBytes(Path.Combine(Destination, "bin", "blob")));
        Assert.Equal("dot files too", System.IO.File.ReadAllText(Path.Combine(Destination, ".env")));
        Assert.True(Directory.Exists(Path.Combine(Destination, "empty")));
        Assert.Equal("bin/run.sh", new FileInfo(Path.Combine(Destination, "run")).LinkTarget);
        Assert.Equal("#!/bin/sh\n", System.IO.File.ReadAllText(Path.Combine(Destination, "run")));
        Assert.Equal("hello", System.IO.File.ReadAllText(Path.Combine(Destination, "bin", "self")));
        Assert.False(Path.Exists(Path.Combine(Destination, "pipe")));
    }

    [Theory]
    [InlineData("seed.tar.gz")]
    [InlineData("seed.TGZ")]
    [InlineData("seed.tar")]
    public async Task SeedArchivesOpenAsPlainTar(string fileName)
    {
        var path = Path.Combine(_base, fileName);
        var tar = Tar(File("src/main.c", "int main(void) { return 0; }\n"));
        if (fileName.EndsWith(".tar", StringComparison.Ordinal))
        {
            await System.IO.File.WriteAllBytesAsync(path, tar);
        }
        else
        {
            await using var gz = new GZipStream(System.IO.File.Create(path), CompressionLevel.Fastest);
            await gz.WriteAsync(tar);
        }

        await using var archive = HostTarBuilder.OpenArchive(path);
        var summary = await SafeTarExtractor.ExtractAsync(archive, Destination, Unlimited, Unlimited, CancellationToken.None);

        Assert.Equal(1, summary.Files);
        Assert.Equal("int main(void) { return 0; }\n", System.IO.File.ReadAllText(Path.Combine(Destination, "src", "main.c")));
    }

    [Theory]
    [InlineData("seed.zip")]
    [InlineData("seed.gz")]
    [InlineData("seed")]
    public void OtherSeedFilesAreRefusedWithAClearMessage(string fileName)
    {
        var ex = Assert.Throws<ArgumentException>(() => HostTarBuilder.OpenArchive(Path.Combine(_base, fileName)));

        Assert.Contains("seed archives must be .tar, .tar.gz or .tgz", ex.Message);
    }

    private Task<ExtractSummary> ExtractAsync(byte[] archive, string? destination = null)
        => SafeTarExtractor.ExtractAsync(new MemoryStream(archive), destination ?? Destination, Unlimited, Unlimited, CancellationToken.None);

    private void AssertNothingEscaped()
    {
        Assert.Empty(Directory.GetFileSystemEntries(Outside));
        Assert.Empty(Directory.GetFileSystemEntries(_elsewhere));
        Assert.All(Directory.GetFileSystemEntries(_base), p => Assert.Contains(Path.GetFileName(p), new[] { "dest", "outside", "src" }));
    }

    internal static int Umask()
        => Convert.ToInt32(System.IO.File.ReadLines("/proc/self/status").First(l => l.StartsWith("Umask:", StringComparison.Ordinal))["Umask:".Length..].Trim(), 8);

    private static string Reason(ExtractSummary summary, string name) => summary.Skipped.Single(s => s.Name == name).Reason;

    private static byte[] Tar(params TarEntry[] entries)
    {
        var buffer = new MemoryStream();
        using (var writer = new TarWriter(buffer, TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach (var entry in entries)
            {
                writer.WriteEntry(entry);
            }
        }

        return buffer.ToArray();
    }

    private static PaxTarEntry File(string name, string content, UnixFileMode mode = (UnixFileMode)0x1A4)
        => new(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)), Mode = mode };

    private static PaxTarEntry Link(TarEntryType type, string name, string target) => new(type, name) { LinkName = target };

    private static List<string> ReadNames(byte[] tar)
    {
        var names = new List<string>();
        using var reader = new TarReader(new MemoryStream(tar));
        while (reader.GetNextEntry() is { } entry)
        {
            names.Add(entry.Name);
        }

        return names;
    }

    private static void MakeFifo(string path)
    {
        using var mkfifo = System.Diagnostics.Process.Start("mkfifo", [path]);
        mkfifo.WaitForExit();
        Assert.Equal(0, mkfifo.ExitCode);
    }

    public void Dispose()
    {
        foreach (var directory in new[] { _base, _elsewhere })
        {
            foreach (var sub in Directory.GetDirectories(directory, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint }))
            {
                System.IO.File.SetUnixFileMode(sub, (UnixFileMode)0x1ED);
            }

            Directory.Delete(directory, recursive: true);
        }
    }
}
