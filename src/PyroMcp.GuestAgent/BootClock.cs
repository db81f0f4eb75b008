using System.Globalization;
using System.Runtime.InteropServices;

namespace PyroMcp.GuestAgent;

/// <summary>
/// What only the guest knows about its own boot: times since the kernel started, from /proc.
/// The host places them on its own clock (PyroMcp.Vmm.BootPhases). Every read is best effort:
/// a missing or odd /proc gives null, never an error, since hello must not fail over a figure.
/// </summary>
internal static partial class BootClock
{
    private const int ScClkTck = 2;

    [LibraryImport("libc", EntryPoint = "sysconf")]
    private static partial long SysConf(int name);

    /// <summary>Milliseconds since the kernel started (first field of /proc/uptime, in seconds).</summary>
    internal static long? UptimeMs() => ParseUptimeMs(TryRead("/proc/uptime"));

    /// <summary>When process <paramref name="pid"/> (or "self") started, in ms since the kernel started.</summary>
    internal static long? ProcessStartMs(string pid) => ParseStartMs(TryRead($"/proc/{pid}/stat"), ClockTicks());

    internal static long? ParseUptimeMs(string? text)
    {
        var first = text?.Split(' ', 2)[0];
        return double.TryParse(first, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds >= 0
            ? (long)(seconds * 1000)
            : null;
    }

    /// <summary>
    /// Field 22 of /proc/PID/stat, starttime in clock ticks. The command name (field 2) is in
    /// parentheses and may itself hold spaces and parentheses, so fields are counted from the
    /// last ')'; the field after it is field 3.
    /// </summary>
    internal static long? ParseStartMs(string? stat, long ticksPerSecond)
    {
        if (stat is null || ticksPerSecond <= 0)
        {
            return null;
        }

        var close = stat.LastIndexOf(')');
        if (close < 0)
        {
            return null;
        }

        var fields = stat[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        const int startTimeIndex = 22 - 3;
        return fields.Length > startTimeIndex && long.TryParse(fields[startTimeIndex], NumberStyles.None, CultureInfo.InvariantCulture, out var ticks)
            ? ticks * 1000 / ticksPerSecond
            : null;
    }

    private static long ClockTicks()
    {
        try
        {
            var ticks = SysConf(ScClkTck);
            return ticks > 0 ? ticks : 100;
        }
        catch (EntryPointNotFoundException)
        {
            return 100;
        }
    }

    private static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
