namespace PyroMcp.GuestTests;

/// <summary>
/// The host's walls against a real guest and a real CLI: what a guest exports never arrives
/// group- or world-writable or setuid. (A planted run directory, which stops pyro before any VM,
/// is checked in the fast project.)
/// </summary>
public sealed class HostFileWallsTests : GuestTest
{
    [Fact]
    public async Task ExportedFilesAndDirectoriesNeverKeepTheGuestsOpenOrSetuidModes()
    {
        var id = await CreateWorkspaceAsync();
        var setup = await PyroCli.RunAsync("workspace", "exec", id, "--", "sh", "-c",
            "mkdir -m 1777 shared && echo x > shared/open && chmod 0666 shared/open && echo y > tool && chmod 4777 tool " +
            "&& echo z > single && chmod 0777 single && mkdir -m 2775 group && mkfifo pipe");
        Assert.True(setup.ExitCode == 0, setup.ToString());

        var tree = Path.Combine(HostDir, "tree");
        var exported = await PyroCli.RunAsync("workspace", "export", id, ".", "--output", tree);
        var single = Path.Combine(HostDir, "single");
        var exportedFile = await PyroCli.RunAsync("workspace", "export", id, "single", "--output", single);

        Assert.True(exported.ExitCode == 0, exported.ToString());
        Assert.True(exportedFile.ExitCode == 0, exportedFile.ToString());
        var paths = Directory.EnumerateFileSystemEntries(tree, "*", SearchOption.AllDirectories).Append(tree).Append(single).ToList();
        Assert.Contains(Path.Combine(tree, "shared", "open"), paths);
        Assert.Contains(Path.Combine(tree, "tool"), paths);
        Assert.DoesNotContain(Path.Combine(tree, "pipe"), paths);
        var open = paths.Where(p => ((int)File.GetUnixFileMode(p) & 0xE12) != 0).Select(p => $"{p} {Convert.ToString((int)File.GetUnixFileMode(p), 8)}").ToList();
        Assert.Empty(open);
        Assert.Equal("y\n", File.ReadAllText(Path.Combine(tree, "tool")));
    }
}
