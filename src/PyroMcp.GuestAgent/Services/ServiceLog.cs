using System.Text;

namespace PyroMcp.GuestAgent.Services;

/// <summary>
/// One stream of a service's output on disk: appended to <c>NAME.log</c>, which moves to
/// <c>NAME.log.1</c> when it would pass <see cref="RotateBytes"/>, so a stream never holds more
/// than two files' worth.
/// </summary>
internal sealed class ServiceLog : IDisposable
{
    internal const long RotateBytes = 1024 * 1024;
    private static readonly UTF8Encoding Lenient = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);

    private readonly Lock _gate = new();
    private FileStream? _file;
    private long _size;
    private bool _disposed;

    internal ServiceLog(string path)
    {
        Path = path;
    }

    internal string Path { get; }

    internal string RotatedPath => Path + ".1";

    /// <summary>Times the file was rotated since the service started; past one, older output is gone.</summary>
    internal int Rotations { get; private set; }

    /// <summary>Creates an empty log, dropping what a previous run of the service left.</summary>
    internal void Reset()
    {
        lock (_gate)
        {
            File.Delete(RotatedPath);
            _file?.Dispose();
            _file = new FileStream(Path, FileMode.Create, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
            _size = 0;
            Rotations = 0;
        }
    }

    /// <summary>
    /// Appends a chunk. Never throws: the pump must keep draining the service's pipe whatever
    /// happens to the files (deleted by someone in the guest, a full disk), or the service blocks.
    /// </summary>
    internal void Append(ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            if (_file is not null && !File.Exists(Path))
            {
                // Deleted under us: writing on into the unlinked file would lose everything after.
                _file.Dispose();
                _file = null;
                _size = 0;
            }

            _file ??= _disposed ? null : TryCreate(Path);
            if (_file is null)
            {
                return;
            }

            try
            {
                if (_size > 0 && _size + data.Length > RotateBytes)
                {
                    _file.Dispose();
                    _file = null;
                    if (File.Exists(Path))
                    {
                        File.Move(Path, RotatedPath, overwrite: true);
                    }

                    Rotations++;
                    _file = new FileStream(Path, FileMode.Create, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
                    _size = 0;
                }

                _file.Write(data);
                _file.Flush();
                _size += data.Length;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Start over on the next chunk with a fresh file; this one is lost.
                _file?.Dispose();
                _file = TryCreate(Path);
                _size = 0;
            }
        }
    }

    private static FileStream? TryCreate(string path)
    {
        try
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
            return new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// The last <paramref name="lines"/> lines of the stream (from the rotated file too when the
    /// current one is short), at most <paramref name="maxBytes"/> bytes of them, and whether
    /// older output exists that is not in the answer.
    /// </summary>
    internal (string Text, bool Truncated) Tail(int lines, int maxBytes)
    {
        lock (_gate)
        {
            return Tail(Path, lines, maxBytes, Rotations > 1);
        }
    }

    /// <summary>The same for a log no live service writes (one loaded after a restart).</summary>
    internal static (string Text, bool Truncated) Tail(string path, int lines, int maxBytes, bool olderLost)
    {
        var (current, currentWhole) = ReadEnd(path, maxBytes);
        var data = current;
        var whole = currentWhole;
        if (currentWhole && current.Length < maxBytes && File.Exists(path + ".1"))
        {
            var (older, olderWhole) = ReadEnd(path + ".1", maxBytes - current.Length);
            data = [.. older, .. current];
            whole = olderWhole;
        }

        var text = Lenient.GetString(data);
        if (!whole)
        {
            // The cut may have split a line (or a character): start at the next full line.
            var newline = text.IndexOf('\n', StringComparison.Ordinal);
            text = newline >= 0 ? text[(newline + 1)..] : "";
        }

        var end = text.EndsWith('\n') ? text.Length - 1 : text.Length;
        var start = end;
        var found = 0;
        while (start > 0)
        {
            var newline = text.LastIndexOf('\n', start - 1);
            if (newline < 0)
            {
                start = 0;
                break;
            }

            if (++found == lines)
            {
                start = newline + 1;
                break;
            }

            start = newline;
        }

        var cutLines = start > 0;
        return (text[start..], cutLines || !whole || olderLost);
    }

    private static (byte[] Data, bool Whole) ReadEnd(string path, int maxBytes)
    {
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var length = file.Length;
            var take = (int)Math.Min(length, maxBytes);
            file.Seek(length - take, SeekOrigin.Begin);
            var buffer = new byte[take];
            file.ReadExactly(buffer);
            return (buffer, take == length);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return ([], true);
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            _file?.Dispose();
            _file = null;
        }
    }
}
