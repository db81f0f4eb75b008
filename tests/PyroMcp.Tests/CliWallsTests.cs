namespace PyroMcp.Tests;

/// <summary>
/// The host's walls as the CLI shows them, with no guest: how doctor says QEMU is confined, no
/// QEMU means failing closed unless host compat is allowed, and a run directory another user
/// planted stops pyro before any VM starts or anything is written through it.
/// </summary>
public sealed class CliWallsTests : NoGuestTest
{
    private readonly TempDir _host = new("pyro-cli-walls-");

    public override async Task DisposeAsync()
    {
        _host.Dispose();
        await base.DisposeAsync();
    }

    [Fact]
    public async Task DoctorSaysHowQemuIsConfined()
    {
        Assert.True(Environment.IsPrivilegedProcess, "this test checks the root path; the suite runs as root here and in CI");
        var dedicated = File.ReadLines("/etc/passwd").Any(l => l.StartsWith("pyro-qemu:", StringComparison.Ordinal));
        var json = (await PyroCli.OkAsync("doctor", "--json")).Json.GetProperty("qemu_confinement");
        Assert.Equal("on,obsolete=deny,spawn=deny,resourcecontrol=deny", json.GetProperty("sandbox").GetString());
        Assert.Equal(dedicated ? "pyro-qemu" : "nobody", json.GetProperty("runs_as").GetString());
        Assert.Equal(dedicated, json.GetProperty("dedicated_user").GetBoolean());
        Assert.True(json.GetProperty("pid_namespace").GetBoolean());

        var text = await PyroCli.OkAsync("doctor");
        Assert.Contains($"QEMU confinement: sandbox=on,obsolete=deny,spawn=deny,resourcecontrol=deny runs_as={(dedicated ? "pyro-qemu (dedicated user)" : "nobody (shared user)")} pid_namespace=yes", text.Stdout);
        Assert.Equal(!dedicated, text.Stdout.Contains("useradd --system", StringComparison.Ordinal));
    }

    [Fact]
    public async Task WithoutAGuestItFailsClosedUnlessHostCompatIsAllowed()
    {
        var noQemu = new Dictionary<string, string> { ["PYRO_QEMU"] = "/nonexistent/qemu-system-x86_64" };

        var closed = await PyroCli.RunAsync(["run", "debian:12", "--", "sh", "-c", "echo ran > /tmp/pyro-host-compat-marker"], noQemu);
        Assert.Equal(1, closed.ExitCode);
        Assert.Contains("PYRO_QEMU points to /nonexistent/qemu-system-x86_64", closed.Stderr);
        Assert.DoesNotContain("phase=host_compat", closed.Stderr);

        var compat = await PyroCli.RunAsync(["run", "debian:12", "--allow-host-compat", "--json", "--", "cat", "/proc/sys/kernel/osrelease"], noQemu);
        Assert.True(compat.ExitCode == 0, compat.ToString());
        Assert.Contains("phase=host_compat", compat.Stderr);
        Assert.Contains("without isolation", compat.Stderr);
        Assert.Equal("host_compat", compat.Json.GetProperty("execution_mode").GetString());
        Assert.Equal(File.ReadAllText("/proc/sys/kernel/osrelease"), compat.Json.GetProperty("stdout").GetString());
    }

    [Fact]
    public async Task ARunDirectoryPlantedByAnotherUserStopsPyroBeforeAnyVm()
    {
        var planted = Directory.CreateDirectory(Path.Combine(_host.Path, "planted-run")).FullName;
        Processes.Check("chown", ["65534:65534", planted]);

        var result = await PyroCli.RunAsync(["run", "debian:12", "--", "true"], new Dictionary<string, string> { ["PYRO_RUN_DIR"] = planted }, TimeSpan.FromMinutes(5));

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("unsafe_directory", result.Stderr);
        Assert.Contains(planted, result.Stderr);
        Assert.Empty(Directory.GetFileSystemEntries(planted));
    }
}
