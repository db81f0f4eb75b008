using System.Formats.Tar;
using System.Text;
using PyroMcp.Protocol;
using static PyroMcp.GuestAgent.Tests.AgentHarness;

namespace PyroMcp.GuestAgent.Tests;

/// <summary>tar.out and tar.in through a real agent; tar.in is fed archives built to escape.</summary>
public sealed class TarOpsTests : IAsyncLifetime
{
    private readonly AgentHarness _agent = new();

    [Fact]
    public async Task TarOutOfADirectoryHasRelativeNamesAndKeepsLinksAsLinks()
    {
        Directory.CreateDirectory(_agent.InRoot("src/sub"));
        File.WriteAllText(_agent.InRoot("src/a.txt"), "alpha");
        File.WriteAllText(_agent.InRoot("src/sub/b.txt"), "beta");
        File.WriteAllText(Path.Combine(_agent.Outside, "secret"), "never packed");
        File.CreateSymbolicLink(_agent.InRoot("src/out"), _agent.Outside);

        var reply = await _agent.TarAsync(AgentOps.TarOut, new TarRequest { Path = "src" });

        var entries = ReadTar(reply.Stdout);
        Assert.Equal(["a.txt", "out", "sub/", "sub/b.txt"], entries.Select(e => e.Name));
        var link = entries.Single(e => e.Name == "out");
        Assert.Equal((TarEntryType.SymbolicLink, _agent.Outside), (link.EntryType, link.LinkName));
        Assert.Equal((4L, 9L), (reply.Ok.Tar!.Entries, reply.Ok.Tar.Bytes));
    }

    [Fact]
    public async Task TarOutOfAFileIsNamedAfterTheFile()
    {
        Directory.CreateDirectory(_agent.InRoot("dir"));
        File.WriteAllText(_agent.InRoot("dir/notes.md"), "# notes");

        var reply = await _agent.TarAsync(AgentOps.TarOut, new TarRequest { Path = "dir/notes.md" });

        var entry = Assert.Single(ReadTar(reply.Stdout));
        Assert.Equal(("notes.md", "# notes"), (entry.Name, new StreamReader(entry.DataStream!).ReadToEnd()));
    }

    [Fact]
    public async Task TarOutRefusesALinkThatLeavesTheRoot()
    {
        File.CreateSymbolicLink(_agent.InRoot("escape"), _agent.Outside);

        var reply = await _agent.TarAsync(AgentOps.TarOut, new TarRequest { Path = "escape" });

        Assert.Equal("outside_workspace", reply.FailureCode);
        Assert.Empty(reply.Stdout);
    }

    [Fact]
    public async Task ATreeRoundTripsThroughTarOutAndTarIn()
    {
        Directory.CreateDirectory(_agent.InRoot("src/bin"));
        Directory.CreateDirectory(_agent.InRoot("src/empty"));
        Directory.CreateDirectory(_agent.InRoot("src/locked"));
        File.WriteAllText(_agent.InRoot("src/readme"), "hello");
        File.SetUnixFileMode(_agent.InRoot("src/readme"), (UnixFileMode)0x1A0); // 0640
        File.WriteAllText(_agent.InRoot("src/bin/run.sh"), "#!/bin/sh\necho hi\n");
        File.SetUnixFileMode(_agent.InRoot("src/bin/run.sh"), (UnixFileMode)0x1ED); // 0755
        var big = new byte[700_000];
        Random.Shared.NextBytes(big);
        File.WriteAllBytes(_agent.InRoot("src/bin/blob"), big);
        File.WriteAllText(_agent.InRoot("src/locked/inner"), "in a read-only directory");
        File.SetUnixFileMode(_agent.InRoot("src/locked"), (UnixFileMode)0x16D); // 0555
        File.CreateSymbolicLink(_agent.InRoot("src/run"), "bin/run.sh");
        File.CreateSymbolicLink(_agent.InRoot("src/dangling"), "../nowhere");

        var packed = await _agent.TarAsync(AgentOps.TarOut, new TarRequest { Path = "src" });
        var unpacked = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "copy" }, packed.Stdout);

        Assert.Equal(packed.Ok.Tar!.Entries, unpacked.Ok.Tar!.Entries);
        Assert.Equal(packed.Ok.Tar.Bytes, unpacked.Ok.Tar.Bytes);
        Assert.Empty(unpacked.Ok.Tar.Skipped);
        Assert.Equal("hello", File.ReadAllText(_agent.InRoot("copy/readme")));
        Assert.Equal((UnixFileMode)0x1A0, File.GetUnixFileMode(_agent.InRoot("copy/readme")));
        Assert.Equal((UnixFileMode)0x1ED, File.GetUnixFileMode(_agent.InRoot("copy/bin/run.sh")));
        Assert.Equal(big, File.ReadAllBytes(_agent.InRoot("copy/bin/blob")));
        Assert.True(Directory.Exists(_agent.InRoot("copy/empty")));
        Assert.Equal("in a read-only directory", File.ReadAllText(_agent.InRoot("copy/locked/inner")));
        Assert.Equal((UnixFileMode)0x16D, File.GetUnixFileMode(_agent.InRoot("copy/locked")));
        Assert.Equal("bin/run.sh", new FileInfo(_agent.InRoot("copy/run")).LinkTarget);
        Assert.Equal("../nowhere", new FileInfo(_agent.InRoot("copy/dangling")).LinkTarget);
        Assert.Equal(File.GetLastWriteTimeUtc(_agent.InRoot("src/readme")), File.GetLastWriteTimeUtc(_agent.InRoot("copy/readme")), TimeSpan.FromSeconds(1));
    }

    [Fact]
    public async Task HostileEntriesAreSkippedAndNothingLandsOutsideTheDestination()
    {
        var absolute = Path.Combine(_agent.Elsewhere, "evil");
        var archive = Tar(
            FileEntry("../evil", "traversal"),
            FileEntry("../../outside/evil", "traversal to the sibling"),
            FileEntry("./ok/../../evil", "traversal hidden mid-path"),
            FileEntry(absolute, "absolute"),
            LinkEntry(TarEntryType.SymbolicLink, "link", _agent.Outside),
            FileEntry("link/evil", "through the link just planted"),
            new PaxTarEntry(TarEntryType.Directory, "link/sub/"),
            LinkEntry(TarEntryType.SymbolicLink, "uplink", "../.."),
            FileEntry("uplink/outside/evil2", "through a relative link"),
            LinkEntry(TarEntryType.HardLink, "hard-out", Path.Combine(_agent.Outside, "target")),
            LinkEntry(TarEntryType.HardLink, "hard-up", "../../outside/target"),
            LinkEntry(TarEntryType.HardLink, "hard-unseen", "not-in-archive"),
            new PaxTarEntry(TarEntryType.CharacterDevice, "dev-null") { DeviceMajor = 1, DeviceMinor = 3 },
            new PaxTarEntry(TarEntryType.BlockDevice, "dev-sda") { DeviceMajor = 8, DeviceMinor = 0 },
            new PaxTarEntry(TarEntryType.Fifo, "pipe"),
            FileEntry("./fine/ok.txt", "legitimate"));

        var reply = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "dest" }, archive);

        var summary = reply.Ok.Tar!;
        var reasons = summary.Skipped.ToDictionary(s => s.Name, s => s.Reason);
        Assert.Equal("path_traversal", reasons["../evil"]);
        Assert.Equal("path_traversal", reasons["../../outside/evil"]);
        Assert.Equal("path_traversal", reasons["./ok/../../evil"]);
        Assert.Equal("absolute_path", reasons[absolute]);
        Assert.Equal("symlink_in_path", reasons["link/evil"]);
        Assert.Equal("symlink_in_path", reasons["link/sub/"]);
        Assert.Equal("symlink_in_path", reasons["uplink/outside/evil2"]);
        Assert.Equal("hardlink_outside", reasons["hard-out"]);
        Assert.Equal("hardlink_outside", reasons["hard-up"]);
        Assert.Equal("hardlink_outside", reasons["hard-unseen"]);
        Assert.Equal("special_file", reasons["dev-null"]);
        Assert.Equal("special_file", reasons["dev-sda"]);
        Assert.Equal("special_file", reasons["pipe"]);
        Assert.Equal(13, summary.Skipped.Count);

        // Extracted: the two links (kept as links, never followed) and the legitimate file.
        Assert.Equal(3, summary.Entries);
        Assert.Equal("legitimate", File.ReadAllText(_agent.InRoot("dest/fine/ok.txt")));
        Assert.Equal(_agent.Outside, new FileInfo(_agent.InRoot("dest/link")).LinkTarget);
        Assert.Empty(_agent.EscapedEntries());
        Assert.Equal(["dest"], Directory.GetFileSystemEntries(_agent.Root).Select(Path.GetFileName));
        Assert.False(File.Exists(absolute));
    }

    [Fact]
    public async Task LinksAlreadyInTheDestinationAreNeverWrittenThrough()
    {
        var victim = Path.Combine(_agent.Outside, "victim");
        File.WriteAllText(victim, "keep");
        Directory.CreateDirectory(_agent.InRoot("dest"));
        File.CreateSymbolicLink(_agent.InRoot("dest/dirlink"), _agent.Outside);
        File.CreateSymbolicLink(_agent.InRoot("dest/filelink"), victim);

        var reply = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "dest" }, Tar(
            FileEntry("dirlink/victim", "pwned"),
            FileEntry("filelink", "replaces the link, not the victim")));

        Assert.Equal("symlink_in_path", Assert.Single(reply.Ok.Tar!.Skipped).Reason);
        Assert.Equal("keep", File.ReadAllText(victim));
        Assert.Null(new FileInfo(_agent.InRoot("dest/filelink")).LinkTarget);
        Assert.Equal("replaces the link, not the victim", File.ReadAllText(_agent.InRoot("dest/filelink")));
        Assert.Equal(["victim"], Directory.GetFileSystemEntries(_agent.Outside).Select(Path.GetFileName));
    }

    [Fact]
    public async Task ADestinationThatIsASymlinkIsRefused()
    {
        File.CreateSymbolicLink(_agent.InRoot("dest"), _agent.Outside);

        var reply = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "dest" }, Tar(FileEntry("evil", "x")));

        Assert.Equal("symlink_in_path", reply.FailureCode);
        Assert.Empty(_agent.EscapedEntries());
    }

    [Fact]
    public async Task HardLinksToFilesOfTheSameArchiveAreKept()
    {
        var reply = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "" }, Tar(
            FileEntry("data/original", "shared"),
            LinkEntry(TarEntryType.HardLink, "data/alias", "./data/original")));

        Assert.Equal(2, reply.Ok.Tar!.Entries);
        Assert.Empty(reply.Ok.Tar.Skipped);
        File.AppendAllText(_agent.InRoot("data/original"), " content");
        Assert.Equal("shared content", File.ReadAllText(_agent.InRoot("data/alias")));
    }

    [Fact]
    public async Task SetuidBitsAreKeptInTheGuest()
    {
        var reply = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "" }, Tar(
            FileEntry("tool", "x", (UnixFileMode)0x9ED))); // 04755

        Assert.Equal(1, reply.Ok.Tar!.Entries);
        Assert.Equal((UnixFileMode)0x9ED, File.GetUnixFileMode(_agent.InRoot("tool")));
    }

    [Fact]
    public async Task CleanEmptiesTheRootButKeepsIt()
    {
        Directory.CreateDirectory(_agent.InRoot("old/dir"));
        File.WriteAllText(_agent.InRoot("old/dir/f"), "stale");
        File.WriteAllText(_agent.InRoot(".dotfile"), "stale");
        File.WriteAllText(Path.Combine(_agent.Outside, "victim"), "keep");
        File.CreateSymbolicLink(_agent.InRoot("escape"), _agent.Outside);

        var reply = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "", Clean = true }, Tar(FileEntry("new.txt", "fresh")));

        Assert.Equal(1, reply.Ok.Tar!.Entries);
        Assert.Equal(["new.txt"], Directory.GetFileSystemEntries(_agent.Root).Select(Path.GetFileName));
        Assert.Equal("keep", File.ReadAllText(Path.Combine(_agent.Outside, "victim")));
    }

    [Fact]
    public async Task ACorruptArchiveIsABadArchiveAndTheChannelSurvives()
    {
        // Cleaning out many files keeps the agent from reading stdin for a while, so the host
        // queues more than the operation buffers; after the failure the agent must still get rid
        // of that backlog or its channel stalls for every stream.
        Directory.CreateDirectory(_agent.InRoot("dest"));
        for (var i = 0; i < 3000; i++)
        {
            File.WriteAllText(_agent.InRoot($"dest/old-{i}"), "stale");
        }

        var archive = Tar(FileEntry("first", new string('x', 5000)));
        // Damage the header in front of the entry: its size field is no longer a number.
        "zzzzzzzzzzz"u8.CopyTo(archive.AsSpan(LastPaxHeader(archive) + 124));
        var input = archive.Concat(new byte[3_000_000]).ToArray();

        var reply = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "dest", Clean = true }, input);
        var next = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "dest" }, Tar(FileEntry("third", "ok")));

        Assert.Equal("bad_archive", reply.FailureCode);
        Assert.Equal(1, next.Ok.Tar!.Entries);
        Assert.Equal(["third"], Directory.GetFileSystemEntries(_agent.InRoot("dest")).Select(Path.GetFileName));
        Assert.Empty(_agent.EscapedEntries());
    }

    [Fact]
    public async Task ATruncatedArchiveIsABadArchive()
    {
        var archive = Tar(FileEntry("big", new string('x', 100_000)));

        var reply = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "dest" }, archive.AsSpan(0, 20_000).ToArray());

        Assert.Equal("bad_archive", reply.FailureCode);
    }

    [Fact]
    public async Task NamesTooLongForTheFileSystemAreSkipped()
    {
        var longName = "dir/" + new string('n', 300);

        var reply = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "dest" }, Tar(FileEntry(longName, "x"), FileEntry("after", "y")));

        Assert.Equal("name_too_long", Assert.Single(reply.Ok.Tar!.Skipped).Reason);
        Assert.Equal("y", File.ReadAllText(_agent.InRoot("dest/after")));
    }

    [Fact]
    public async Task TheSkippedListIsCappedAndCountsTheRest()
    {
        var entries = Enumerable.Range(0, 1500).Select(i => (TarEntry)new PaxTarEntry(TarEntryType.Fifo, $"fifo-{i}")).ToArray();

        var reply = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "dest" }, Tar(entries));

        var skipped = reply.Ok.Tar!.Skipped;
        Assert.Equal(1001, skipped.Count);
        Assert.Equal(new SkippedEntry("500 more entries", "not_listed"), skipped[^1]);
        Assert.Equal(0, reply.Ok.Tar.Entries);
    }

    [Fact]
    public async Task SkippedNamesAreBoundedAndStrippedOfControlCharacters()
    {
        var name = "\u001b[2J" + new string('n', 4000);

        var reply = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "dest" }, Tar(new PaxTarEntry(TarEntryType.Fifo, name)));

        var skipped = Assert.Single(reply.Ok.Tar!.Skipped);
        Assert.DoesNotContain('\u001b', skipped.Name);
        Assert.Equal(300, skipped.Name.Length);
    }

    /// <summary>Offset of the last PAX extended header block (type 'x'), the one that introduces the last entry.</summary>
    private static int LastPaxHeader(byte[] archive)
    {
        for (var offset = archive.Length - 512; offset >= 0; offset -= 512)
        {
            if (archive[offset + 156] == (byte)'x' && archive.AsSpan(offset + 257, 5).SequenceEqual("ustar"u8))
            {
                return offset;
            }
        }

        throw new InvalidOperationException("no PAX header");
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _agent.DisposeAsync();
}
