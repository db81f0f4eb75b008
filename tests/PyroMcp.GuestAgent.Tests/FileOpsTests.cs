using System.Text;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent.Tests;

/// <summary>The files.* operations, driven through a real agent over an in-memory channel.</summary>
public sealed class FileOpsTests : IAsyncLifetime
{
    private readonly AgentHarness _agent = new();

    [Fact]
    public async Task ListingIsSortedTypedAndDoesNotFollowDirectoryLinks()
    {
        File.WriteAllText(_agent.InRoot("b.txt"), "bee");
        File.SetUnixFileMode(_agent.InRoot("b.txt"), (UnixFileMode)0x180); // 0600
        Directory.CreateDirectory(_agent.InRoot("sub"));
        File.WriteAllText(_agent.InRoot("sub/x"), "x");
        File.WriteAllText(_agent.InRoot(".hidden"), "");
        File.WriteAllText(Path.Combine(_agent.Outside, "secret"), "s");
        File.CreateSymbolicLink(_agent.InRoot("a-link"), _agent.Outside);

        var listing = (await _agent.FilesAsync(AgentOps.FilesList, new FilesRequest { Path = "", Recursive = true })).Ok.Listing!;

        Assert.Equal([".hidden", "a-link", "b.txt", "sub", "sub/x"], listing.Entries.Select(e => e.Path));
        var link = listing.Entries.Single(e => e.Path == "a-link");
        Assert.Equal(("symlink", _agent.Outside), (link.Type, link.LinkTarget));
        var file = listing.Entries.Single(e => e.Path == "b.txt");
        Assert.Equal(("file", 3L, 0x180), (file.Type, file.Size, file.Mode));
        Assert.Equal("directory", listing.Entries.Single(e => e.Path == "sub").Type);

        var shallow = (await _agent.FilesAsync(AgentOps.FilesList, new FilesRequest { Path = "sub" })).Ok.Listing!;
        Assert.Equal(["sub/x"], shallow.Entries.Select(e => e.Path));
    }

    [Fact]
    public async Task ListingADirectoryLinkThatLeavesIsRefused()
    {
        File.WriteAllText(Path.Combine(_agent.Outside, "secret"), "s");
        File.CreateSymbolicLink(_agent.InRoot("out"), _agent.Outside);

        var reply = await _agent.FilesAsync(AgentOps.FilesList, new FilesRequest { Path = "out" });

        Assert.Equal("outside_workspace", reply.FailureCode);
    }

    [Fact]
    public async Task ReadStreamsTheContentAndHonoursMaxBytes()
    {
        var content = new byte[200_000];
        Random.Shared.NextBytes(content);
        File.WriteAllBytes(_agent.InRoot("blob"), content);

        var whole = await _agent.FilesAsync(AgentOps.FilesRead, new FilesRequest { Path = "blob" });
        Assert.Equal(content, whole.Stdout);
        Assert.Equal((200_000L, false), (whole.Ok.File!.Size, whole.Ok.File.Truncated));

        var head = await _agent.FilesAsync(AgentOps.FilesRead, new FilesRequest { Path = "blob", MaxBytes = 70_000 });
        Assert.Equal(content.AsSpan(0, 70_000).ToArray(), head.Stdout);
        Assert.Equal((70_000L, true), (head.Ok.File!.Size, head.Ok.File.Truncated));

        var exact = await _agent.FilesAsync(AgentOps.FilesRead, new FilesRequest { Path = "blob", MaxBytes = 200_000 });
        Assert.False(exact.Ok.File!.Truncated);
    }

    [Fact]
    public async Task ReadRefusesALinkThatResolvesOutsideTheRoot()
    {
        File.WriteAllText(Path.Combine(_agent.Outside, "secret"), "top secret");
        File.CreateSymbolicLink(_agent.InRoot("leak"), Path.Combine(_agent.Outside, "secret"));
        File.CreateSymbolicLink(_agent.InRoot("up"), "..");
        File.WriteAllText(_agent.InRoot("inside"), "fine");
        File.CreateSymbolicLink(_agent.InRoot("alias"), "inside");

        var leak = await _agent.FilesAsync(AgentOps.FilesRead, new FilesRequest { Path = "leak" });
        var up = await _agent.FilesAsync(AgentOps.FilesRead, new FilesRequest { Path = "up/outside/secret" });
        var alias = await _agent.FilesAsync(AgentOps.FilesRead, new FilesRequest { Path = "alias" });

        Assert.Equal("outside_workspace", leak.FailureCode);
        Assert.Empty(leak.Stdout);
        Assert.Equal("outside_workspace", up.FailureCode);
        Assert.Equal("fine", Encoding.UTF8.GetString(alias.Stdout));
    }

    [Fact]
    public async Task ReadRefusesDirectoriesAndReportsMissingFiles()
    {
        Directory.CreateDirectory(_agent.InRoot("dir"));

        Assert.Equal("not_a_file", (await _agent.FilesAsync(AgentOps.FilesRead, new FilesRequest { Path = "dir" })).FailureCode);
        Assert.Equal("not_found", (await _agent.FilesAsync(AgentOps.FilesRead, new FilesRequest { Path = "nope" })).FailureCode);
    }

    [Theory]
    [InlineData(AgentOps.FilesList)]
    [InlineData(AgentOps.FilesRead)]
    [InlineData(AgentOps.FilesWrite)]
    [InlineData(AgentOps.FilesDelete)]
    public async Task DotDotIsRefusedByEveryOperation(string op)
    {
        File.WriteAllText(Path.Combine(_agent.Outside, "victim"), "keep");

        var reply = await _agent.FilesAsync(op, new FilesRequest { Path = "../outside/victim", Recursive = true }, "overwritten"u8.ToArray());

        Assert.Equal("path_escapes_workspace", reply.FailureCode);
        Assert.Equal("keep", File.ReadAllText(Path.Combine(_agent.Outside, "victim")));
    }

    [Fact]
    public async Task AbsolutePathsOutsideTheRootAreRefused()
    {
        var target = Path.Combine(_agent.Elsewhere, "planted");

        var reply = await _agent.FilesAsync(AgentOps.FilesWrite, new FilesRequest { Path = target }, "x"u8.ToArray());

        Assert.Equal("outside_workspace", reply.FailureCode);
        Assert.False(File.Exists(target));
    }

    [Fact]
    public async Task WriteNeverGoesThroughAFinalSymlink()
    {
        var victim = Path.Combine(_agent.Outside, "victim");
        File.WriteAllText(victim, "original");
        File.CreateSymbolicLink(_agent.InRoot("link"), victim);

        var reply = await _agent.FilesAsync(AgentOps.FilesWrite, new FilesRequest { Path = "link" }, "pwned"u8.ToArray());

        Assert.Equal("symlink_in_path", reply.FailureCode);
        Assert.Equal("original", File.ReadAllText(victim));
        Assert.NotNull(new FileInfo(_agent.InRoot("link")).LinkTarget);
    }

    [Fact]
    public async Task WriteNeverGoesThroughASymlinkedDirectory()
    {
        Directory.CreateDirectory(_agent.InRoot("real"));
        File.CreateSymbolicLink(_agent.InRoot("real/dirlink"), _agent.Outside);

        var direct = await _agent.FilesAsync(AgentOps.FilesWrite, new FilesRequest { Path = "real/dirlink/new.txt" }, "pwned"u8.ToArray());
        var deeper = await _agent.FilesAsync(AgentOps.FilesWrite, new FilesRequest { Path = "real/dirlink/a/b.txt", CreateParents = true }, "pwned"u8.ToArray());

        Assert.Equal("symlink_in_path", direct.FailureCode);
        Assert.Equal("symlink_in_path", deeper.FailureCode);
        Assert.Empty(_agent.EscapedEntries());
    }

    [Fact]
    public async Task WriteReplacesTheWholeFileAtomically()
    {
        var big = new byte[300_000];
        Random.Shared.NextBytes(big);

        var first = await _agent.FilesAsync(AgentOps.FilesWrite, new FilesRequest { Path = "deep/er/file.bin", CreateParents = true }, big);
        Interop.Link(_agent.InRoot("deep/er/file.bin"), _agent.InRoot("old-inode"));
        var second = await _agent.FilesAsync(AgentOps.FilesWrite, new FilesRequest { Path = "deep/er/file.bin" }, "short"u8.ToArray());

        Assert.Equal(300_000, first.Ok.File!.Size);
        Assert.Equal(0x1A4, first.Ok.File.Mode);
        Assert.Equal(5, second.Ok.File!.Size);
        Assert.Equal("short", File.ReadAllText(_agent.InRoot("deep/er/file.bin")));
        // A new file renamed over the old one: the old inode, still reachable through a hard
        // link, was never truncated or rewritten in place.
        Assert.Equal(big, File.ReadAllBytes(_agent.InRoot("old-inode")));
        Assert.Equal(["file.bin"], Directory.GetFileSystemEntries(_agent.InRoot("deep/er")).Select(Path.GetFileName));
    }

    [Fact]
    public async Task WriteSetsTheRequestedModeAndKeepsAnExistingOne()
    {
        await _agent.FilesAsync(AgentOps.FilesWrite, new FilesRequest { Path = "run.sh", Mode = 0x1ED }, "#!/bin/sh\n"u8.ToArray());
        Assert.Equal((UnixFileMode)0x1ED, File.GetUnixFileMode(_agent.InRoot("run.sh")));

        var again = await _agent.FilesAsync(AgentOps.FilesWrite, new FilesRequest { Path = "run.sh" }, "#!/bin/sh\nexit 0\n"u8.ToArray());

        Assert.Equal(0x1ED, again.Ok.File!.Mode);
        Assert.Equal((UnixFileMode)0x1ED, File.GetUnixFileMode(_agent.InRoot("run.sh")));
    }

    [Fact]
    public async Task WriteRefusesDirectoriesAndMissingParents()
    {
        Directory.CreateDirectory(_agent.InRoot("dir"));

        Assert.Equal("is_a_directory", (await _agent.FilesAsync(AgentOps.FilesWrite, new FilesRequest { Path = "dir" }, "x"u8.ToArray())).FailureCode);
        Assert.Equal("not_found", (await _agent.FilesAsync(AgentOps.FilesWrite, new FilesRequest { Path = "no/such/file" }, "x"u8.ToArray())).FailureCode);
        Assert.False(Directory.Exists(_agent.InRoot("no")));
    }

    [Fact]
    public async Task DeletingASymlinkRemovesTheLinkNotItsTarget()
    {
        var victim = Path.Combine(_agent.Outside, "victim");
        File.WriteAllText(victim, "keep");
        File.CreateSymbolicLink(_agent.InRoot("to-file"), victim);
        File.CreateSymbolicLink(_agent.InRoot("to-dir"), _agent.Outside);

        var file = await _agent.FilesAsync(AgentOps.FilesDelete, new FilesRequest { Path = "to-file" });
        var dir = await _agent.FilesAsync(AgentOps.FilesDelete, new FilesRequest { Path = "to-dir", Recursive = true });

        Assert.Equal("symlink", file.Ok.File!.Type);
        Assert.Equal("symlink", dir.Ok.File!.Type);
        Assert.Empty(Directory.GetFileSystemEntries(_agent.Root));
        Assert.Equal("keep", File.ReadAllText(victim));
    }

    [Fact]
    public async Task DeletingADirectoryNeedsRecursiveAndNeverDescendsThroughLinks()
    {
        Directory.CreateDirectory(_agent.InRoot("tree/sub"));
        File.WriteAllText(_agent.InRoot("tree/sub/f"), "x");
        File.WriteAllText(Path.Combine(_agent.Outside, "victim"), "keep");
        File.CreateSymbolicLink(_agent.InRoot("tree/escape"), _agent.Outside);
        Directory.CreateDirectory(_agent.InRoot("empty"));

        var refused = await _agent.FilesAsync(AgentOps.FilesDelete, new FilesRequest { Path = "tree" });
        var empty = await _agent.FilesAsync(AgentOps.FilesDelete, new FilesRequest { Path = "empty" });
        var tree = await _agent.FilesAsync(AgentOps.FilesDelete, new FilesRequest { Path = "tree", Recursive = true });

        Assert.Equal("directory_not_empty", refused.FailureCode);
        Assert.Equal("directory", empty.Ok.File!.Type);
        Assert.Equal("directory", tree.Ok.File!.Type);
        Assert.Empty(Directory.GetFileSystemEntries(_agent.Root));
        Assert.Equal("keep", File.ReadAllText(Path.Combine(_agent.Outside, "victim")));
    }

    [Fact]
    public async Task TheRootCannotBeDeleted()
    {
        File.WriteAllText(_agent.InRoot("f"), "x");

        var reply = await _agent.FilesAsync(AgentOps.FilesDelete, new FilesRequest { Path = "", Recursive = true });
        var absolute = await _agent.FilesAsync(AgentOps.FilesDelete, new FilesRequest { Path = _agent.Root + "/", Recursive = true });

        Assert.Equal("cannot_delete_root", reply.FailureCode);
        Assert.Equal("cannot_delete_root", absolute.FailureCode);
        Assert.True(File.Exists(_agent.InRoot("f")));
    }

    [Fact]
    public async Task SyncSucceeds()
    {
        var reply = await _agent.CallAsync(new AgentRequest { Op = AgentOps.Sync });

        Assert.Null(reply.Error);
        Assert.NotNull(reply.Response);
    }

    [Fact]
    public async Task AFailedWriteDoesNotStallTheChannel()
    {
        File.CreateSymbolicLink(_agent.InRoot("link"), _agent.Outside);

        // Refused before it reads any input, while 3 MB of stdin is on its way: the agent must
        // still drain it and answer the next request.
        var refused = await _agent.FilesAsync(AgentOps.FilesWrite, new FilesRequest { Path = "link/x" }, new byte[3_000_000]);
        var next = await _agent.FilesAsync(AgentOps.FilesWrite, new FilesRequest { Path = "ok" }, "fine"u8.ToArray());

        Assert.Equal("symlink_in_path", refused.FailureCode);
        Assert.Equal(4, next.Ok.File!.Size);
    }

    [Fact]
    public async Task MissingBodiesAndUnknownOperationsAreErrors()
    {
        Assert.Equal("bad_request", (await _agent.CallAsync(new AgentRequest { Op = AgentOps.FilesRead })).FailureCode);
        Assert.Equal("bad_request", (await _agent.CallAsync(new AgentRequest { Op = AgentOps.TarOut })).FailureCode);
        Assert.Equal("unknown_op", (await _agent.CallAsync(new AgentRequest { Op = "files.chmod" })).FailureCode);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _agent.DisposeAsync();
}
