using System.Diagnostics;

namespace PyroMcp.GuestTests;

/// <summary>
/// The host's walls against a real guest and a real CLI: what a guest exports never arrives
/// group- or world-writable or setuid, and a run directory another user planted stops pyro
/// before any VM starts or anything is written through it.
/// </summary>
public sealed class HostFileWallsTests : GuestTest
{
    private readonly string _host = Directory.CreateTempSubdirectory("pyro-walls-test-").FullName;
    private string? _id;

    public override async Task DisposeAsync()
    {
        if (_id is not null)
        {
            await Cli.RunAsync("workspace", "delete", _id);
        }

        Directory.Delete(_host, recursive: true);
        await base.DisposeAsync();
    }

    [Fact]
    public async Task ExportedFilesAndDirectoriesNeverKeepTheGuestsOpenOrSetuidModes()
    {
        var created = await Cli.RunAsync(["workspace", "create", "debian:12", "--id-only"], timeout: TimeSpan.FromMinutes(5));
        Assert.True(created.ExitCode == 0, created.ToString());
        _id = created.Stdout.Trim();
        var setup = await Cli.RunAsync("workspace", "exec", _id, "--", "sh", "-c",
            "mkdir -m 1777 shared && echo x > shared/open && chmod 0666 shared/open && echo y > tool && chmod 4777 tool " +
            "&& echo z > single && chmod 0777 single && mkdir -m 2775 group && mkfifo pipe");
        Assert.True(setup.ExitCode == 0, setup.ToString());

        var tree = Path.Combine(_host, "tree");
        var exported = await Cli.RunAsync("workspace", "export", _id, ".", "--output", tree);
        var single = Path.Combine(_host, "single");
        var exportedFile = await Cli.RunAsync("workspace", "export", _id, "single", "--output", single);

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

    [Fact]
    public async Task ARunDirectoryPlantedByAnotherUserStopsPyroBeforeAnyVm()
    {
        var planted = Directory.CreateDirectory(Path.Combine(_host, "planted-run")).FullName;
        using (var chown = Process.Start("chown", ["65534:65534", planted]))
        {
            await chown.WaitForExitAsync();
            Assert.Equal(0, chown.ExitCode);
        }

        var result = await Cli.RunAsync(["run", "debian:12", "--", "true"], new Dictionary<string, string> { ["PYRO_RUN_DIR"] = planted }, TimeSpan.FromMinutes(5));

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("unsafe_directory", result.Stderr);
        Assert.Contains(planted, result.Stderr);
        Assert.Empty(Directory.GetFileSystemEntries(planted));
    }
}
