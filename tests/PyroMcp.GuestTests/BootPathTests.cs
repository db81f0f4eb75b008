namespace PyroMcp.GuestTests;

/// <summary>
/// What the cold path was trimmed of (src/PyroMcp/Runtime/init.sh, the kernel command line) and
/// what it must still give the guest. The network side (drivers loaded and a lease taken with
/// <c>--network</c>) is in <see cref="NetworkTests"/>.
/// </summary>
public sealed class BootPathTests : GuestTest
{
    /// <summary>
    /// A guest without a network device loads no network driver (~100 ms of every boot under
    /// TCG), and still has its block and agent drivers, its runtime under /run/pyro (shown from
    /// the initramfs, not copied), its host name from the command line, and its devpts.
    /// </summary>
    [Fact]
    public async Task AGuestWithoutANetworkLoadsNoNetworkDriverAndKeepsItsRuntime()
    {
        const string script =
            "for m in virtio_blk virtio_console failover net_failover virtio_net; do echo \"module $m $(grep -c \"^$m \" /proc/modules)\"; done; "
            + "for f in pyro-agent tini busybox lib/ld-linux-x86-64.so.2 lib/libc.so.6; do test -x /run/pyro/$f && echo \"runtime $f\"; done; "
            + "echo \"hostname $(hostname)\"; test -c /dev/pts/ptmx && echo devpts; "
            + "echo \"cmdline $(cat /proc/cmdline)\"";
        var result = await PyroCli.RunAsync(["run", "debian:12", "--", "sh", "-c", script], timeout: TimeSpan.FromMinutes(5));
        Assert.True(result.ExitCode == 0, result.ToString());
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);

        Assert.Contains("module virtio_blk 1", lines);
        Assert.Contains("module virtio_console 1", lines);
        var netModules = lines.Where(l => l.StartsWith("module ", StringComparison.Ordinal) && l.Split(' ')[1] is "failover" or "net_failover" or "virtio_net").ToList();
        Assert.Equal(3, netModules.Count);
        Assert.All(netModules, l => Assert.EndsWith(" 0", l, StringComparison.Ordinal));

        var runtime = lines.Where(l => l.StartsWith("runtime ", StringComparison.Ordinal)).ToList();
        Assert.Equal(5, runtime.Count);
        Assert.Matches("^hostname pyro-[0-9a-f]{12}$", Assert.Single(lines, l => l.StartsWith("hostname ", StringComparison.Ordinal)));
        Assert.Contains("devpts", lines);

        // The self-tests are off; no hardening is (mitigations=off would be).
        var cmdline = Assert.Single(lines, l => l.StartsWith("cmdline ", StringComparison.Ordinal));
        Assert.Contains(" cryptomgr.notests", cmdline, StringComparison.Ordinal);
        Assert.DoesNotContain("mitigations", cmdline, StringComparison.Ordinal);
        Assert.DoesNotContain("init_on_", cmdline, StringComparison.Ordinal);

    }
}
