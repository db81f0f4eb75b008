using PyroMcp.Server;

namespace PyroMcp.Tests;

/// <summary>The MCP server's confinement of host paths: resolved first (symlinks, <c>..</c>, <c>~</c>), then checked.</summary>
public sealed class AllowedRootsTests : IDisposable
{
    private readonly string _top = Directory.CreateTempSubdirectory("pyro-roots-").FullName;
    private readonly string _root;
    private readonly string _outside;

    public AllowedRootsTests()
    {
        _root = Path.Combine(_top, "project");
        _outside = Path.Combine(_top, "outside");
        Directory.CreateDirectory(Path.Combine(_root, "src"));
        Directory.CreateDirectory(_outside);
        File.WriteAllText(Path.Combine(_outside, "secret"), "s");
        File.CreateSymbolicLink(Path.Combine(_root, "escape-dir"), _outside);
        File.CreateSymbolicLink(Path.Combine(_root, "escape-file"), Path.Combine(_outside, "secret"));
        File.CreateSymbolicLink(Path.Combine(_root, "relative-escape"), "../outside");
        File.CreateSymbolicLink(Path.Combine(_root, "chain1"), "chain2");
        File.CreateSymbolicLink(Path.Combine(_root, "chain2"), "escape-dir");
        File.CreateSymbolicLink(Path.Combine(_root, "inside-link"), "src");
        File.CreateSymbolicLink(Path.Combine(_root, "loop-a"), "loop-b");
        File.CreateSymbolicLink(Path.Combine(_root, "loop-b"), "loop-a");
        File.CreateSymbolicLink(Path.Combine(_root, "dangling-out"), "/etc/pyro-does-not-exist/x");
    }

    public void Dispose() => Directory.Delete(_top, recursive: true);

    [Theory]
    [InlineData("src")]
    [InlineData("./src/new-file")]
    [InlineData("src/a/b/c/not-yet")]
    [InlineData("inside-link/x")]
    [InlineData(".")]
    public void PathsInsideTheRootResolveInsideIt(string path)
    {
        var roots = new AllowedRoots([_root]);
        var resolved = roots.Confine(path, "seed_path");
        Assert.StartsWith(_root, resolved, StringComparison.Ordinal);
        Assert.DoesNotContain("inside-link", resolved, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("~")]
    [InlineData("~/.ssh")]
    [InlineData("/etc")]
    [InlineData("/etc/profile.d/pyro.sh")]
    [InlineData("/")]
    [InlineData("..")]
    [InlineData("../outside/secret")]
    [InlineData("src/../../outside")]
    [InlineData("escape-dir")]
    [InlineData("escape-dir/new-output")]
    [InlineData("escape-file")]
    [InlineData("relative-escape/secret")]
    [InlineData("chain1/secret")]
    [InlineData("dangling-out")]
    public void PathsThatLeadOutAreRefusedWithPathNotAllowed(string path)
    {
        var roots = new AllowedRoots([_root]);
        var ex = Assert.Throws<HostPathException>(() => roots.Confine(path, "output_path"));
        Assert.Equal("path_not_allowed", ex.Code);
        Assert.Contains("output_path", ex.Message, StringComparison.Ordinal);
        Assert.Contains("--allow-path", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AbsolutePathsThroughASymlinkedRootAreCheckedAgainstItsTarget()
    {
        var link = Path.Combine(_top, "project-link");
        File.CreateSymbolicLink(link, _root);
        var roots = new AllowedRoots([link]);
        Assert.Equal(Path.Combine(_root, "src"), roots.Confine(Path.Combine(link, "src"), "seed_path"));
        Assert.Equal(Path.Combine(_root, "src"), roots.Confine(Path.Combine(_root, "src"), "seed_path"));
        Assert.Equal("path_not_allowed", Assert.Throws<HostPathException>(() => roots.Confine(Path.Combine(link, "escape-dir"), "seed_path")).Code);
    }

    [Fact]
    public void SymlinkLoopsAndNulBytesAreInvalidPaths()
    {
        var roots = new AllowedRoots([_root]);
        Assert.Equal("invalid_path", Assert.Throws<HostPathException>(() => roots.Confine("loop-a/x", "seed_path")).Code);
        Assert.Equal("invalid_path", Assert.Throws<HostPathException>(() => roots.Confine("src\0/../../etc", "seed_path")).Code);
        Assert.Equal("invalid_path", Assert.Throws<HostPathException>(() => roots.Confine("  ", "seed_path")).Code);
    }

    [Fact]
    public void SeveralRootsAndBadRoots()
    {
        var roots = new AllowedRoots([_root, _outside]);
        Assert.Equal(Path.Combine(_outside, "secret"), roots.Confine(Path.Combine(_outside, "secret"), "seed_path"));
        // A prefix of a root's name is not inside it.
        Directory.CreateDirectory(_root + "-sibling");
        Assert.Equal("path_not_allowed", Assert.Throws<HostPathException>(() => roots.Confine(_root + "-sibling", "seed_path")).Code);
        Assert.Throws<ArgumentException>(() => new AllowedRoots([]));
        Assert.Throws<ArgumentException>(() => new AllowedRoots([Path.Combine(_top, "missing")]));
    }
}
