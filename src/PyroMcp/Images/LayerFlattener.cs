using System.Formats.Tar;
using System.IO.Compression;
using PyroMcp.Protocol.Files;

namespace PyroMcp.Images;

/// <summary>How a layer's bytes are compressed, by their first bytes.</summary>
internal enum LayerCompression
{
    /// <summary>A plain tar.</summary>
    None,
    /// <summary>gzip (1f 8b).</summary>
    Gzip,
    /// <summary>zstd (28 b5 2f fd).</summary>
    Zstd,
}

/// <summary>Limits on what flattening an image may write, over all its layers together.</summary>
internal sealed record FlattenLimits
{
    /// <summary>Bytes of tar (after decompression: headers, padding and data) over all layers.</summary>
    public long MaxBytes { get; init; } = 32L << 30;

    /// <summary>Tar entries over all layers.</summary>
    public long MaxEntries { get; init; } = 2_000_000;

    /// <summary>Symlinks followed while resolving one entry's parent directory.</summary>
    public int MaxSymlinkHops { get; init; } = 40;
}

/// <summary>What flattening did: entries applied by kind, whiteouts, and the entries refused with why.</summary>
internal sealed record FlattenResult
{
    public long Layers { get; init; }
    public long Entries { get; init; }
    public long Files { get; init; }
    public long Directories { get; init; }
    public long Symlinks { get; init; }
    public long HardLinks { get; init; }
    public long Nodes { get; init; }
    public long Whiteouts { get; init; }
    public long Bytes { get; init; }
    public required IReadOnlyList<SkippedEntry> Skipped { get; init; }
    public long SkippedCount { get; init; }

    /// <summary>Layers whose declared media type said another compression than their bytes: read by their bytes, as containerd does.</summary>
    public required IReadOnlyList<string> MediaTypeMismatches { get; init; }
}

/// <summary>
/// Applies an image's layers in order into a new root directory on the host, as a container
/// runtime would unpack them, with the image treated as hostile. Every entry's parent is
/// resolved inside the root chroot-style (the way umoci's securejoin does): a symlink met on the
/// way is followed as if the root were <c>/</c>, so <c>/lib -&gt; usr/lib</c> still works for
/// later entries under <c>/lib</c>, but no link, <c>..</c> or absolute target climbs above the
/// root. Only real directories are ever walked through, the last component is never followed
/// (files are created O_CREAT|O_EXCL|O_NOFOLLOW after removing what was there), hard links must
/// name a regular file inside the root, and every byte counts against <see cref="FlattenLimits"/>.
/// Symlinks are stored verbatim: they only mean something inside the guest.
/// </summary>
internal sealed class LayerFlattener
{
    private const int ChunkSize = 128 * 1024;
    private const string WhiteoutPrefix = ".wh.";
    private const string OpaqueMarker = ".wh..wh..opq";
    private const int MaxSkippedListed = 1000;

    private readonly string _root;
    private readonly FlattenLimits _limits;
    private readonly List<SkippedEntry> _skipped = [];
    private readonly List<string> _mismatches = [];
    private readonly List<(string Path, DateTimeOffset Modified)> _directoryTimes = [];
    private readonly HashSet<string> _thisLayer = new(StringComparer.Ordinal);
    private readonly byte[] _buffer = new byte[ChunkSize];

    private long _layers, _entries, _files, _directories, _symlinks, _hardLinks, _nodes, _whiteouts, _bytes, _tarBytes, _skippedCount;

    private LayerFlattener(string root, FlattenLimits limits)
    {
        _root = root;
        _limits = limits;
    }

    /// <summary>
    /// Flattens <paramref name="layers"/> (lowest first) into <paramref name="root"/>, which must
    /// not exist. On any failure the root is removed and the exception says why:
    /// <see cref="EnvironmentException"/> with <c>image_layer_too_large</c> or <c>image_layer_corrupt</c>.
    /// </summary>
    /// <param name="layers">Each layer's bytes (compressed or not) and its declared media type, opened when its turn comes.</param>
    /// <param name="root">The new root directory; must not exist.</param>
    /// <param name="limits">Bytes, entries and symlink hops allowed over the whole image.</param>
    /// <param name="onLayer">Called as each layer starts: its index and the tar bytes read so far.</param>
    /// <param name="cancellationToken">Stops the flattening; the root is removed.</param>
    internal static async Task<FlattenResult> FlattenAsync(IReadOnlyList<(Func<Stream> Open, string? MediaType)> layers, string root, FlattenLimits limits,
        Action<int, long>? onLayer, CancellationToken cancellationToken)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root));
        if (PathStats.LStat(full) is not null)
        {
            throw new IOException($"{full} already exists; layers are flattened only into a new directory");
        }

        Directory.CreateDirectory(full, (UnixFileMode)0x1ED);
        var flattener = new LayerFlattener(full, limits);
        try
        {
            for (var i = 0; i < layers.Count; i++)
            {
                onLayer?.Invoke(i, flattener._tarBytes);
                var stream = layers[i].Open();
                await using (stream.ConfigureAwait(false))
                {
                    await flattener.ApplyLayerAsync(stream, layers[i].MediaType, i, cancellationToken).ConfigureAwait(false);
                }
            }

            ImageInterop.Chmod(full, 0x1ED);
            return flattener.Result();
        }
        catch
        {
            RemoveTree(full);
            throw;
        }
    }

    /// <summary>The compression the first bytes show.</summary>
    internal static LayerCompression Detect(ReadOnlySpan<byte> head)
        => head.Length >= 2 && head[0] == 0x1F && head[1] == 0x8B ? LayerCompression.Gzip
        : head.Length >= 4 && head[0] == 0x28 && head[1] == 0xB5 && head[2] == 0x2F && head[3] == 0xFD ? LayerCompression.Zstd
        : LayerCompression.None;

    /// <summary>The compression a layer media type declares; null when it names none pyro knows (then the bytes decide alone).</summary>
    internal static LayerCompression? Declared(string? mediaType) => mediaType switch
    {
        null or "" => null,
        _ when mediaType.EndsWith("+gzip", StringComparison.Ordinal) || mediaType.EndsWith(".tar.gzip", StringComparison.Ordinal) => LayerCompression.Gzip,
        _ when mediaType.EndsWith("+zstd", StringComparison.Ordinal) || mediaType.EndsWith(".tar.zstd", StringComparison.Ordinal) => LayerCompression.Zstd,
        _ when mediaType.EndsWith(".tar", StringComparison.Ordinal) => LayerCompression.None,
        _ => null,
    };

    private async Task ApplyLayerAsync(Stream raw, string? mediaType, int index, CancellationToken cancellationToken)
    {
        _layers++;
        _thisLayer.Clear();
        var buffered = new BufferedStream(raw, ChunkSize);
        await using var bufferedScope = buffered.ConfigureAwait(false);
        var head = new byte[4];
        var got = 0;
        while (got < head.Length)
        {
            var n = await buffered.ReadAsync(head.AsMemory(got), cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                break;
            }

            got += n;
        }

        var compression = Detect(head.AsSpan(0, got));
        if (Declared(mediaType) is { } declared && declared != compression)
        {
            _mismatches.Add($"layer {index + 1}: {mediaType} holds {compression.ToString().ToLowerInvariant()} data");
        }

        var prefix = new PrefixedStream(head.AsMemory(0, got), buffered);
        Stream tar = compression switch
        {
            LayerCompression.Gzip => new GZipStream(prefix, CompressionMode.Decompress),
            LayerCompression.Zstd => new ZstdSharp.DecompressionStream(prefix),
            _ => prefix,
        };
        await using var tarScope = tar.ConfigureAwait(false);
        var guard = new TarGuardStream(tar, _limits.MaxBytes - _tarBytes);
        var reader = new TarReader(guard, leaveOpen: true);
        await using (reader.ConfigureAwait(false))
        {
            try
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
                        throw Corrupt(index, $"it is corrupt after {_entries} entries: {ex.Message}", ex);
                    }

                    if (entry is null)
                    {
                        break;
                    }

                    if (++_entries > _limits.MaxEntries)
                    {
                        throw TooLarge(index, $"the image has more than {_limits.MaxEntries} entries, the limit");
                    }

                    try
                    {
                        await ApplyEntryAsync(entry, index, cancellationToken).ConfigureAwait(false);
                    }
                    catch (PathTooLongException)
                    {
                        Skip(entry.Name, "name_too_long");
                    }
                }
            }
            catch (TarLimitException ex)
            {
                throw TooLarge(index, ex.Message, ex);
            }
            finally
            {
                _tarBytes += guard.BytesRead;
            }
        }

        // Directory times last, deepest first: writing into a directory moves its mtime.
        for (var i = _directoryTimes.Count - 1; i >= 0; i--)
        {
            if (PathStats.LStat(_directoryTimes[i].Path)?.Kind == PathKind.Directory)
            {
                ImageInterop.SetTimes(_directoryTimes[i].Path, _directoryTimes[i].Modified);
            }
        }

        _directoryTimes.Clear();
    }

    private async Task ApplyEntryAsync(TarEntry entry, int index, CancellationToken cancellationToken)
    {
        if (entry.EntryType == TarEntryType.GlobalExtendedAttributes)
        {
            return;
        }

        var name = ArchiveNames.Normalize(entry.Name, out var refusal);
        if (name is null)
        {
            Skip(entry.Name, refusal!);
            return;
        }

        if (name.Length == 0)
        {
            // "./": the root itself keeps pyro's mode and owner.
            return;
        }

        var segments = name.Split('/');
        var baseName = segments[^1];
        var isWhiteout = baseName.StartsWith(WhiteoutPrefix, StringComparison.Ordinal);

        // Whiteouts never create the directories on their way; nothing there means nothing to hide.
        var parent = ResolveInside(segments.AsSpan(0, segments.Length - 1), create: !isWhiteout, out var blocked);
        if (parent is null)
        {
            if (blocked is not null)
            {
                Skip(entry.Name, blocked);
            }

            return;
        }

        if (isWhiteout)
        {
            ApplyWhiteout(entry.Name, parent, baseName);
            return;
        }

        var full = parent + "/" + baseName;
        var existing = PathStats.LStat(full);
        switch (entry.EntryType)
        {
            case TarEntryType.Directory:
                if (existing?.Kind != PathKind.Directory)
                {
                    if (existing is not null)
                    {
                        RemoveTree(full);
                    }

                    Directory.CreateDirectory(full, (UnixFileMode)0x1C0);
                    if (PathStats.LStat(full)?.Kind != PathKind.Directory)
                    {
                        Skip(entry.Name, "not_a_directory");
                        return;
                    }
                }

                ImageInterop.LChown(full, Id(entry.Uid), Id(entry.Gid));
                ImageInterop.Chmod(full, (int)entry.Mode);
                _directoryTimes.Add((full, entry.ModificationTime));
                _directories++;
                break;

            case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                RemoveIfPresent(full, existing);
                await WriteFileAsync(entry, full, index, cancellationToken).ConfigureAwait(false);
                _files++;
                break;

            case TarEntryType.SymbolicLink:
                if (entry.LinkName.Length == 0 || entry.LinkName.Contains('\0'))
                {
                    Skip(entry.Name, "bad_link");
                    return;
                }

                RemoveIfPresent(full, existing);
                File.CreateSymbolicLink(full, entry.LinkName);
                ImageInterop.LChown(full, Id(entry.Uid), Id(entry.Gid));
                ImageInterop.SetTimes(full, entry.ModificationTime);
                _symlinks++;
                break;

            case TarEntryType.HardLink:
                if (ResolveHardLinkTarget(entry.LinkName) is not { } target)
                {
                    Skip(entry.Name, "hardlink_target");
                    return;
                }

                if (target == full)
                {
                    // A link to itself: it is already there.
                    return;
                }

                RemoveIfPresent(full, existing);
                ImageInterop.HardLink(target, full);
                _hardLinks++;
                break;

            case TarEntryType.CharacterDevice or TarEntryType.BlockDevice or TarEntryType.Fifo:
                var type = entry.EntryType switch
                {
                    TarEntryType.CharacterDevice => ImageInterop.S_IFCHR,
                    TarEntryType.BlockDevice => ImageInterop.S_IFBLK,
                    _ => ImageInterop.S_IFIFO,
                };
                if (entry is not PosixTarEntry posix || posix.DeviceMajor < 0 || posix.DeviceMinor < 0)
                {
                    Skip(entry.Name, "bad_device");
                    return;
                }

                RemoveIfPresent(full, existing);
                ImageInterop.MakeNode(full, type, (int)entry.Mode, posix.DeviceMajor, posix.DeviceMinor);
                ImageInterop.LChown(full, Id(entry.Uid), Id(entry.Gid));
                ImageInterop.Chmod(full, (int)entry.Mode);
                _nodes++;
                break;

            default:
                Skip(entry.Name, "unsupported_entry");
                return;
        }

        _thisLayer.Add(full);
    }

    private async Task WriteFileAsync(TarEntry entry, string full, int index, CancellationToken cancellationToken)
    {
        using var handle = ImageInterop.CreateNew(full);
        var file = new FileStream(handle, FileAccess.Write, bufferSize: 0);
        await using (file.ConfigureAwait(false))
        {
            if (entry.DataStream is { } data)
            {
                while (true)
                {
                    int read;
                    try
                    {
                        read = await data.ReadAsync(_buffer, cancellationToken).ConfigureAwait(false);
                    }
                    catch (Exception ex) when (IsArchiveError(ex))
                    {
                        throw Corrupt(index, $"the data of {SafeName(entry.Name)} is cut short or corrupt: {ex.Message}", ex);
                    }

                    if (read == 0)
                    {
                        break;
                    }

                    // Counted as written: a sparse entry can expand past its stored length.
                    _bytes += read;
                    if (_bytes > _limits.MaxBytes)
                    {
                        throw TooLarge(index, $"the image writes more than {_limits.MaxBytes} bytes, the limit");
                    }

                    await file.WriteAsync(_buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
                }
            }

            ImageInterop.SetOwnerAndMode(handle, full, Id(entry.Uid), Id(entry.Gid), (int)entry.Mode);
            File.SetLastWriteTimeUtc(handle, entry.ModificationTime.UtcDateTime);
        }
    }

    private void ApplyWhiteout(string entryName, string parent, string baseName)
    {
        if (baseName == OpaqueMarker)
        {
            // Hides what lower layers put in the directory; what this layer put there stays.
            foreach (var child in Directory.EnumerateFileSystemEntries(parent).ToList())
            {
                if (!_thisLayer.Contains(child))
                {
                    RemoveTree(child);
                }
            }

            _whiteouts++;
            return;
        }

        var hidden = baseName[WhiteoutPrefix.Length..];
        if (hidden is "" or "." or ".." || hidden.Contains('/'))
        {
            Skip(entryName, "bad_whiteout");
            return;
        }

        var target = parent + "/" + hidden;
        if (PathStats.LStat(target) is not null)
        {
            RemoveTree(target);
        }

        _whiteouts++;
    }

    /// <summary>
    /// The host path of <paramref name="segments"/> resolved inside the root as if it were
    /// <c>/</c>: <c>..</c> stops at the root, a symlink's target is followed relative to the
    /// directory holding it or, when absolute, to the root. Every component of the result is a
    /// real directory (checked with lstat), so the kernel follows no link on the way to it.
    /// Null when something is in the way (<paramref name="blocked"/> says what) or, without
    /// <paramref name="create"/>, when a directory is missing (<paramref name="blocked"/> null).
    /// </summary>
    private string? ResolveInside(ReadOnlySpan<string> segments, bool create, out string? blocked)
    {
        blocked = null;
        var resolved = new List<string>();
        var pending = new LinkedList<string>();
        foreach (var segment in segments)
        {
            pending.AddLast(segment);
        }

        var hops = 0;
        while (pending.First is { } node)
        {
            var segment = node.Value;
            pending.RemoveFirst();
            if (segment is "" or ".")
            {
                continue;
            }

            if (segment == "..")
            {
                if (resolved.Count > 0)
                {
                    resolved.RemoveAt(resolved.Count - 1);
                }

                continue;
            }

            var candidate = _root + "/" + string.Join('/', resolved.Append(segment));
            var stat = PathStats.LStat(candidate);
            if (stat is null)
            {
                if (!create)
                {
                    return null;
                }

                Directory.CreateDirectory(candidate, (UnixFileMode)0x1ED);
                stat = PathStats.LStat(candidate);

                // Made by this layer: an opaque marker later in it must not hide it.
                _thisLayer.Add(candidate);
            }

            switch (stat?.Kind)
            {
                case PathKind.Directory:
                    resolved.Add(segment);
                    continue;
                case PathKind.Symlink:
                    if (++hops > _limits.MaxSymlinkHops)
                    {
                        blocked = "symlink_loop";
                        return null;
                    }

                    var target = new FileInfo(candidate).LinkTarget ?? "";
                    if (target.StartsWith('/'))
                    {
                        resolved.Clear();
                    }

                    var parts = target.Split('/');
                    for (var i = parts.Length - 1; i >= 0; i--)
                    {
                        pending.AddFirst(parts[i]);
                    }

                    continue;
                default:
                    blocked = "not_a_directory";
                    return null;
            }
        }

        return resolved.Count == 0 ? _root : _root + "/" + string.Join('/', resolved);
    }

    /// <summary>A hard link's target: a regular file inside the root, its parents resolved like any entry's, itself not followed.</summary>
    private string? ResolveHardLinkTarget(string linkName)
    {
        var name = ArchiveNames.Normalize(linkName.TrimStart('/'), out _);
        if (string.IsNullOrEmpty(name))
        {
            return null;
        }

        var segments = name.Split('/');
        var parent = ResolveInside(segments.AsSpan(0, segments.Length - 1), create: false, out _);
        if (parent is null)
        {
            return null;
        }

        var target = parent + "/" + segments[^1];
        return PathStats.LStat(target)?.Kind == PathKind.File ? target : null;
    }

    private static void RemoveIfPresent(string full, PathStat? existing)
    {
        if (existing is not null)
        {
            RemoveTree(full);
        }
    }

    /// <summary>Removes a path without following links: a directory with all below it, anything else by unlink.</summary>
    internal static void RemoveTree(string path)
    {
        switch (PathStats.LStat(path)?.Kind)
        {
            case null:
                return;
            case PathKind.Directory:
                // Children first, each by lstat: a link inside is unlinked, never entered.
                foreach (var child in Directory.EnumerateFileSystemEntries(path, "*", new EnumerationOptions { AttributesToSkip = 0, RecurseSubdirectories = false }).ToList())
                {
                    RemoveTree(child);
                }

                Directory.Delete(path);
                return;
            default:
                File.Delete(path);
                return;
        }
    }

    /// <summary>Owner ids as the header gives them; a negative one (no such id) becomes root's.</summary>
    private int Id(int id)
    {
        if (id >= 0)
        {
            return id;
        }

        _skippedCount++;
        return 0;
    }

    private void Skip(string name, string reason)
    {
        _skippedCount++;
        if (_skipped.Count < MaxSkippedListed)
        {
            _skipped.Add(new SkippedEntry(SafeName(name), reason));
        }
    }

    private FlattenResult Result() => new()
    {
        Layers = _layers,
        Entries = _entries,
        Files = _files,
        Directories = _directories,
        Symlinks = _symlinks,
        HardLinks = _hardLinks,
        Nodes = _nodes,
        Whiteouts = _whiteouts,
        Bytes = _bytes,
        Skipped = _skipped,
        SkippedCount = _skippedCount,
        MediaTypeMismatches = _mismatches,
    };

    private static string SafeName(string name) => Trees.SafeTarExtractor.SanitizeName(name);

    private static EnvironmentException TooLarge(int index, string message, Exception? inner = null)
        => new("image_layer_too_large", $"layer {index + 1} of the image is refused: {message}", inner);

    private static EnvironmentException Corrupt(int index, string message, Exception? inner = null)
        => new("image_layer_corrupt", $"layer {index + 1} of the image is refused: {message}", inner);

    private static bool IsArchiveError(Exception ex) => ex is InvalidDataException or FormatException or EndOfStreamException
        or InvalidOperationException or NotSupportedException or ArgumentException or OverflowException or ZstdSharp.ZstdException;

    /// <summary>The bytes already read to detect the compression, then the rest of the stream.</summary>
    private sealed class PrefixedStream(ReadOnlyMemory<byte> prefix, Stream rest) : Stream
    {
        private ReadOnlyMemory<byte> _prefix = prefix;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_prefix.IsEmpty)
            {
                return rest.Read(buffer);
            }

            var n = Math.Min(buffer.Length, _prefix.Length);
            _prefix.Span[..n].CopyTo(buffer);
            _prefix = _prefix[n..];
            return n;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_prefix.IsEmpty)
            {
                return await rest.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            }

            var n = Math.Min(buffer.Length, _prefix.Length);
            _prefix.Span[..n].CopyTo(buffer.Span);
            _prefix = _prefix[n..];
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
