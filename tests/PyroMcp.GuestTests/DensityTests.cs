using System.Diagnostics;
using System.Globalization;
using System.Text;
using PyroMcp.Host;
using PyroMcp.Protocol;
using PyroMcp.Runtime;
using PyroMcp.Vmm;

namespace PyroMcp.GuestTests;

/// <summary>
/// Free-page reporting on a real guest: its virtio_balloon driver is bound to QEMU's balloon with
/// reporting negotiated, and memory the guest touched and then freed leaves QEMU's RSS. One boot.
/// </summary>
public sealed class DensityTests : GuestTest
{
    private const int FillMib = 384;

    /// <summary>VIRTIO_BALLOON_F_REPORTING: the driver takes free-page reporting (bit 5 of the negotiated features).</summary>
    private const int ReportingFeatureBit = 5;

    [Fact]
    public async Task TheBalloonDriverIsBoundAndMemoryTheGuestFreesLeavesQemu()
    {
        var options = PyroScratch.Options;
        var environment = await new Pyro(options).PullEnvironmentAsync("debian:12");
        var bundle = await RuntimeBundle.EnsureAsync(options, null, CancellationToken.None);
        Assert.Contains("virtio_balloon", bundle.Manifest.Modules);
        var accelerator = KvmProbe.Detect().Choose(options.Accelerator).Chosen;
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var vm = await QemuVm.StartAsync(QemuVm.NewId(), new VmSpec(1, 1024, accelerator), environment.RootfsImage, bundle, options, deadline.Token);
        await using var vmScope = vm;
        vm.DiscardOnDispose = true;
        var pid = vm.QemuPid ?? throw new Xunit.Sdk.XunitException("QEMU has no pid");

        // The driver has a device, and the features it negotiated with QEMU include reporting.
        var bound = (await ExecAsync(vm, "for d in /sys/bus/virtio/drivers/virtio_balloon/virtio*; do [ -e \"$d/features\" ] && echo \"${d##*/} $(cat \"$d/features\")\"; done; true", deadline.Token)).Trim();
        var fields = bound.Split(' ');
        Assert.True(fields.Length == 2 && fields[1].Length > ReportingFeatureBit, "no virtio_balloon device is bound in the guest: '" + bound + "'\n" + vm.ConsoleTail());
        Assert.True(fields[1][ReportingFeatureBit] == '1', $"the balloon is bound without free-page reporting (features {fields[1]})");

        // Touch: a tmpfs file holds FillMib of guest pages, so QEMU has to back them.
        var idle = RssMib(pid);
        await ExecAsync(vm, $"mkdir -p /mnt/density && mount -t tmpfs -o size={FillMib + 64}m tmpfs /mnt/density && dd if=/dev/zero of=/mnt/density/fill bs=1M count={FillMib} 2>&1", deadline.Token);
        var filled = RssMib(pid);
        Assert.True(filled - idle >= FillMib / 2, $"writing {FillMib} MiB in the guest took QEMU's RSS only from {idle} to {filled} MiB: the test cannot see pages come back");

        // Free: the guest drops the file; its balloon reports the free blocks and QEMU discards them.
        await ExecAsync(vm, "rm /mnt/density/fill && umount /mnt/density", deadline.Token);
        var target = filled - (filled - idle) / 2;
        var clock = Stopwatch.StartNew();
        var freed = RssMib(pid);
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token);
        wait.CancelAfter(TimeSpan.FromSeconds(90));
        while (freed > target && !wait.IsCancellationRequested)
        {
            await Task.Delay(250, CancellationToken.None);
            freed = RssMib(pid);
        }

        Assert.True(freed <= target, $"QEMU's RSS stayed at {freed} MiB for 90 s after the guest freed {FillMib} MiB (idle {idle} MiB, filled {filled} MiB)");
        Figures.Record("free-page reporting", string.Create(CultureInfo.InvariantCulture,
            $"balloon {fields[0]} bound with reporting; QEMU RSS {idle} MiB idle, {filled} MiB with {FillMib} MiB written in the guest, {freed} MiB {clock.Elapsed.TotalSeconds:F1} s after the guest freed it ({filled - freed} of {filled - idle} MiB given back)"));
    }

    private static long RssMib(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024;
            }
        }

        throw new Xunit.Sdk.XunitException($"/proc/{pid}/status has no VmRSS");
    }

    private static async Task<string> ExecAsync(QemuVm vm, string script, CancellationToken cancellationToken)
    {
        var stdout = new StringBuilder();
        var exit = await vm.Agent.ExecAsync(new ExecRequest { Argv = ["/bin/sh", "-c", script], Cwd = "/", TimeoutMs = 120_000 },
            data => { stdout.Append(Encoding.UTF8.GetString(data.Span)); return ValueTask.CompletedTask; },
            data => { stdout.Append(Encoding.UTF8.GetString(data.Span)); return ValueTask.CompletedTask; }, 1 << 20, cancellationToken);
        Assert.True(exit.ExitCode == 0, $"'{script}' exited {exit.ExitCode}\n{stdout}");
        return stdout.ToString();
    }
}
