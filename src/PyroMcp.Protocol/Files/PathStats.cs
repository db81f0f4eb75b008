using System.Runtime.InteropServices;

namespace PyroMcp.Protocol.Files;

/// <summary>File types as lstat reports them.</summary>
public enum PathKind
{
    /// <summary>A regular file.</summary>
    File,
    /// <summary>A directory.</summary>
    Directory,
    /// <summary>A symbolic link (never followed).</summary>
    Symlink,
    /// <summary>A fifo, socket or device node.</summary>
    Other,
}

/// <summary>What lstat reports about a path.</summary>
/// <param name="Kind">File type.</param>
/// <param name="Mode">Permission bits (st_mode &amp; 07777).</param>
/// <param name="Size">st_size.</param>
/// <param name="Modified">st_mtim.</param>
public readonly record struct PathStat(PathKind Kind, int Mode, long Size, DateTimeOffset Modified);

/// <summary>
/// lstat(2), shared by the guest agent and the host: what is at a path itself, a final symlink
/// not followed. .NET tells directories and links apart but not regular files from fifos or
/// devices, and both sides must know which one they face before they open anything.
/// </summary>
public static partial class PathStats
{
    private const int ENOENT = 2;
    private const int ENOTDIR = 20;
    private const int ENAMETOOLONG = 36;

    /// <summary>Null when nothing is at <paramref name="path"/>.</summary>
    public static PathStat? LStat(string path)
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
            0x8000 => PathKind.File,
            0x4000 => PathKind.Directory,
            0xA000 => PathKind.Symlink,
            _ => PathKind.Other,
        };
        var modified = DateTimeOffset.FromUnixTimeSeconds(BitConverter.ToInt64(buffer[88..]))
            .AddTicks(BitConverter.ToInt64(buffer[96..]) / 100);
        return new PathStat(kind, (int)(mode & 0xFFF), BitConverter.ToInt64(buffer[48..]), modified);
    }

    [LibraryImport("libc", EntryPoint = "lstat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int LStatNative(string path, ref byte buffer);
}
