using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;

namespace PyroMcp.Host;

/// <summary>
/// Checks a large cached file against its recorded sha256 without rehashing it on every boot:
/// after a full hash, the file's identity (inode, size, mtime, ctime) is stamped beside it. Any
/// write to the file changes its ctime, which no user-space call can set back, so a matching
/// stamp proves the bytes are the ones hashed.
/// </summary>
internal static partial class FileIntegrity
{
    internal sealed record Stamp(string Sha256, long Size, ulong Inode, long MtimeNs, long CtimeNs);

    internal static string Sha256(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>Hashes the file and writes its stamp; returns the hash.</summary>
    internal static string HashAndStamp(string path, string stampPath)
    {
        var sha = Sha256(path);
        WriteStamp(path, stampPath, sha);
        return sha;
    }

    /// <summary>True when the file still has <paramref name="expectedSha256"/>; rehashes only when the stamp does not match.</summary>
    internal static bool Verify(string path, string stampPath, string expectedSha256)
    {
        if (!File.Exists(path))
        {
            return false;
        }

        var now = StatOf(path, expectedSha256);
        try
        {
            if (File.Exists(stampPath) && JsonSerializer.Deserialize(File.ReadAllText(stampPath), InternalJsonContext.Default.Stamp) == now)
            {
                return true;
            }
        }
        catch (JsonException)
        {
            // A damaged stamp only costs a rehash.
        }

        if (Sha256(path) != expectedSha256)
        {
            return false;
        }

        WriteStamp(path, stampPath, expectedSha256);
        return true;
    }

    internal static void WriteStamp(string path, string stampPath, string sha)
    {
        var temp = stampPath + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(StatOf(path, sha), InternalJsonContext.Default.Stamp));
        File.Move(temp, stampPath, overwrite: true);
    }

    private static Stamp StatOf(string path, string sha)
    {
        // struct stat on x86_64 Linux: 144 bytes; ino at 8, size at 48, mtim at 88, ctim at 104.
        var buffer = new byte[144];
        if (StatNative(path, ref buffer[0]) != 0)
        {
            throw new IOException($"stat {path} failed: errno {Marshal.GetLastPInvokeError()}");
        }

        long Ns(int offset) => (BitConverter.ToInt64(buffer, offset) * 1_000_000_000) + BitConverter.ToInt64(buffer, offset + 8);
        return new Stamp(sha, BitConverter.ToInt64(buffer, 48), BitConverter.ToUInt64(buffer, 8), Ns(88), Ns(104));
    }

    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int StatNative(string path, ref byte buffer);
}
