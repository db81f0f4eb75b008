using PyroMcp.Protocol.Files;
using System.Formats.Tar;
using PyroMcp.Protocol;
using PyroMcp.Host;

namespace PyroMcp.Trees;

/// <summary>What an extraction wrote, and the entries it refused.</summary>
internal sealed record ExtractSummary(long Files, long Directories, long Symlinks, long Bytes, IReadOnlyList<SkippedEntry> Skipped);

/// <summary>
/// Extracts a tar that came out of a guest, and so may have been written by whatever ran there,
/// into a directory on the host that does not exist yet. Nothing it does can create, change or
/// point at a file outside that directory: absolute and <c>..</c> names are refused, every parent
/// is checked with lstat to be a real directory it made, files are created with O_EXCL, symlinks
/// must stay inside, and hard links, devices and fifos are never made. The stream goes through a
/// <see cref="TarGuardStream"/>, so no header can make it allocate more than a small record, and
/// every byte read counts against the limit. Modes are the guest's, less the umask, setuid,
/// setgid, sticky and any group or world write bit: nothing exported is writable by another
/// local user.
/// </summary>
internal static class SafeTarExtractor
{
    private const int ChunkSize = 64 * 1024;
    private const int MaxShownName = 300;

    /// <param name="tar">A plain (uncompressed) tar stream.</param>
    /// <param name="destination">Must not exist; it is created.</param>
    /// <param name="maxBytes">Most bytes to read (headers, padding and data) and to write; more throws <see cref="InvalidDataException"/>.</param>
    /// <param name="maxEntries">Most entries to accept; more throws <see cref="InvalidDataException"/>.</param>
    /// <param name="cancellationToken">Stops the extraction; what was written stays for the caller to delete.</param>
    /// <exception cref="IOException"><paramref name="destination"/> already exists.</exception>
    /// <exception cref="InvalidDataException">The archive is corrupt or over a limit; the caller deletes the partial destination.</exception>
    internal static async Task<ExtractSummary> ExtractAsync(Stream tar, string destination, long maxBytes, long maxEntries, CancellationToken cancellationToken)
    {
        try
        {
            return await ExtractGuardedAsync(tar, destination, maxBytes, maxEntries, cancellationToken).ConfigureAwait(false);
        }
        catch (TarLimitException ex)
        {
            throw new InvalidDataException(ex.Message, ex);
        }
    }

    private static async Task<ExtractSummary> ExtractGuardedAsync(Stream tar, string destination, long maxBytes, long maxEntries, CancellationToken cancellationToken)
    {
        var root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(destination));
        if (PathStats.LStat(root) is not null)
        {
            throw new IOException($"{root} already exists; pyro extracts only into a new directory and never over existing files");
        }

        var umask = UnixStat.Umask();
        Directory.CreateDirectory(root, (UnixFileMode)ExportedMode(0x1ED, directory: true, umask));
        if (PathStats.LStat(root)?.Kind != PathKind.Directory)
        {
            throw new IOException($"{root} changed while it was being created");
        }

        var state = new State(root, umask);
        var reader = new TarReader(new TarGuardStream(tar, maxBytes), leaveOpen: true);
        await using (reader.ConfigureAwait(false))
        {
            while (true)
            {
                TarEntry? entry;
                try
                {
                    entry = await reader.GetNextEntryAsync(copyData: false, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (IsArchiveError(ex))
                {
                    throw new InvalidDataException($"the archive is corrupt after {state.Entries} entries: {ex.Message}", ex);
                }

                if (entry is null)
                {
                    break;
                }

                if (++state.Entries > maxEntries)
                {
                    throw new InvalidDataException($"the archive has more than {maxEntries} entries, the limit");
                }

                try
                {
                    await ExtractEntryAsync(entry, state, maxBytes, cancellationToken).ConfigureAwait(false);
                }
                catch (PathTooLongException)
                {
                    state.Skip(entry.Name, "name_too_long");
                }
            }
        }

        return new ExtractSummary(state.Files, state.Directories, state.Symlinks, state.Bytes, state.SkippedEntries());
    }

    /// <summary>
    /// The mode an exported file or directory gets on the host: the guest's permission bits less
    /// the umask, setuid, setgid, sticky and group or world write; a directory always lets its
    /// owner in (the host user must be able to read and delete what pyro extracted).
    /// </summary>
    internal static int ExportedMode(int guestMode, bool directory, int umask)
    {
        var mode = guestMode & 0x1FF;
        if (directory)
        {
            mode |= 0x1C0;
        }

        return mode & ~umask & ~0x12;
    }

    private static async Task ExtractEntryAsync(TarEntry entry, State state, long maxBytes, CancellationToken cancellationToken)
    {
        if (entry.EntryType == TarEntryType.GlobalExtendedAttributes)
        {
            return;
        }

        var name = Normalize(entry.Name, out var refusal);
        if (name is null)
        {
            state.Skip(entry.Name, refusal!);
            return;
        }

        if (name.Length == 0)
        {
            // "./": the destination itself.
            return;
        }

        switch (entry.EntryType)
        {
            case TarEntryType.Directory:
            case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
            case TarEntryType.SymbolicLink:
                break;
            case TarEntryType.HardLink:
                // A hard link shares an inode; nothing from a guest gets to do that on the host.
                state.Skip(entry.Name, "hardlink");
                return;
            default:
                state.Skip(entry.Name, "special_file");
                return;
        }

        var segments = name.Split('/');
        if (entry.EntryType == TarEntryType.SymbolicLink && !LinkStaysInside(entry.LinkName, segments.Length - 1))
        {
            state.Skip(entry.Name, "symlink_outside");
            return;
        }

        var blocked = SafeDirectories.Walk(state.Root, segments.AsSpan(0, segments.Length - 1), create: true, (UnixFileMode)state.ParentMode);
        if (blocked is not null)
        {
            state.Skip(entry.Name, blocked);
            return;
        }

        var full = state.Root + "/" + name;
        var existing = PathStats.LStat(full);
        switch (entry.EntryType)
        {
            case TarEntryType.Directory:
                if (existing is null)
                {
                    Directory.CreateDirectory(full, (UnixFileMode)state.ParentMode);
                    existing = PathStats.LStat(full);
                }

                if (existing?.Kind != PathKind.Directory)
                {
                    state.Skip(entry.Name, "duplicate_entry");
                    return;
                }

                // Set now, not deferred: the owner keeps rwx, so a read-only mode never blocks the
                // directory's own contents, and no list grows with the archive.
                File.SetUnixFileMode(full, (UnixFileMode)ExportedMode((int)entry.Mode, directory: true, state.Umask));
                state.Directories++;
                return;
            case TarEntryType.SymbolicLink when existing is null:
                // symlink(2) fails on an existing name rather than follow it.
                File.CreateSymbolicLink(full, entry.LinkName);
                state.Symlinks++;
                return;
            case TarEntryType.SymbolicLink:
                state.Skip(entry.Name, "duplicate_entry");
                return;
            default:
                if (existing is not null)
                {
                    state.Skip(entry.Name, "duplicate_entry");
                    return;
                }

                state.Bytes += await WriteFileAsync(entry, full, state, maxBytes, cancellationToken).ConfigureAwait(false);
                state.Files++;
                return;
        }
    }

    private static async Task<long> WriteFileAsync(TarEntry entry, string full, State state, long maxBytes, CancellationToken cancellationToken)
    {
        long written = 0;
        // CreateNew is O_CREAT|O_EXCL: it never opens, truncates or follows anything already there.
        var options = new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            Share = FileShare.None,
            BufferSize = 0,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        };
        var file = new FileStream(full, options);
        await using var fileScope = file.ConfigureAwait(false);
        if (entry.DataStream is { } data)
        {
            var buffer = new byte[ChunkSize];
            while (true)
            {
                int read;
                try
                {
                    read = await data.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (IsArchiveError(ex))
                {
                    throw new InvalidDataException($"the data of an entry is cut short or corrupt: {ex.Message}", ex);
                }

                if (read == 0)
                {
                    break;
                }

                // Counted as written too: a sparse entry can expand past its stored length.
                written += read;
                if (state.Bytes + written > maxBytes)
                {
                    throw new InvalidDataException($"the archive holds more than {maxBytes} bytes, the limit");
                }

                await file.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
            }
        }

        File.SetUnixFileMode(file.SafeFileHandle, (UnixFileMode)ExportedMode((int)entry.Mode, directory: false, state.Umask));
        if (entry.ModificationTime > DateTimeOffset.UnixEpoch)
        {
            File.SetLastWriteTimeUtc(file.SafeFileHandle, entry.ModificationTime.UtcDateTime);
        }

        return written;
    }

    /// <summary>Drops <c>./</c> and empty segments; null (with the reason) for NUL, absolute and <c>..</c> names.</summary>
    private static string? Normalize(string name, out string? refusal) => ArchiveNames.Normalize(name, out refusal);

    /// <summary>
    /// A link target must be relative and made of some leading <c>..</c> (no more than the link's
    /// depth below the destination) and then names only. Checking only the lexical end point is
    /// not enough: with <c>x -&gt; ../..</c> at depth 2 (inside), <c>y -&gt; x/..</c> beside it
    /// looks inside but resolves to the destination's parent. With every <c>..</c> leading, each
    /// one climbs a real directory this extraction made, and every link named further on obeys
    /// the same rule, so no chain of them leaves.
    /// </summary>
    private static bool LinkStaysInside(string target, int depth)
    {
        if (target.Length == 0 || target.Contains('\0') || target.StartsWith('/'))
        {
            return false;
        }

        var climbing = true;
        var ups = 0;
        foreach (var segment in target.Split('/'))
        {
            if (segment is "" or ".")
            {
                continue;
            }

            if (segment == "..")
            {
                if (!climbing)
                {
                    return false;
                }

                ups++;
            }
            else
            {
                climbing = false;
            }
        }

        return ups <= depth;
    }

    private static bool IsArchiveError(Exception ex) => ex is InvalidDataException or FormatException or EndOfStreamException
        or InvalidOperationException or NotSupportedException or ArgumentException or OverflowException;

    /// <summary>Entry names are guest text shown to a user: no control characters (terminal escapes), bounded length.</summary>
    internal static string SanitizeName(string name)
    {
        var clean = new string(name.Where(c => !char.IsControl(c)).ToArray());
        return clean.Length <= MaxShownName ? clean : clean[..MaxShownName];
    }

    private sealed class State(string root, int umask)
    {
        private const int MaxSkipped = 1000;
        private readonly List<SkippedEntry> _skipped = [];
        private long _notListed;

        internal string Root { get; } = root;
        internal int Umask { get; } = umask;

        /// <summary>Directories made on the way to an entry: 0755 less the umask until an entry of their own says otherwise.</summary>
        internal int ParentMode { get; } = ExportedMode(0x1ED, directory: true, umask);
        internal long Entries { get; set; }
        internal long Files { get; set; }
        internal long Directories { get; set; }
        internal long Symlinks { get; set; }
        internal long Bytes { get; set; }

        internal void Skip(string name, string reason)
        {
            // A bomb of refused entries must not grow the report without bound.
            if (_skipped.Count < MaxSkipped)
            {
                _skipped.Add(new SkippedEntry(SanitizeName(name), reason));
            }
            else
            {
                _notListed++;
            }
        }

        internal IReadOnlyList<SkippedEntry> SkippedEntries()
            => _notListed == 0 ? _skipped : [.. _skipped, new SkippedEntry($"{_notListed} more entries", "not_listed")];
    }
}
