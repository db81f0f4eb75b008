using PyroMcp.Host;
using PyroMcp.Runtime;
using PyroMcp.Vmm;

namespace PyroMcp.Tests;

/// <summary>
/// What QEMU's command line does for the host memory an idle workspace costs: a TCG translation
/// cache sized for the guest instead of QEMU's 1 GiB default, and a balloon device with free-page
/// reporting so the pages a guest frees go back to the host.
/// </summary>
public sealed class QemuDensityTests
{
    private static QemuLaunch Launch(Accelerator accelerator, int memMib, string id = "0123456789ab", string? runAs = null, string? network = null)
        => new(id, new VmSpec(2, memMib, accelerator), "/k/vmlinuz", "/k/initrd", "/vm/disk.qcow2", "/vm/agent.sock", runAs, NetworkSocketPath: network, TscKhz: 2_000_000);

    private static List<string> ValuesOf(IReadOnlyList<string> args, string option)
        => args.Select((a, i) => (a, i)).Where(p => p.a == option && p.i + 1 < args.Count).Select(p => args[p.i + 1]).ToList();

    [Theory]
    [InlineData(128)]
    [InlineData(256)]
    [InlineData(512)]
    [InlineData(1024)]
    [InlineData(2048)]
    [InlineData(4096)]
    [InlineData(65536)]
    public void TcgGetsATranslationCacheSizedForTheGuest(int memMib)
    {
        var accel = Assert.Single(ValuesOf(QemuCommandLine.Build(Launch(Accelerator.Tcg, memMib)), "-accel"));
        var tbSize = QemuCommandLine.TcgTranslationCacheMib(memMib);

        Assert.Equal($"tcg,thread=multi,tb-size={tbSize}", accel);
        // Never QEMU's default (1 GiB, of which a busy guest dirties hundreds of MiB), never so
        // small that a compiler's working set of translated code no longer fits and is retranslated.
        Assert.InRange(tbSize, QemuCommandLine.MinTcgTranslationCacheMib, QemuCommandLine.MaxTcgTranslationCacheMib);
        Assert.True(QemuCommandLine.MaxTcgTranslationCacheMib < 1024);
    }

    [Fact]
    public void TheTranslationCacheGrowsWithTheGuestAndStopsAtItsBounds()
    {
        var sizes = new[] { 128, 256, 512, 1024, 2048, 4096, 8192, 65536 }.Select(QemuCommandLine.TcgTranslationCacheMib).ToList();

        Assert.Equal(sizes.Order(), sizes);
        Assert.Equal(QemuCommandLine.MinTcgTranslationCacheMib, sizes[0]);
        Assert.Equal(QemuCommandLine.MaxTcgTranslationCacheMib, sizes[^1]);
        Assert.True(sizes.Distinct().Count() > 2, "the cache size does not depend on the guest's memory: " + string.Join(", ", sizes));
    }

    [Fact]
    public void KvmHasNoTranslationCacheOption()
    {
        var accel = Assert.Single(ValuesOf(QemuCommandLine.Build(Launch(Accelerator.Kvm, 1024)), "-accel"));

        Assert.Equal("kvm", accel);
    }

    [Theory]
    [InlineData(Accelerator.Tcg)]
    [InlineData(Accelerator.Kvm)]
    public void EveryVmHasOneBalloonWithFreePageReporting(Accelerator accelerator)
    {
        var devices = ValuesOf(QemuCommandLine.Build(Launch(accelerator, 1024)), "-device");

        // A virtio-mmio device (microvm has no PCI), with reporting on and nothing that inflates it
        // or polls the guest: the guest only hands back pages it freed.
        Assert.Equal("virtio-balloon-device,free-page-reporting=on", Assert.Single(devices, d => d.StartsWith("virtio-balloon", StringComparison.Ordinal)));
    }

    [Fact]
    public void AKernelCacheFromBeforeTheBalloonIsCompletedNotTrusted()
    {
        // The bundle carries virtio_balloon and init.sh loads it; a kernel cached by an older pyro
        // has every module but that one, and must be completed rather than taken as it is.
        Assert.Contains("virtio_balloon", RuntimeBundle.Modules);
        var dir = Directory.CreateTempSubdirectory("pyro-kernel-cache-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(dir, "modules"));
            foreach (var module in RuntimeBundle.Modules.Where(m => m != "virtio_balloon"))
            {
                File.WriteAllBytes(Path.Combine(dir, "modules", module + ".ko"), [0]);
            }

            Assert.Equal(["virtio_balloon"], RuntimeBundle.MissingModules(dir));
            File.WriteAllBytes(Path.Combine(dir, "modules", "virtio_balloon.ko"), [0]);
            Assert.Empty(RuntimeBundle.MissingModules(dir));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void TheDeviceSetIsTheSameOnEveryStartOfTheSameShape()
    {
        // A saved memory image restores only into a QEMU with the same devices in the same order:
        // the device list may depend on the VM's shape (network or not), never on its id, its user or its paths.
        foreach (var network in new[] { null, "/vm/passt.sock" })
        {
            var first = QemuCommandLine.Build(Launch(Accelerator.Tcg, 1024, "0123456789ab", null, network));
            var second = QemuCommandLine.Build(Launch(Accelerator.Tcg, 1024, "ba9876543210", "pyro-qemu", network) with { DiskPath = "/other/disk.qcow2", AgentSocketPath = "/other/agent.sock" });

            Assert.Equal(ValuesOf(first, "-device"), ValuesOf(second, "-device"));
            Assert.Equal(ValuesOf(first, "-accel"), ValuesOf(second, "-accel"));
            Assert.Equal(ValuesOf(first, "-m"), ValuesOf(second, "-m"));
        }
    }
}
