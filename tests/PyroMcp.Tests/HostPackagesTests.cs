using PyroMcp.Host;

namespace PyroMcp.Tests;

/// <summary>scripts/host-packages.txt is the one list of host tools: the SDK embeds it and scripts/host-setup.sh reads it.</summary>
public sealed class HostPackagesTests
{
    private static string ListFile => Path.Combine(Repo.Root, "scripts", "host-packages.txt");

    [Fact]
    public void TheSdkEmbedsTheListInTheCheckout()
    {
        Assert.Equal(File.ReadAllText(ListFile), HostTools.ReadPackageList());
        Assert.Equal(HostTools.Parse(File.ReadAllText(ListFile)).Select(t => t.Name), HostTools.All.Select(t => t.Name));
        Assert.Equal("PYRO_QEMU", HostTools.Qemu.OverrideVariable);
        Assert.Equal(["/bin/busybox", "/usr/bin/busybox"], HostTools.Busybox.Candidates);
    }

    [Fact]
    public async Task HostSetupReadsTheListAsTheSdkDoes()
    {
        var script = Path.Combine(Repo.Root, "scripts", "host-setup.sh");
        var result = await Processes.RunAsync("bash", ["-c", $"set -euo pipefail; source '{script}'; pyro_host_tools"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(
            HostTools.All.Select(t => $"{t.Name}|{t.Package}|{string.Join(' ', t.Candidates)}"),
            result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void HostSetupCreatesTheUserQemuDropsTo()
    {
        var script = File.ReadAllText(Path.Combine(Repo.Root, "scripts", "host-setup.sh"));
        Assert.Contains($"getent passwd {HostTools.DedicatedQemuUser} ", script);
        Assert.Contains($"useradd --system --no-create-home --shell /usr/sbin/nologin {HostTools.DedicatedQemuUser}\n", script);
    }

    [Theory]
    [InlineData("tool | pkg | a b |  | VAR", "tool", "pkg", "a,b", "", "VAR")]
    [InlineData("  busybox (static) | busybox-static | /bin/busybox | the shell |  ", "busybox (static)", "busybox-static", "/bin/busybox", "the shell", null)]
    public void ALineIsNamePackageCandidatesPurposeOverride(string line, string name, string package, string candidates, string purpose, string? variable)
    {
        var tool = Assert.Single(HostTools.Parse($"# comment\n\n{line}\n"));
        Assert.Equal((name, package, candidates, purpose, variable), (tool.Name, tool.Package, string.Join(',', tool.Candidates), tool.Purpose, tool.OverrideVariable));
    }

    [Theory]
    [InlineData("just-a-name")]
    [InlineData("name | package | candidates | purpose")]
    [InlineData(" | package | candidates | purpose | ")]
    public void AMalformedLineIsAnError(string line)
        => Assert.Throws<InvalidOperationException>(() => HostTools.Parse(line));
}
