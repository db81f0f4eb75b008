using PyroMcp.Protocol.Files;
using System.Formats.Tar;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent;

/// <summary>
/// tar.out and tar.in on one stream. Extraction is written entry by entry instead of with
/// TarFile.ExtractToDirectory, which would follow symlinks already in the destination (and ones
/// the same archive planted a moment earlier).
/// </summary>
internal sealed class TarOps(FrameConnection connection, uint streamId, WorkspacePaths paths, Operation operation)
{
    private const int ChunkSize = 64 * 1024;

    internal async Task<TarSummary> PackAsync(TarRequest request, bool windowed = false)
    {
        var cancellationToken = operation.Cancel.Token;
        var source = paths.ForRead(request.Path);
        var stat = PathStats.LStat(source.Full) ?? throw new AgentFailure("not_found", $"{request.Path} does not exist");
        if (stat.Kind is not (PathKind.File or PathKind.Directory))
        {
            throw new AgentFailure("not_a_file", $"{WorkspacePaths.DisplayName(source)} is neither a file nor a directory");
        }

        var output = new FrameWriteStream(connection, streamId, cancellationToken, windowed ? operation.Window : null);
        var counts = new PackCounts();
        await using (var writer = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: true))
        {
            if (stat.Kind == PathKind.Directory)
            {
                await AddChildrenAsync(writer, source.Full, "", counts, cancellationToken);
            }
            else
            {
                // A file keeps its own name (the requested one, even when it was reached through a link).
                await AddEntryAsync(writer, source.Full, source.Name, stat, counts, cancellationToken);
            }
        }

        if (counts.Entries == 0)
        {
            // TarWriter writes no end-of-archive blocks when it wrote no entry; an empty tree is
            // still an archive (two zero blocks), or restoring an empty baseline would fail.
            await output.WriteAsync(new byte[1024], cancellationToken);
        }

        await output.FlushAsync(cancellationToken);
        return new TarSummary { Entries = counts.Entries, Bytes = counts.Bytes };
    }

    internal async Task<TarSummary> ExtractAsync(TarRequest request)
    {
        var cancellationToken = operation.Cancel.Token;
        var destination = paths.DirectoryForWrite(request.Path);
        if (request.Clean)
        {
            // Only the contents: the destination may be the workspace root, which must stay.
            FileOps.DeleteContents(destination.Full);
        }

        var input = new ChannelReadStream(operation.Stdin.Reader, cancellationToken);
        var state = new ExtractState(destination.Full);
        // The guard refuses a header that would make TarReader allocate gigabytes for a pax record
        // or long name before reading it; the agent has a few hundred MiB to live in.
        await using (var reader = new TarReader(new TarGuardStream(input, long.MaxValue), leaveOpen: true))
        {
            while (true)
            {
                TarEntry? entry;
                try
                {
                    entry = await reader.GetNextEntryAsync(copyData: false, cancellationToken);
                }
                catch (Exception ex) when (IsArchiveError(ex))
                {
                    throw new AgentFailure("bad_archive", $"the tar stream is corrupt after {state.Entries} entries: {ex.Message}");
                }

                if (entry is null)
                {
                    break;
                }

                try
                {
                    await ExtractEntryAsync(entry, state, cancellationToken);
                }
                catch (PathTooLongException)
                {
                    // A name the file system cannot hold is the archive's fault, not a reason to stop.
                    state.Skip(entry.Name, "name_too_long");
                }
            }
        }

        state.ApplyDirectoryModes();
        await input.DrainAsync();
        return new TarSummary { Entries = state.Entries, Bytes = state.Bytes, Skipped = state.SkippedEntries() };
    }

    internal static string? NormalizeName(string name, out string? refusal) => ArchiveNames.Normalize(name, out refusal);

    private static bool IsArchiveError(Exception ex) => ex is InvalidDataException or TarLimitException or FormatException or EndOfStreamException
        or InvalidOperationException or NotSupportedException or ArgumentException or OverflowException;

    private static async Task AddChildrenAsync(TarWriter writer, string directory, string prefix, PackCounts counts, CancellationToken cancellationToken)
    {
        var children = Directory.GetFileSystemEntries(directory, "*", FileOps.AllEntries);
        Array.Sort(children, StringComparer.Ordinal);
        foreach (var child in children)
        {
            if (PathStats.LStat(child) is not { } stat)
            {
                // Deleted since the directory was read.
                continue;
            }

            var name = prefix + Path.GetFileName(child);
            await AddEntryAsync(writer, child, name, stat, counts, cancellationToken);
            if (stat.Kind == PathKind.Directory)
            {
                await AddChildrenAsync(writer, child, name + "/", counts, cancellationToken);
            }
        }
    }

    private static async Task AddEntryAsync(TarWriter writer, string path, string name, PathStat stat, PackCounts counts, CancellationToken cancellationToken)
    {
        switch (stat.Kind)
        {
            case PathKind.Directory:
                await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.Directory, name + "/") { Mode = (UnixFileMode)stat.Mode, ModificationTime = stat.Modified }, cancellationToken);
                break;
            case PathKind.Symlink when new FileInfo(path).LinkTarget is { Length: > 0 } target:
                await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.SymbolicLink, name) { LinkName = target, Mode = (UnixFileMode)stat.Mode, ModificationTime = stat.Modified }, cancellationToken);
                break;
            case PathKind.File:
                FileStream file;
                try
                {
                    file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0);
                }
                catch (FileNotFoundException)
                {
                    return;
                }

                await using (var data = new FixedLengthReadStream(file, file.Length))
                {
                    await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = data, Mode = (UnixFileMode)stat.Mode, ModificationTime = stat.Modified }, cancellationToken);
                    counts.Bytes += data.Length;
                }

                break;
            default:
                // Sockets, fifos and device nodes mean nothing outside this guest.
                return;
        }

        counts.Entries++;
    }

    private async Task ExtractEntryAsync(TarEntry entry, ExtractState state, CancellationToken cancellationToken)
    {
        if (entry.EntryType == TarEntryType.GlobalExtendedAttributes)
        {
            return;
        }

        var name = NormalizeName(entry.Name, out var refusal);
        if (name is null)
        {
            state.Skip(entry.Name, refusal!);
            return;
        }

        if (name.Length == 0)
        {
            // "./": the destination itself, which already exists and keeps its mode.
            return;
        }

        var kind = entry.EntryType switch
        {
            TarEntryType.Directory => PathKind.Directory,
            TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile => PathKind.File,
            TarEntryType.SymbolicLink => PathKind.Symlink,
            TarEntryType.HardLink => (PathKind?)null,
            _ => PathKind.Other,
        };
        if (kind == PathKind.Other)
        {
            state.Skip(entry.Name, "special_file");
            return;
        }

        string? hardLinkTarget = null;
        if (kind is null)
        {
            hardLinkTarget = NormalizeName(entry.LinkName, out _);
            if (hardLinkTarget is null || !state.ExtractedFiles.Contains(hardLinkTarget))
            {
                state.Skip(entry.Name, "hardlink_outside");
                return;
            }

            if (hardLinkTarget == name)
            {
                state.Entries++;
                return;
            }
        }
        else if (kind == PathKind.Symlink && (entry.LinkName.Length == 0 || entry.LinkName.Contains('\0')))
        {
            state.Skip(entry.Name, "bad_name");
            return;
        }

        // Every directory on the way must be a real one inside the destination: a symlink there
        // (planted by this archive or already in the workspace) would carry the write elsewhere.
        var segments = name.Split('/');
        var blocked = WorkspacePaths.WalkDirectories(state.Destination, segments.AsSpan(0, segments.Length - 1), create: true);
        if (blocked is not null)
        {
            state.Skip(entry.Name, blocked);
            return;
        }

        var full = WorkspacePaths.Combine(state.Destination, name);
        var existing = PathStats.LStat(full);
        if (kind == PathKind.Directory)
        {
            if (existing?.Kind != PathKind.Directory)
            {
                if (existing is not null)
                {
                    File.Delete(full);
                }

                Directory.CreateDirectory(full);
            }

            state.ExtractedFiles.Remove(name);
            state.DirectoryModes.Add((full, (int)entry.Mode & 0xFFF));
            state.Entries++;
            return;
        }

        if (existing?.Kind == PathKind.Directory)
        {
            state.Skip(entry.Name, "directory_in_the_way");
            return;
        }

        var linkTarget = hardLinkTarget is null ? null : WorkspacePaths.Combine(state.Destination, hardLinkTarget);
        if (linkTarget is not null && PathStats.LStat(linkTarget)?.Kind != PathKind.File)
        {
            // Replaced by a later entry of the archive since it was extracted.
            state.Skip(entry.Name, "hardlink_outside");
            return;
        }

        if (existing is not null)
        {
            // Removed, never opened: writing into an existing name would go through a symlink, or
            // change every other hard link of the file.
            File.Delete(full);
        }

        switch (kind)
        {
            case PathKind.Symlink:
                File.CreateSymbolicLink(full, entry.LinkName);
                state.ExtractedFiles.Remove(name);
                break;
            case PathKind.File:
                state.Bytes += await WriteFileAsync(entry, full, cancellationToken);
                state.ExtractedFiles.Add(name);
                break;
            default:
                // link(2) does not follow a symlink at the target name, and the target was checked above.
                Interop.Link(linkTarget!, full);
                state.ExtractedFiles.Add(name);
                break;
        }

        state.Entries++;
    }

    private static async Task<long> WriteFileAsync(TarEntry entry, string full, CancellationToken cancellationToken)
    {
        long written = 0;
        // CreateNew is O_EXCL: it fails rather than follow a link that appeared at the name.
        await using var file = new FileStream(full, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0);
        if (entry.DataStream is { } data)
        {
            var buffer = new byte[ChunkSize];
            while (true)
            {
                int read;
                try
                {
                    read = await data.ReadAsync(buffer, cancellationToken);
                }
                catch (Exception ex) when (IsArchiveError(ex))
                {
                    throw new AgentFailure("bad_archive", $"the data of {entry.Name} is cut short: {ex.Message}");
                }

                if (read == 0)
                {
                    break;
                }

                await file.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                written += read;
            }
        }

        File.SetUnixFileMode(file.SafeFileHandle, (UnixFileMode)((int)entry.Mode & 0xFFF));
        if (entry.ModificationTime > DateTimeOffset.UnixEpoch)
        {
            File.SetLastWriteTimeUtc(file.SafeFileHandle, entry.ModificationTime.UtcDateTime);
        }

        return written;
    }

    private sealed class PackCounts
    {
        internal long Entries { get; set; }
        internal long Bytes { get; set; }
    }

    private sealed class ExtractState(string destination)
    {
        private const int MaxSkipped = 1000;

        // The reply is one frame; this keeps the skipped list well inside FrameCodec.MaxPayloadLength
        // however the names are escaped.
        private const int SkippedJsonBudget = 128 * 1024;
        private const int MaxNameLength = 300;

        private readonly List<SkippedEntry> _skipped = [];
        private long _skippedJsonBytes;
        private long _notListed;

        internal string Destination { get; } = destination;
        internal long Entries { get; set; }
        internal long Bytes { get; set; }

        /// <summary>Names extracted by this archive as regular files: the only valid hard-link targets.</summary>
        internal HashSet<string> ExtractedFiles { get; } = new(StringComparer.Ordinal);

        /// <summary>Applied at the end, so a read-only directory does not block its own contents.</summary>
        internal List<(string Path, int Mode)> DirectoryModes { get; } = [];

        internal void Skip(string name, string reason)
        {
            var shown = Sanitize(name);
            var cost = EstimateJsonBytes(shown) + reason.Length + 32;
            if (_skipped.Count < MaxSkipped && _skippedJsonBytes + cost <= SkippedJsonBudget)
            {
                _skipped.Add(new SkippedEntry(shown, reason));
                _skippedJsonBytes += cost;
            }
            else
            {
                _notListed++;
            }
        }

        internal IReadOnlyList<SkippedEntry> SkippedEntries()
            => _notListed == 0 ? _skipped : [.. _skipped, new SkippedEntry($"{_notListed} more entries", "not_listed")];

        internal void ApplyDirectoryModes()
        {
            foreach (var (path, mode) in DirectoryModes)
            {
                // lstat first: chmod follows links, and only real directories were recorded.
                if (PathStats.LStat(path)?.Kind == PathKind.Directory)
                {
                    File.SetUnixFileMode(path, (UnixFileMode)mode);
                }
            }
        }

        private static string Sanitize(string name)
        {
            var clean = new string(name.Where(c => !char.IsControl(c)).ToArray());
            return clean.Length <= MaxNameLength ? clean : clean[..MaxNameLength];
        }

        // System.Text.Json writes non-ASCII and HTML-sensitive characters as \uXXXX.
        private static long EstimateJsonBytes(string text)
            => text.Sum(c => char.IsAsciiLetterOrDigit(c) || c is '/' or '.' or '_' or '-' or ' ' ? 1L : 6L);
    }
}
