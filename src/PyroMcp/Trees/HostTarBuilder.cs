using PyroMcp.Host;
using PyroMcp.Protocol.Files;
using System.Formats.Tar;
using System.IO.Compression;

namespace PyroMcp.Trees;

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
    /// leading <c>./</c>). Nothing outside the directory is ever read into the archive: symlinks
    /// are stored as links and never followed; a file with several names is sent once, its other
    /// names inside the directory as hard links, and not at all when one of its names lies outside
    /// (its content is then not the seed's to send); sockets, fifos and device nodes are left out,
    /// and files are opened without blocking, so a fifo swapped in is never waited on. Returns
    /// once the archive is written and <paramref name="output"/> flushed.
    /// </summary>
    internal static async Task WriteDirectoryAsync(string directory, Stream output, CancellationToken ct)
    {
        var root = Path.GetFullPath(directory);
        if (!Directory.Exists(root))
        {
            throw new DirectoryNotFoundException($"{root} is not a directory");
        }

        var links = new HardLinks();
        links.Count(root);
        var writer = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: true);
        await using (writer.ConfigureAwait(false))
        {
            await AddChildrenAsync(writer, root, "", links, ct).ConfigureAwait(false);
        }

        await output.FlushAsync(ct).ConfigureAwait(false);
    }

    /// <summary>Opens a seed archive as a plain tar stream: <c>.tar</c> as it is, <c>.tar.gz</c> and <c>.tgz</c> decompressed.</summary>
    /// <exception cref="ArgumentException">Any other kind of file.</exception>
    /// <summary>Whether a seed or sync source of this name is taken as an archive (.tar, .tar.gz, .tgz) rather than a directory.</summary>
    internal static bool IsArchiveName(string path)
    {
        var name = Path.GetFileName(path);
        return name.EndsWith(".tar", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".tar.gz", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".tgz", StringComparison.OrdinalIgnoreCase);
    }

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

    private static async Task AddChildrenAsync(TarWriter writer, string directory, string prefix, HardLinks links, CancellationToken ct)
    {
        var children = Directory.GetFileSystemEntries(directory, "*", AllEntries);
        Array.Sort(children, StringComparer.Ordinal);
        foreach (var child in children)
        {
            if (UnixStat.LStat(child) is not { } stat)
            {
                // Deleted since the directory was read.
                continue;
            }

            var name = prefix + Path.GetFileName(child);
            var mode = (UnixFileMode)(stat.Mode & 0xFFF);
            if (stat.IsDirectory)
            {
                await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.Directory, name + "/") { Mode = mode, ModificationTime = stat.Modified }, ct).ConfigureAwait(false);
                await AddChildrenAsync(writer, child, name + "/", links, ct).ConfigureAwait(false);
            }
            else if (stat.IsSymlink)
            {
                if (new FileInfo(child).LinkTarget is { Length: > 0 } target)
                {
                    await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.SymbolicLink, name) { LinkName = target, Mode = mode, ModificationTime = stat.Modified }, ct).ConfigureAwait(false);
                }
            }
            else if (stat.IsRegularFile)
            {
                switch (links.Decide(stat, name, out var first))
                {
                    case LinkDecision.Skip:
                        continue;
                    case LinkDecision.HardLink:
                        await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.HardLink, name) { LinkName = first!, Mode = mode, ModificationTime = stat.Modified }, ct).ConfigureAwait(false);
                        continue;
                }

                if (UnixStat.OpenRegularFile(child, stat) is not { } file)
                {
                    // Replaced (by a link, a fifo, anything) since it was listed: not what was seen, so not sent.
                    continue;
                }

                var data = new FixedLengthReadStream(file, file.Length);
                await using (data.ConfigureAwait(false))
                {
                    await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = data, Mode = mode, ModificationTime = stat.Modified }, ct).ConfigureAwait(false);
                }
            }
        }
    }

    private enum LinkDecision
    {
        Content,
        HardLink,
        Skip,
    }

    /// <summary>Files with more than one name: how many of the names are inside the seed, and which was sent first.</summary>
    private sealed class HardLinks
    {
        private readonly Dictionary<(ulong Device, ulong Inode), int> _namesInside = [];
        private readonly Dictionary<(ulong Device, ulong Inode), string> _sentAs = [];

        /// <summary>The first pass: counts the names of every multiply-linked file under <paramref name="directory"/>.</summary>
        internal void Count(string directory)
        {
            foreach (var child in Directory.GetFileSystemEntries(directory, "*", AllEntries))
            {
                if (UnixStat.LStat(child) is not { } stat)
                {
                    continue;
                }

                if (stat.IsDirectory)
                {
                    Count(child);
                }
                else if (stat.IsRegularFile && stat.Links > 1)
                {
                    var key = (stat.Device, stat.Inode);
                    _namesInside[key] = _namesInside.GetValueOrDefault(key) + 1;
                }
            }
        }

        internal LinkDecision Decide(UnixStatInfo stat, string name, out string? first)
        {
            first = null;
            if (stat.Links <= 1)
            {
                return LinkDecision.Content;
            }

            var key = (stat.Device, stat.Inode);
            if ((ulong)_namesInside.GetValueOrDefault(key) < stat.Links)
            {
                // Another name of this file is outside the seed (a hard link to ~/.ssh/id_rsa, say).
                return LinkDecision.Skip;
            }

            if (_sentAs.TryGetValue(key, out first))
            {
                return LinkDecision.HardLink;
            }

            _sentAs[key] = name;
            return LinkDecision.Content;
        }
    }
}
