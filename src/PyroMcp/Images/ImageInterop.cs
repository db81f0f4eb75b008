using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace PyroMcp.Images;

/// <summary>The system calls layer flattening needs that .NET does not offer without following a final symlink.</summary>
internal static partial class ImageInterop
{
    private const int EINTR = 4;
    private const int O_WRONLY = 0x1;
    private const int O_CREAT = 0x40;
    private const int O_EXCL = 0x80;
    private const int O_NOFOLLOW = 0x20000;
    private const int O_CLOEXEC = 0x80000;
    private const int AT_FDCWD = -100;
    private const int AT_SYMLINK_NOFOLLOW = 0x100;

    internal const int S_IFCHR = 0x2000;
    internal const int S_IFBLK = 0x6000;
    internal const int S_IFIFO = 0x1000;

    /// <summary>
    /// Creates a new regular file, never opening anything already there (O_CREAT|O_EXCL) and
    /// never following a final symlink (O_NOFOLLOW); owner-only until the caller sets the mode.
    /// </summary>
    internal static SafeFileHandle CreateNew(string path)
    {
        int fd;
        do
        {
            fd = OpenNative(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0x180);
        }
        while (fd < 0 && Marshal.GetLastPInvokeError() == EINTR);

        return fd < 0 ? throw Errno("open", path) : new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>Owner, then mode: chown clears setuid and setgid, so the mode goes second.</summary>
    internal static void SetOwnerAndMode(SafeFileHandle handle, string path, int uid, int gid, int mode)
    {
        var fd = (int)handle.DangerousGetHandle();
        if (FChown(fd, uid, gid) != 0)
        {
            throw Errno("fchown", path);
        }

        if (FChmod(fd, mode & 0xFFF) != 0)
        {
            throw Errno("fchmod", path);
        }
    }

    /// <summary>lchown: the owner of the path itself, a symlink included.</summary>
    internal static void LChown(string path, int uid, int gid)
    {
        if (LChownNative(path, uid, gid) != 0)
        {
            throw Errno("lchown", path);
        }
    }

    /// <summary>chmod on a path the caller has just seen with lstat to be a directory or node, not a link.</summary>
    internal static void Chmod(string path, int mode)
    {
        if (ChmodNative(path, mode & 0xFFF) != 0)
        {
            throw Errno("chmod", path);
        }
    }

    /// <summary>Access and modification time of the path itself (utimensat with AT_SYMLINK_NOFOLLOW).</summary>
    internal static void SetTimes(string path, DateTimeOffset modified)
    {
        Span<long> times = stackalloc long[4];
        var seconds = modified.ToUnixTimeSeconds();
        var nanos = (modified.UtcTicks % TimeSpan.TicksPerSecond) * 100;
        times[0] = seconds;
        times[1] = nanos;
        times[2] = seconds;
        times[3] = nanos;
        if (UtimensAt(AT_FDCWD, path, ref times[0], AT_SYMLINK_NOFOLLOW) != 0)
        {
            throw Errno("utimensat", path);
        }
    }

    /// <summary>mknod for a device node or fifo; <paramref name="type"/> is one of S_IFCHR, S_IFBLK, S_IFIFO.</summary>
    internal static void MakeNode(string path, int type, int mode, int major, int minor)
    {
        var dev = ((ulong)(uint)major & 0xFFFFF000UL) << 32 | ((ulong)(uint)major & 0xFFFUL) << 8
            | ((ulong)(uint)minor & 0xFFFFFF00UL) << 12 | ((ulong)(uint)minor & 0xFFUL);
        if (MkNod(path, (uint)(type | (mode & 0xFFF)), dev) != 0)
        {
            throw Errno("mknod", path);
        }
    }

    /// <summary>A hard link to <paramref name="target"/> itself: linkat without AT_SYMLINK_FOLLOW follows nothing.</summary>
    internal static void HardLink(string target, string path)
    {
        if (LinkAt(AT_FDCWD, target, AT_FDCWD, path, 0) != 0)
        {
            throw Errno("linkat", path);
        }
    }

    private static IOException Errno(string call, string path)
    {
        var errno = Marshal.GetLastPInvokeError();
        return errno == 36 ? new PathTooLongException($"{call} {path}: name too long") : new IOException($"{call} {path} failed: errno {errno}");
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int OpenNative(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "fchown", SetLastError = true)]
    private static partial int FChown(int fd, int uid, int gid);

    [LibraryImport("libc", EntryPoint = "fchmod", SetLastError = true)]
    private static partial int FChmod(int fd, int mode);

    [LibraryImport("libc", EntryPoint = "lchown", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int LChownNative(string path, int uid, int gid);

    [LibraryImport("libc", EntryPoint = "chmod", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int ChmodNative(string path, int mode);

    [LibraryImport("libc", EntryPoint = "utimensat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int UtimensAt(int dirfd, string path, ref long times, int flags);

    [LibraryImport("libc", EntryPoint = "mknod", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int MkNod(string path, uint mode, ulong dev);

    [LibraryImport("libc", EntryPoint = "linkat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int LinkAt(int olddirfd, string oldpath, int newdirfd, string newpath, int flags);
}
