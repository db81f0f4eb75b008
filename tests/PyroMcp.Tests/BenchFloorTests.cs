using PyroMcp.Host;
using PyroMcp.Vmm;

namespace PyroMcp.Tests;

/// <summary>The bench's bare boot uses the runtime's QEMU command line; only the guest's init is told to stop early.</summary>
public sealed class BenchFloorTests
{
    [Theory]
    [InlineData(Accelerator.Tcg, null)]
    [InlineData(Accelerator.Kvm, "pyro-qemu")]
    public void TheBareLineIsTheRuntimesWithPyroBareOnTheKernelCommandLine(Accelerator accelerator, string? runAs)
    {
        var launch = new QemuLaunch("0123456789ab", new VmSpec(1, 1024, accelerator), "/k/vmlinuz", "/k/initrd", "/vm/disk.qcow2", "/vm/agent.sock", runAs);
        var runtime = QemuCommandLine.Build(launch);
        var bare = QemuCommandLine.Build(launch with { Bare = true });

        var append = runtime.ToList().IndexOf("-append") + 1;
        Assert.Equal(runtime[append] + " pyro.bare=1", bare[append]);
        Assert.Equal(runtime.Where((_, i) => i != append), bare.Where((_, i) => i != append));
    }
}
