using System.Formats.Tar;
using System.IO.Compression;

namespace PyroMcp.Workspaces;

/// <summary>Packs a host directory as a tar for a guest, and opens seed archives the user names.</summary>
internal static class HostTarBuilder
{
    private static readonly EnumerationOptions AllEntries = new()
    {
        // The defaults skip dot files on Unix.
        AttributesToSkip = 0,
        IgnoreInaccessible = false,
        RecurseSubdirectories = false,
        ReturnSpecialDirectories = false,
    };

    /// <summary>
    /// Writes a PAX tar of the contents of <paramref name="directory"/>: names relative to it (no
    /// leading <c>./</c>), symlinks stored as links and never followed, sockets, fifos and device
    /// nodes left out. Returns once the archive is written and <paramref name="output"/> flushed.
    /// </summary>
    internal static async Task WriteDirectoryAsync(string directory, Stream output, CancellationToken ct)
    {
        var root = Path.GetFullPath(directory);
        if (!Directory.Exists(root))
        {
            throw new DirectoryNotFoundException($"{root} is not a directory");
        }

        await using (var writer = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: true))
        {
            await AddChildrenAsync(writer, root, "", ct);
        }

        await output.FlushAsync(ct);
    }

    /// <summary>Opens a seed archive as a plain tar stream: <c>.tar</c> as it is, <c>.tar.gz</c> and <c>.tgz</c> decompressed.</summary>
    /// <exception cref="ArgumentException">Any other kind of file.</exception>
    internal static Stream OpenArchive(string path)
    {
        var name = Path.GetFileName(path);
        if (name.EndsWith(".tar", StringComparison.OrdinalIgnoreCase))
        {
            return File.OpenRead(path);
        }

        if (name.EndsWith(".tar.gz", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".tgz", StringComparison.OrdinalIgnoreCase))
        {
            return new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        }

        throw new ArgumentException($"seed archives must be .tar, .tar.gz or .tgz; got {path}", nameof(path));
    }

    private static async Task AddChildrenAsync(TarWriter writer, string directory, string prefix, CancellationToken ct)
    {
        var children = Directory.GetFileSystemEntries(directory, "*", AllEntries);
        Array.Sort(children, StringComparer.Ordinal);
        foreach (var child in children)
        {
            if (PathStats.LStat(child) is not { } stat)
            {
                // Deleted since the directory was read.
                continue;
            }

            var name = prefix + Path.GetFileName(child);
            switch (stat.Kind)
            {
                case PathKind.Directory:
                    await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.Directory, name + "/") { Mode = (UnixFileMode)stat.Mode, ModificationTime = stat.Modified }, ct);
                    await AddChildrenAsync(writer, child, name + "/", ct);
                    break;
                case PathKind.Symlink when new FileInfo(child).LinkTarget is { Length: > 0 } target:
                    await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.SymbolicLink, name) { LinkName = target, Mode = (UnixFileMode)stat.Mode, ModificationTime = stat.Modified }, ct);
                    break;
                case PathKind.File:
                    var file = new FileStream(child, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0);
                    await using (var data = new FixedLengthReadStream(file, file.Length))
                    {
                        await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = data, Mode = (UnixFileMode)stat.Mode, ModificationTime = stat.Modified }, ct);
                    }

                    break;
            }
        }
    }
}

/// <summary>
/// Exactly <c>length</c> bytes of a file: the tar header goes out before the data, so a file that
/// grows or shrinks while it is packed must not change how many bytes follow it (a short file is
/// padded with zeros). Seekable only so TarWriter reads the length up front.
/// </summary>
internal sealed class FixedLengthReadStream(Stream inner, long length) : Stream
{
    private long _position;

    public override bool CanRead => true;
    public override bool CanSeek => true;
    public override bool CanWrite => false;
    public override long Length => length;

    public override long Position
    {
        get => _position;
        set => throw new NotSupportedException();
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var want = (int)Math.Min(buffer.Length, length - _position);
        if (want <= 0)
        {
            return 0;
        }

        var read = await inner.ReadAsync(buffer[..want], cancellationToken);
        if (read == 0)
        {
            buffer.Span[..want].Clear();
            read = want;
        }

        _position += read;
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
    {
        var want = (int)Math.Min(count, length - _position);
        if (want <= 0)
        {
            return 0;
        }

        var read = inner.Read(buffer, offset, want);
        if (read == 0)
        {
            Array.Clear(buffer, offset, want);
            read = want;
        }

        _position += read;
        return read;
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override void Flush()
    {
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync();
        await base.DisposeAsync();
    }
}
