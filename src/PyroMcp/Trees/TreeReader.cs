using System.Formats.Tar;
using PyroMcp.Protocol.Files;

namespace PyroMcp.Trees;

/// <summary>One entry of a tree as tar carries it; content kept for regular files.</summary>
internal sealed record TreeEntry(string Kind, int Mode, byte[]? Content, string? LinkTarget);

/// <summary>Reads a workspace tree (a tar from the guest) into memory for diffing, bounded in size.</summary>
internal static class TreeReader
{
    /// <summary>The most file content a tree read for a diff may hold.</summary>
    internal const long MaxBytes = 256L * 1024 * 1024;

    /// <summary>
    /// Reads a tar (from the guest: untrusted) into a path map, bounded in size: every byte of it
    /// (headers too) counts, and no header makes the reader allocate more than a small record.
    /// </summary>
    /// <exception cref="GuestOperationException"><c>diff_too_large</c> over the limit; <c>bad_archive</c> when corrupt.</exception>
    internal static async Task<Dictionary<string, TreeEntry>> ReadAsync(Stream tar, CancellationToken cancellationToken)
    {
        try
        {
            return await ReadGuardedTreeAsync(new TarGuardStream(tar, MaxBytes), cancellationToken).ConfigureAwait(false);
        }
        catch (TarLimitException ex)
        {
            throw new GuestOperationException("diff_too_large", $"{ex.Message}; diff a smaller tree with export instead");
        }
        catch (Exception ex) when (ex is InvalidDataException or FormatException or EndOfStreamException or InvalidOperationException or NotSupportedException or ArgumentException or OverflowException)
        {
            throw new GuestOperationException("bad_archive", $"the tree's tar is corrupt: {ex.Message}");
        }
    }

    private static async Task<Dictionary<string, TreeEntry>> ReadGuardedTreeAsync(Stream tar, CancellationToken cancellationToken)
    {
        var entries = new Dictionary<string, TreeEntry>(StringComparer.Ordinal);
        long total = 0;
        var reader = new TarReader(tar, leaveOpen: true);
        await using var readerScope = reader.ConfigureAwait(false);
        while (await reader.GetNextEntryAsync(copyData: false, cancellationToken).ConfigureAwait(false) is { } entry)
        {
            var name = ArchiveNames.Normalize(entry.Name, out _) ?? "";
            if (name.Length == 0 || name.Split('/').Contains(".."))
            {
                continue;
            }

            var mode = (int)entry.Mode & 0xfff;
            switch (entry.EntryType)
            {
                case TarEntryType.Directory:
                    entries[name] = new TreeEntry("directory", mode, null, null);
                    break;
                case TarEntryType.SymbolicLink:
                    entries[name] = new TreeEntry("symlink", mode, null, entry.LinkName);
                    break;
                case TarEntryType.RegularFile or TarEntryType.V7RegularFile:
                    total += entry.Length;
                    if (total > MaxBytes)
                    {
                        throw new GuestOperationException("diff_too_large", $"the tree holds more than {MaxBytes >> 20} MiB of files");
                    }

                    using (var content = new MemoryStream())
                    {
                        if (entry.DataStream is not null)
                        {
                            // Bounded by what is copied, not by the header: a sparse entry reads back longer than it is stored.
                            await CopyBoundedAsync(entry.DataStream, content, MaxBytes - total + entry.Length, cancellationToken).ConfigureAwait(false);
                        }

                        entries[name] = new TreeEntry("file", mode, content.ToArray(), null);
                    }

                    break;
            }
        }

        return entries;
    }

    private static async Task CopyBoundedAsync(Stream from, MemoryStream to, long max, CancellationToken cancellationToken)
    {
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            int read;
            while ((read = await from.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
            {
                if (to.Length + read > max)
                {
                    throw new TarLimitException($"the tree holds more than {MaxBytes >> 20} MiB of files");
                }

                await to.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
