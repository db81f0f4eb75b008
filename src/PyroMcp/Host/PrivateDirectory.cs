using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace PyroMcp.Host;

/// <summary>
/// The one check for every directory pyro keeps its own files in (run dir, state dir, caches).
/// Such a directory holds what decides what a VM runs and who talks to it: agent sockets, disk
/// overlays, root file systems, the state database. If another local user owns it, can write to
/// it, or it is a symlink, that user could plant a socket, swap an image or point a file at
/// something of ours (the fixed <c>/tmp/pyro-UID</c> name invites it). So pyro creates these
/// directories 0700 and refuses to use one it does not own alone.
/// </summary>
internal static partial class PrivateDirectory
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>Creates <paramref name="path"/> 0700 when missing (parents too), then <see cref="Verify"/>s it.</summary>
    /// <exception cref="HostRequirementException"><c>unsafe_directory</c>.</exception>
    internal static string Ensure(string path)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        if (UnixStat.LStat(full) is null)
        {
            try
            {
                // mkdir applies the umask on top of 0700; it never follows or reuses anything.
                Directory.CreateDirectory(full, OwnerOnly);
            }
            catch (IOException) when (UnixStat.LStat(full) is not null)
            {
                // Created by someone else in between: checked below like any existing one.
            }
        }

        Verify(full);
        return full;
    }

    /// <summary>Throws unless <paramref name="path"/> is a real directory (not a symlink) owned by this user and writable by no one else.</summary>
    /// <exception cref="HostRequirementException"><c>unsafe_directory</c>.</exception>
    internal static void Verify(string path)
    {
        var stat = UnixStat.LStat(path)
            ?? throw Unsafe(path, "does not exist", "create it, or let pyro create it");
        var me = UnixStat.EffectiveUserId;
        if (stat.IsSymlink)
        {
            throw Unsafe(path, "is a symbolic link", "remove the link; pyro creates the directory itself");
        }

        if (!stat.IsDirectory)
        {
            throw Unsafe(path, "is not a directory", "remove it; pyro creates the directory itself");
        }

        if (stat.Uid != me)
        {
            throw Unsafe(path, $"is owned by uid {stat.Uid}, not by you (uid {me})",
                "if you did not make it, another user may be trying to take over pyro's files: remove it as root (or pick another directory)");
        }

        if ((stat.Mode & 0x12) != 0)
        {
            throw Unsafe(path, $"is writable by group or others (mode {Convert.ToString(stat.Mode & 0xFFF, 8)})",
                $"run 'chmod go-w {path}' (or 'chmod 700 {path}')");
        }
    }

    private static HostRequirementException Unsafe(string path, string problem, string fix)
        => new("unsafe_directory",
            $"refusing to use {path}: it {problem}. pyro keeps VM sockets, disks and state there, and uses only a directory that you alone own and can write. " +
            $"To fix: {fix}; or point pyro elsewhere with PYRO_RUN_DIR, PYRO_STATE_DIR, PYRO_ENVIRONMENT_CACHE_DIR or PYRO_RUNTIME_CACHE_DIR.");
}

/// <summary>What lstat(2) reports, with the fields <see cref="PyroMcp.Protocol.Files.PathStats"/> leaves out: owner, links, identity.</summary>
internal readonly record struct UnixStatInfo(int Mode, uint Uid, ulong Device, ulong Inode, ulong Links, long Size, DateTimeOffset Modified)
{
    internal bool IsDirectory => (Mode & 0xF000) == 0x4000;
    internal bool IsSymlink => (Mode & 0xF000) == 0xA000;
    internal bool IsRegularFile => (Mode & 0xF000) == 0x8000;
}

/// <summary>lstat, fstat, open and the umask for host-side checks (Linux x86_64 struct stat layout).</summary>
internal static partial class UnixStat
{
    private const int ENOENT = 2;
    private const int ENOTDIR = 20;
    private const int EINTR = 4;
    private const int O_RDONLY = 0;
    private const int O_NONBLOCK = 0x800;
    private const int O_NOFOLLOW = 0x20000;
    private const int O_CLOEXEC = 0x80000;

    internal static uint EffectiveUserId => GetEuid();

    /// <summary>Null when nothing is at <paramref name="path"/>; a final symlink is not followed.</summary>
    internal static UnixStatInfo? LStat(string path)
    {
        Span<byte> buffer = stackalloc byte[144];
        if (LStatNative(path, ref buffer[0]) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno is ENOENT or ENOTDIR ? null : throw new IOException($"lstat {path} failed: errno {errno}");
        }

        return Decode(buffer);
    }

    /// <summary>
    /// Opens a regular file for reading without following a final symlink and without blocking
    /// (a fifo swapped in after the caller's lstat would otherwise wait for a writer forever),
    /// and checks it is still the file the caller saw. Null if it is anything else now.
    /// </summary>
    internal static FileStream? OpenRegularFile(string path, UnixStatInfo expected)
    {
        int fd;
        do
        {
            fd = OpenNative(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        }
        while (fd < 0 && Marshal.GetLastPInvokeError() == EINTR);

        if (fd < 0)
        {
            return null;
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        Span<byte> buffer = stackalloc byte[144];
        if (FStatNative(fd, ref buffer[0]) != 0 || Decode(buffer) is not { IsRegularFile: true } now
            || now.Device != expected.Device || now.Inode != expected.Inode)
        {
            handle.Dispose();
            return null;
        }

        return new FileStream(handle, FileAccess.Read, bufferSize: 0);
    }

    /// <summary>This process's umask, from /proc (reading it with umask(2) would change it for a moment for every thread).</summary>
    internal static int Umask()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("Umask:", StringComparison.Ordinal))
            {
                return Convert.ToInt32(line["Umask:".Length..].Trim(), 8);
            }
        }

        // Kernels before 4.7 do not say; assume the strictest common one.
        return Convert.ToInt32("077", 8);
    }

    private static UnixStatInfo Decode(ReadOnlySpan<byte> buffer) => new(
        Mode: (int)BitConverter.ToUInt32(buffer[24..]),
        Uid: BitConverter.ToUInt32(buffer[28..]),
        Device: BitConverter.ToUInt64(buffer[0..]),
        Inode: BitConverter.ToUInt64(buffer[8..]),
        Links: BitConverter.ToUInt64(buffer[16..]),
        Size: BitConverter.ToInt64(buffer[48..]),
        Modified: DateTimeOffset.FromUnixTimeSeconds(BitConverter.ToInt64(buffer[88..])).AddTicks(BitConverter.ToInt64(buffer[96..]) / 100));

    [LibraryImport("libc", EntryPoint = "lstat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int LStatNative(string path, ref byte buffer);

    [LibraryImport("libc", EntryPoint = "fstat", SetLastError = true)]
    private static partial int FStatNative(int fd, ref byte buffer);

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int OpenNative(string path, int flags);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEuid();
}
