using System.Runtime.InteropServices;

namespace PyroMcp.GuestAgent;

/// <summary>The few libc calls .NET does not expose: process-group kill, clock, power, lstat, link, realpath.</summary>
internal static partial class Interop
{
    private const int ENOENT = 2;
    private const int ENOTDIR = 20;

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


    [LibraryImport("libc", EntryPoint = "mount", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int MountNative(string source, string target, string type, nuint flags, string data);

    /// <summary>Mounts a fresh tmpfs (nosuid, nodev, noexec) on <paramref name="target"/>; returns errno, 0 on success.</summary>
    internal static int MountTmpfs(string target, string data)
    {
        const nuint MsNoSuid = 2;
        const nuint MsNoDev = 4;
        const nuint MsNoExec = 8;
        return MountNative("tmpfs", target, "tmpfs", MsNoSuid | MsNoDev | MsNoExec, data) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    [LibraryImport("libc", EntryPoint = "link", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int LinkNative(string existing, string created);

    [LibraryImport("libc", EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial nint RealPathNative(string path, nint resolved);

    [LibraryImport("libc", EntryPoint = "free")]
    private static partial void Free(nint pointer);

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


    /// <summary>Makes a hard link; .NET has no API for it.</summary>
    internal static void Link(string existing, string created)
    {
        if (LinkNative(existing, created) != 0)
        {
            throw new IOException($"link {created} failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    /// <summary>The canonical path with every symlink resolved, or null when some component does not exist.</summary>
    internal static string? RealPath(string path)
    {
        var resolved = RealPathNative(path, 0);
        if (resolved == 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno is ENOENT or ENOTDIR ? null : throw new IOException($"realpath {path} failed: errno {errno}");
        }

        try
        {
            return Marshal.PtrToStringUTF8(resolved);
        }
        finally
        {
            Free(resolved);
        }
    }
}


