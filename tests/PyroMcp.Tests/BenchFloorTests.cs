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

    /// <summary>The idle-memory floor is the bare line with the idle form of the flag: a shell that sleeps instead of powering off.</summary>
    [Fact]
    public void TheIdleBareLineIsTheRuntimesWithPyroBareIdle()
    {
        var launch = new QemuLaunch("0123456789ab", new VmSpec(1, 1024, Accelerator.Tcg), "/k/vmlinuz", "/k/initrd", "/vm/disk.qcow2", "/vm/agent.sock", "pyro-qemu");
        var runtime = QemuCommandLine.Build(launch);
        var idle = QemuCommandLine.Build(launch with { Bare = true, BareIdle = true });

        var append = runtime.ToList().IndexOf("-append") + 1;
        Assert.Equal(runtime[append] + " pyro.bare=idle", idle[append]);
        Assert.DoesNotContain("pyro.bare=1", idle[append], StringComparison.Ordinal);
        Assert.Equal(runtime.Where((_, i) => i != append), idle.Where((_, i) => i != append));
    }

    /// <summary>
    /// The bench's qemu-ga peer adds one port named org.qemu.guest_agent.0 on its own socket (path
    /// escaped like every other) and room for it on the bus; nothing else moves, and the runtime's
    /// own line (no socket given) has no such port.
    /// </summary>
    [Fact]
    public void TheQemuGuestAgentPortIsOneMorePortOnItsOwnSocket()
    {
        var launch = new QemuLaunch("0123456789ab", new VmSpec(1, 1024, Accelerator.Tcg), "/k/vmlinuz", "/k/initrd", "/vm/disk.qcow2", "/vm/agent.sock", null);
        var runtime = QemuCommandLine.Build(launch);
        var peer = QemuCommandLine.Build(launch with { QemuGuestAgentSocketPath = "/vm/q,ga.sock" });

        Assert.DoesNotContain(runtime, a => a.Contains(QemuCommandLine.QemuGuestAgentPortName, StringComparison.Ordinal) || a.Contains("id=qga", StringComparison.Ordinal));
        Assert.Contains("virtio-serial-device,max_ports=2", runtime);
        var expected = runtime.Select(a => a == "virtio-serial-device,max_ports=2" ? "virtio-serial-device,max_ports=3" : a)
            .Concat(["-chardev", "socket,id=qga,path=/vm/q,,ga.sock,server=on,wait=off", "-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0"]);
        Assert.Equal(expected, peer);
    }
}
