namespace PyroMcp.GuestAgent.Tests;

public sealed class WorkspacePathsTests : IDisposable
{
    private readonly string _base = Directory.CreateTempSubdirectory("pyro-paths-test-").FullName;
    private readonly WorkspacePaths _paths;

    public WorkspacePathsTests()
    {
        Directory.CreateDirectory(Path.Combine(_base, "ws"));
        _paths = new WorkspacePaths(Path.Combine(_base, "ws") + "/");
    }

    private string Root => _paths.Root;

    [Theory]
    [InlineData("", "")]
    [InlineData(".", "")]
    [InlineData("a/./b/", "a/b")]
    [InlineData("./a//b", "a/b")]
    public void RelativePathsAreNormalized(string request, string relative)
    {
        var path = _paths.Resolve(request);

        Assert.Equal(relative, path.Relative);
        Assert.Equal(relative.Length == 0 ? Root : Root + "/" + relative, path.Full);
    }

    [Fact]
    public void AbsolutePathsInsideTheRootAreAccepted()
    {
        Assert.Equal("a/b", _paths.Resolve(Root + "/a/b").Relative);
        Assert.True(_paths.Resolve(Root).IsRoot);
        Assert.True(_paths.Resolve(Root + "/").IsRoot);
    }

    [Theory]
    [InlineData("..")]
    [InlineData("../outside")]
    [InlineData("a/../../b")]
    [InlineData("a/..")]
    public void DotDotIsRefusedEvenWhenItWouldStayInside(string request)
    {
        var ex = Assert.Throws<AgentFailure>(() => _paths.Resolve(request));
        Assert.Equal("path_escapes_workspace", ex.Code);
    }

    [Fact]
    public void AbsolutePathsOutsideTheRootAreRefused()
    {
        Assert.Equal("outside_workspace", Assert.Throws<AgentFailure>(() => _paths.Resolve("/etc/passwd")).Code);
        // A sibling whose name starts with the root's is not inside it.
        Assert.Equal("outside_workspace", Assert.Throws<AgentFailure>(() => _paths.Resolve(Root + "x/file")).Code);
        Assert.Equal("path_escapes_workspace", Assert.Throws<AgentFailure>(() => _paths.Resolve(Root + "/../ws/file")).Code);
    }

    [Fact]
    public void NulBytesAreRefused()
    {
        Assert.Equal("invalid_path", Assert.Throws<AgentFailure>(() => _paths.Resolve("a\0b")).Code);
    }

    [Fact]
    public void WritesRefuseASymlinkedDirectoryOnTheWay()
    {
        Directory.CreateDirectory(Path.Combine(_base, "outside"));
        Directory.CreateDirectory(Path.Combine(Root, "real"));
        File.CreateSymbolicLink(Path.Combine(Root, "real", "link"), Path.Combine(_base, "outside"));

        var ex = Assert.Throws<AgentFailure>(() => _paths.ForWrite("real/link/sub/file", createParents: true));

        Assert.Equal("symlink_in_path", ex.Code);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(_base, "outside")));
    }

    [Fact]
    public void WritesCreateMissingParentsOnlyWhenAsked()
    {
        Assert.Equal("not_found", Assert.Throws<AgentFailure>(() => _paths.ForWrite("new/dir/file")).Code);

        var path = _paths.ForWrite("new/dir/file", createParents: true);

        Assert.Equal("new/dir/file", path.Relative);
        Assert.True(Directory.Exists(Path.Combine(Root, "new", "dir")));
        Assert.False(File.Exists(path.Full));
    }

    [Fact]
    public void AFileOnTheWayIsNotADirectory()
    {
        File.WriteAllText(Path.Combine(Root, "plain"), "x");

        Assert.Equal("not_a_directory", Assert.Throws<AgentFailure>(() => _paths.ForWrite("plain/file", createParents: true)).Code);
    }

    [Fact]
    public void ReadsFollowLinksThatStayInside()
    {
        Directory.CreateDirectory(Path.Combine(Root, "real"));
        File.WriteAllText(Path.Combine(Root, "real", "f"), "x");
        File.CreateSymbolicLink(Path.Combine(Root, "alias"), "real");

        var path = _paths.ForRead("alias/f");

        Assert.Equal("alias/f", path.Relative);
        Assert.Equal(Path.Combine(Root, "real", "f"), path.Full);
    }

    [Fact]
    public void ReadsRefuseLinksThatLeave()
    {
        File.WriteAllText(Path.Combine(_base, "secret"), "x");
        File.CreateSymbolicLink(Path.Combine(Root, "up"), "..");
        File.CreateSymbolicLink(Path.Combine(Root, "abs"), Path.Combine(_base, "secret"));

        Assert.Equal("outside_workspace", Assert.Throws<AgentFailure>(() => _paths.ForRead("up/secret")).Code);
        Assert.Equal("outside_workspace", Assert.Throws<AgentFailure>(() => _paths.ForRead("abs")).Code);
        Assert.Equal("not_found", Assert.Throws<AgentFailure>(() => _paths.ForRead("missing")).Code);
    }

    public void Dispose() => Directory.Delete(_base, recursive: true);
}
