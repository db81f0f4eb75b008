using System.Globalization;

namespace PyroMcp.Vmm;

/// <summary>
/// The host's TSC rate in kHz. Under TCG the guest's RDTSC reads the host's counter, so this is
/// the rate the guest must assume for its clock to keep time.
/// </summary>
internal static class HostTsc
{
    /// <summary>What a host whose rate cannot be read gets: the figure pyro always passed before.</summary>
    internal const long FallbackKhz = 2_000_000;

    private static readonly Lazy<long> Cached = new(Read);

    internal static long Khz => Cached.Value;

    /// <summary>
    /// The rate from /proc/cpuinfo's first processor. x86 Linux takes the delay loop from the TSC
    /// when the TSC has a fixed rate (lpj = tsc_khz * 1000 / HZ), so its BogoMIPS are tsc_khz / 500
    /// to 5 kHz. Null unless the TSC is constant and non-stop and the figure is plausible.
    /// </summary>
    internal static long? FromCpuInfo(string cpuinfo)
    {
        string? flags = null;
        string? bogomips = null;
        foreach (var line in cpuinfo.Split('\n'))
        {
            if (line.Trim().Length == 0 && (flags is not null || bogomips is not null))
            {
                break;
            }

            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0)
            {
                continue;
            }

            switch (line[..colon].Trim())
            {
                case "flags": flags ??= line[(colon + 1)..]; break;
                case "bogomips": bogomips ??= line[(colon + 1)..].Trim(); break;
            }
        }

        var set = flags?.Split(' ', StringSplitOptions.RemoveEmptyEntries) ?? [];
        if (!set.Contains("constant_tsc") || !set.Contains("nonstop_tsc")
            || !double.TryParse(bogomips, NumberStyles.Float, CultureInfo.InvariantCulture, out var mips))
        {
            return null;
        }

        var khz = (long)Math.Round(mips * 500);
        return khz is >= 500_000 and <= 10_000_000 ? khz : null;
    }

    private static long Read()
    {
        try
        {
            return FromCpuInfo(File.ReadAllText("/proc/cpuinfo")) ?? FallbackKhz;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return FallbackKhz;
        }
    }
}
