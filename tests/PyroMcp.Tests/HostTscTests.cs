using PyroMcp.Host;
using PyroMcp.Vmm;

namespace PyroMcp.Tests;

/// <summary>A TCG guest is told the host's TSC rate, which is the rate its TSC runs at.</summary>
public sealed class HostTscTests
{
    private const string Epyc = """
        processor	: 0
        vendor_id	: AuthenticAMD
        model name	: AMD EPYC
        cpu MHz		: 2445.402
        flags		: fpu vme de pse tsc msr pae constant_tsc rep_good nopl nonstop_tsc cpuid tsc_known_freq
        bogomips	: 4890.80

        processor	: 1
        flags		: fpu
        bogomips	: 1.00

        """;

    [Fact]
    public void TheRateIsTheFirstProcessorsBogoMipsOver2()
        => Assert.Equal(2_445_400, HostTsc.FromCpuInfo(Epyc));

    [Theory]
    [InlineData("flags\t\t: fpu tsc nonstop_tsc\nbogomips\t: 4890.80\n")]
    [InlineData("flags\t\t: fpu tsc constant_tsc\nbogomips\t: 4890.80\n")]
    [InlineData("flags\t\t: constant_tsc nonstop_tsc\nbogomips\t: lots\n")]
    [InlineData("flags\t\t: constant_tsc nonstop_tsc\nbogomips\t: 50.00\n")]
    [InlineData("flags\t\t: constant_tsc nonstop_tsc\nbogomips\t: 90000.00\n")]
    [InlineData("flags\t\t: constant_tsc nonstop_tsc\n")]
    [InlineData("")]
    public void AnUnknownOrImplausibleRateIsNull(string cpuinfo)
        => Assert.Null(HostTsc.FromCpuInfo(cpuinfo));

    [Fact]
    public void ATcgGuestIsToldTheRateAndAKvmGuestNothing()
    {
        var tcg = new QemuLaunch("0123456789ab", new VmSpec(1, 512, Accelerator.Tcg), "/k", "/i", "/d", "/s", null, TscKhz: 2_445_400);
        Assert.Contains("tsc_early_khz=2445400", Append(tcg));
        Assert.Contains($"tsc_early_khz={HostTsc.Khz}", Append(tcg with { TscKhz = null }));
        Assert.DoesNotContain(Append(tcg with { Spec = new VmSpec(1, 512, Accelerator.Kvm) }), a => a.StartsWith("tsc_early_khz", StringComparison.Ordinal));
    }

    private static string[] Append(QemuLaunch launch)
    {
        var args = QemuCommandLine.Build(launch);
        return args[args.ToList().IndexOf("-append") + 1].Split(' ');
    }
}
