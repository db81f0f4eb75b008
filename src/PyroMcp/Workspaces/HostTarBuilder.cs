using PyroMcp.Protocol.Files;
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
