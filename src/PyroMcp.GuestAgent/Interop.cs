using System.Runtime.InteropServices;

namespace PyroMcp.GuestAgent;

/// <summary>The few libc calls .NET does not expose: process-group kill, clock, power.</summary>
internal static partial class Interop
{
    internal const int SIGKILL = 9;
    private const int ClockRealtime = 0;
    private const int RebootCmdRestart = 0x01234567;

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int KillNative(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "clock_settime", SetLastError = true)]
    private static partial int ClockSetTime(int clockId, in Timespec time);

    [LibraryImport("libc", EntryPoint = "sync")]
    internal static partial void Sync();

    [LibraryImport("libc", EntryPoint = "reboot", SetLastError = true)]
    private static partial int RebootNative(int command);

    /// <summary>Signals every process in the group led by <paramref name="processGroup"/>.</summary>
    internal static void KillGroup(int processGroup, int signal)
    {
        // ESRCH just means the group is already gone.
        _ = KillNative(-processGroup, signal);
    }

    internal static string? SetClock(long unixTimeMs)
    {
        var time = new Timespec { Seconds = unixTimeMs / 1000, Nanoseconds = unixTimeMs % 1000 * 1_000_000 };
        return ClockSetTime(ClockRealtime, time) == 0 ? null : $"clock_settime failed: errno {Marshal.GetLastPInvokeError()}";
    }

    /// <summary>
    /// Restarts the guest. The VMM runs with -no-reboot and the kernel with reboot=t, so a
    /// restart ends the VM: that needs no ACPI, which the microvm machine may not have.
    /// </summary>
    internal static void Reboot()
    {
        Sync();
        _ = RebootNative(RebootCmdRestart);
    }
}
