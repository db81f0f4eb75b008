using System.Runtime.InteropServices;

namespace PyroMcp.GuestAgent;

/// <summary>The few libc calls .NET does not expose: process-group kill, clock, power, lstat, link, realpath.</summary>
internal static partial class Interop
{
    private const int ENOENT = 2;
    private const int ENOTDIR = 20;
    private const int ENAMETOOLONG = 36;

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

    [LibraryImport("libc", EntryPoint = "lstat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int LStatNative(string path, ref byte buffer);

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

    /// <summary>
    /// What is at <paramref name="path"/> itself, never following a final symlink; null when
    /// nothing is there. .NET exposes no file type beyond directory/link, and fifos and devices
    /// must be told apart from regular files before anything opens them.
    /// </summary>
    internal static FileStat? LStat(string path)
    {
        // struct stat on x86_64 Linux: 144 bytes; st_mode (u32) at 24, st_size at 48, st_mtim at 88.
        Span<byte> buffer = stackalloc byte[144];
        if (LStatNative(path, ref buffer[0]) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno switch
            {
                ENOENT or ENOTDIR => null,
                ENAMETOOLONG => throw new PathTooLongException($"lstat {path}: name too long"),
                _ => throw new IOException($"lstat {path} failed: errno {errno}"),
            };
        }

        var mode = BitConverter.ToUInt32(buffer[24..]);
        var kind = (mode & 0xF000) switch
        {
            0x8000 => FileKind.File,
            0x4000 => FileKind.Directory,
            0xA000 => FileKind.Symlink,
            _ => FileKind.Other,
        };
        var modified = DateTimeOffset.FromUnixTimeSeconds(BitConverter.ToInt64(buffer[88..]))
            .AddTicks(BitConverter.ToInt64(buffer[96..]) / 100);
        return new FileStat(kind, (int)(mode & 0xFFF), BitConverter.ToInt64(buffer[48..]), modified);
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

internal enum FileKind
{
    File,
    Directory,
    Symlink,
    /// <summary>A fifo, socket or device node.</summary>
    Other,
}

/// <param name="Mode">Permission bits (st_mode &amp; 07777).</param>
internal readonly record struct FileStat(FileKind Kind, int Mode, long Size, DateTimeOffset Modified);
