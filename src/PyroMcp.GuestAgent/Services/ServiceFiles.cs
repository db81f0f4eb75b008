using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace PyroMcp.GuestAgent.Services;

/// <summary>Reads files of the state dir that something else in the guest may have replaced.</summary>
internal static partial class ServiceFiles
{
    private const int O_RDONLY = 0;
    private const int O_NONBLOCK = 0x800;
    private const int O_NOFOLLOW = 0x20000;
    private const int O_CLOEXEC = 0x80000;

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int OpenNative(string path, int flags);

    /// <summary>
    /// The bytes of <paramref name="path"/>, or null when it is missing, a symlink, or longer than
    /// <paramref name="maxBytes"/>. Opened without blocking, so a FIFO put in its place answers
    /// at once instead of hanging the agent's start.
    /// </summary>
    internal static byte[]? ReadSmallRegularFile(string path, int maxBytes)
    {
        var fd = OpenNative(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
        {
            return null;
        }

        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        var buffer = new byte[maxBytes + 1];
        var total = 0;
        while (total < buffer.Length)
        {
            var read = RandomAccess.Read(handle, buffer.AsSpan(total), total);
            if (read == 0)
            {
                break;
            }

            total += read;
        }

        return total > maxBytes ? null : buffer[..total];
    }
}
