using System.Runtime.InteropServices;

namespace PyroMcp.GuestAgent.Shells;

/// <summary>The libc calls a pseudo-terminal needs; .NET has none of them.</summary>
internal static unsafe partial class PtyInterop
{
    internal const int EINTR = 4;
    internal const int EIO = 5;
    internal const int EAGAIN = 11;

    private const int O_RDWR = 2;
    private const int O_NOCTTY = 0x100;
    private const int O_NONBLOCK = 0x800;
    private const int O_CLOEXEC = 0x80000;
    private const nuint TIOCSWINSZ = 0x5414;
    private const nuint TIOCGPGRP = 0x540F;
    internal const short POLLIN = 0x1;
    internal const short POLLOUT = 0x4;

    [StructLayout(LayoutKind.Sequential)]
    private struct WinSize
    {
        public ushort Rows;
        public ushort Cols;
        public ushort XPixels;
        public ushort YPixels;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", EntryPoint = "posix_openpt", SetLastError = true)]
    private static partial int PosixOpenPt(int flags);

    [LibraryImport("libc", EntryPoint = "grantpt", SetLastError = true)]
    private static partial int GrantPt(int fd);

    [LibraryImport("libc", EntryPoint = "unlockpt", SetLastError = true)]
    private static partial int UnlockPt(int fd);

    [LibraryImport("libc", EntryPoint = "ptsname_r")]
    private static partial int PtsNameR(int fd, byte* buffer, nuint length);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int IoctlWinSize(int fd, nuint request, WinSize* size);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int IoctlInt(int fd, nuint request, int* value);

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int OpenNative(string path, int flags);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static partial nint ReadNative(int fd, byte* buffer, nint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint WriteNative(int fd, byte* buffer, nint count);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static partial int PollNative(PollFd* fds, nuint count, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "mount", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int MountNative(string source, string target, string type, nuint flags, string data);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int CloseNative(int fd);

    /// <summary>
    /// A new PTY: the master (non-blocking, close-on-exec so no child inherits it) and the path
    /// of its slave, sized <paramref name="cols"/> by <paramref name="rows"/>.
    /// </summary>
    internal static (int Master, string SlavePath) OpenPty(int cols, int rows)
    {
        var master = PosixOpenPt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (master < 0)
        {
            throw new IOException($"posix_openpt failed: errno {Marshal.GetLastPInvokeError()}");
        }

        try
        {
            if (GrantPt(master) != 0 || UnlockPt(master) != 0)
            {
                throw new IOException($"grantpt/unlockpt failed: errno {Marshal.GetLastPInvokeError()}");
            }

            var buffer = stackalloc byte[128];
            var error = PtsNameR(master, buffer, 128);
            if (error != 0)
            {
                throw new IOException($"ptsname_r failed: errno {error}");
            }

            var size = new WinSize { Rows = (ushort)rows, Cols = (ushort)cols };
            if (IoctlWinSize(master, TIOCSWINSZ, &size) != 0)
            {
                throw new IOException($"TIOCSWINSZ failed: errno {Marshal.GetLastPInvokeError()}");
            }

            return (master, Marshal.PtrToStringUTF8((nint)buffer) ?? throw new IOException("ptsname_r returned nothing"));
        }
        catch
        {
            CloseNative(master);
            throw;
        }
    }

    /// <summary>
    /// Mounts devpts on /dev/pts when nothing is mounted there. The initramfs gives the guest a
    /// devtmpfs /dev only, and /dev/ptmx needs a devpts beside it: without one no PTY opens
    /// (for shells, nor for anything in the guest that wants a terminal). Returns what it did, for the log.
    /// </summary>
    internal static string? EnsureDevPts()
    {
        const nuint MsNoSuid = 2;
        const nuint MsNoExec = 8;
        try
        {
            if (File.ReadAllLines("/proc/self/mounts").Any(l => l.Split(' ') is [_, "/dev/pts", "devpts", ..]) || !File.Exists("/dev/ptmx"))
            {
                return null;
            }

            Directory.CreateDirectory("/dev/pts");
            return MountNative("devpts", "/dev/pts", "devpts", MsNoSuid | MsNoExec, "gid=5,mode=620,ptmxmode=666") == 0
                ? "mounted devpts on /dev/pts"
                : $"could not mount devpts on /dev/pts: errno {Marshal.GetLastPInvokeError()}";
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return "could not mount devpts on /dev/pts: " + ex.Message;
        }
    }

    /// <summary>Opens the slave without making it our controlling terminal.</summary>
    internal static int OpenSlave(string path)
    {
        var fd = OpenNative(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
        return fd >= 0 ? fd : throw new IOException($"open {path} failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>The foreground process group of the terminal, or 0 when it cannot be told.</summary>
    internal static int ForegroundGroup(int master)
    {
        int group;
        return IoctlInt(master, TIOCGPGRP, &group) == 0 ? group : 0;
    }

    /// <summary>Waits up to <paramref name="timeoutMs"/> for <paramref name="events"/>; the events that came (0 on timeout).</summary>
    internal static short Poll(int fd, short events, int timeoutMs)
    {
        var poll = new PollFd { Fd = fd, Events = events };
        var ready = PollNative(&poll, 1, timeoutMs);
        return ready > 0 ? poll.Revents : (short)0;
    }

    /// <summary>read(2): bytes read, or -errno.</summary>
    internal static int Read(int fd, Span<byte> buffer)
    {
        fixed (byte* pointer = buffer)
        {
            var read = ReadNative(fd, pointer, buffer.Length);
            return read >= 0 ? (int)read : -Marshal.GetLastPInvokeError();
        }
    }

    /// <summary>write(2): bytes written, or -errno.</summary>
    internal static int Write(int fd, ReadOnlySpan<byte> data)
    {
        fixed (byte* pointer = data)
        {
            var written = WriteNative(fd, pointer, data.Length);
            return written >= 0 ? (int)written : -Marshal.GetLastPInvokeError();
        }
    }

    internal static void Close(int fd)
    {
        if (fd >= 0)
        {
            _ = CloseNative(fd);
        }
    }
}
