using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using PyroMcp.Host;

namespace PyroMcp.Disks;

/// <summary>What pyro reads of one inode: its raw fields, never the guest's text about them.</summary>
internal sealed record DiskInode(uint Number, ushort Mode, long Size, uint Flags, byte[] Block, ulong XattrBlock)
{
    internal bool IsDirectory => (Mode & 0xF000) == 0x4000;

    internal bool IsFile => (Mode & 0xF000) == 0x8000;

    internal bool IsSymlink => (Mode & 0xF000) == 0xA000;

    internal EntryKind Kind => IsFile ? EntryKind.File : IsDirectory ? EntryKind.Directory : IsSymlink ? EntryKind.Symlink : EntryKind.Other;
}

/// <summary>One directory entry as it is on disk: the inode it names and the name's raw bytes.</summary>
internal sealed record DiskDirent(uint Inode, byte[] Name);

/// <summary>
/// An ext4 image written by a hostile guest, read with debugfs without mounting anything. Names
/// and symlink targets never come from debugfs's text: directories are read as raw bytes
/// (<c>cat &lt;ino&gt;</c>) and parsed here, inodes as hex dumps (<c>idump</c>, which prints only hex
/// and printable characters), so no name, however it is made, can forge a line of output.
/// Every debugfs run has a timeout and a cap on the output kept.
/// </summary>
internal sealed class OfflineDisk(string image)
{
    internal const uint RootInode = 2;
    internal const uint JournalInode = 8;
    private const uint InlineDataFlag = 0x10000000;
    private const uint ExtentsFlag = 0x80000;
    private const int MaxSymlinkHops = 40;

    /// <summary>Most bytes of one directory pyro reads: a directory larger than this is listed in part.</summary>
    internal const int MaxDirectoryBytes = 64 * 1024 * 1024;

    internal static TimeSpan Timeout { get; set; } = TimeSpan.FromMinutes(5);

    internal string Image => image;

    // ---- debugfs -------------------------------------------------------------------------

    /// <summary>
    /// Runs debugfs with one command (-R) or a command file (-f), and gives its stdout to
    /// <paramref name="sink"/> until the sink returns false (then debugfs is killed). Returns stderr's tail.
    /// </summary>
    internal async Task<string> RunAsync(IEnumerable<string> args, Func<ReadOnlyMemory<byte>, bool> sink, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(HostTools.Debugfs.Require())
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = "/",
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["DEBUGFS_PAGER"] = "__none__";
        start.Environment["PAGER"] = "__none__";
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Timeout);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("debugfs did not start");
        process.StandardInput.Close();
        var stderr = new Vmm.BoundedTail(8 * 1024);
        var readErr = Task.Run(async () =>
        {
            var buffer = new byte[4096];
            int n;
            while ((n = await process.StandardError.BaseStream.ReadAsync(buffer, CancellationToken.None).ConfigureAwait(false)) > 0)
            {
                stderr.Append(buffer.AsSpan(0, n));
            }
        }, CancellationToken.None);
        try
        {
            var buffer = new byte[64 * 1024];
            var stdout = process.StandardOutput.BaseStream;
            while (true)
            {
                var n = await stdout.ReadAsync(buffer, timeout.Token).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }

                if (!sink(buffer.AsMemory(0, n)))
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            Kill(process);
            throw new GuestOperationException("disk_tool_timeout", $"debugfs took longer than {Timeout.TotalSeconds:0} s on the workspace's disk; the disk may be damaged. Start the workspace and use the file tools instead.");
        }
        finally
        {
            Kill(process);
            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            await readErr.ConfigureAwait(false);
        }

        return stderr.Text(20);
    }

    private static void Kill(Process process)
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
        }
    }

    /// <summary>At most <paramref name="max"/> bytes of an inode's content (<c>cat</c>, cut off there: a huge or sparse file never lands on the host).</summary>
    internal async Task<byte[]> CatAsync(uint inode, long max, CancellationToken cancellationToken)
    {
        var content = new MemoryStream();
        await RunAsync(["-R", $"cat <{inode}>", image], data =>
        {
            var room = max - content.Length;
            content.Write(data.Span[..(int)Math.Min(room, data.Length)]);
            return content.Length < max;
        }, cancellationToken).ConfigureAwait(false);
        return content.ToArray();
    }

    /// <summary>The raw inodes, read in one debugfs run; an inode debugfs cannot read is missing from the answer.</summary>
    internal async Task<Dictionary<uint, DiskInode>> InodesAsync(IReadOnlyCollection<uint> inodes, CancellationToken cancellationToken)
    {
        var result = new Dictionary<uint, DiskInode>();
        if (inodes.Count == 0)
        {
            return result;
        }

        var commands = Path.Combine(Path.GetDirectoryName(image)!, $"idump.{Guid.NewGuid():N}.cmd");
        await File.WriteAllLinesAsync(commands, inodes.Distinct().Select(i => $"idump <{i}>"), cancellationToken).ConfigureAwait(false);
        try
        {
            var text = new StringBuilder();
            var overflow = false;
            await RunAsync(["-f", commands, image], data =>
            {
                // idump prints hex and printable ASCII only, so this text is ours, not the guest's.
                text.Append(Encoding.Latin1.GetString(data.Span));
                overflow = text.Length > 4 * 1024 * inodes.Count + 4096;
                return !overflow;
            }, cancellationToken).ConfigureAwait(false);
            if (overflow)
            {
                throw new GuestOperationException("disk_unreadable", "debugfs printed more than an inode dump can hold: the workspace's disk is damaged");
            }

            uint? current = null;
            var bytes = new byte[1024];
            var length = 0;
            byte[]? previous = null;
            void Flush()
            {
                if (current is { } number && length >= 128)
                {
                    var raw = bytes.AsSpan(0, length);
                    var size = (long)BinaryPrimitives.ReadUInt32LittleEndian(raw[4..]) | ((long)BinaryPrimitives.ReadUInt32LittleEndian(raw[108..]) << 32);
                    var xattr = BinaryPrimitives.ReadUInt32LittleEndian(raw[104..]) | ((ulong)BinaryPrimitives.ReadUInt16LittleEndian(raw[118..]) << 32);
                    result[number] = new DiskInode(number, BinaryPrimitives.ReadUInt16LittleEndian(raw), size, BinaryPrimitives.ReadUInt32LittleEndian(raw[32..]), raw[40..100].ToArray(), xattr);
                }

                current = null;
                length = 0;
                previous = null;
            }

            foreach (var line in text.ToString().Split('\n'))
            {
                if (line.StartsWith("debugfs: idump <", StringComparison.Ordinal))
                {
                    Flush();
                    current = uint.Parse(line["debugfs: idump <".Length..].TrimEnd('>', '\r', ' '), CultureInfo.InvariantCulture);
                    continue;
                }

                if (current is null || line.Length < 6)
                {
                    continue;
                }

                if (line.StartsWith('*'))
                {
                    // Repeated lines: filled in when the next offset shows how many.
                    continue;
                }

                var offsetText = line[..4];
                if (!offsetText.All(c => c is >= '0' and <= '7'))
                {
                    continue;
                }

                var offset = Convert.ToInt32(offsetText, 8);
                var hex = line[6..].Split("  ")[0].Replace(" ", "", StringComparison.Ordinal);
                if (offset + 16 > bytes.Length || hex.Length % 2 != 0)
                {
                    continue;
                }

                while (previous is not null && length < offset)
                {
                    previous.CopyTo(bytes, length);
                    length += 16;
                }

                var row = Convert.FromHexString(hex);
                row.CopyTo(bytes, offset);
                length = offset + row.Length;
                previous = row.Length == 16 ? row : null;
            }

            Flush();
            return result;
        }
        finally
        {
            File.Delete(commands);
        }
    }

    /// <summary>The entries of a directory inode, parsed from its raw blocks; Complete is false when it was larger than <see cref="MaxDirectoryBytes"/>.</summary>
    internal async Task<(List<DiskDirent> Entries, bool Complete)> DirectoryAsync(DiskInode directory, CancellationToken cancellationToken)
    {
        if ((directory.Flags & InlineDataFlag) != 0)
        {
            throw new GuestOperationException("disk_unsupported", "a directory of the workspace's disk stores its entries inline (ext4 inline_data), which pyro does not read; start the workspace and use the file tools");
        }

        var raw = await CatAsync(directory.Number, MaxDirectoryBytes, cancellationToken).ConfigureAwait(false);
        return (ParseDirents(raw), directory.Size <= MaxDirectoryBytes);
    }

    /// <summary>
    /// ext4 linear directory records (inode, rec_len, name_len, type, name); htree index blocks
    /// look like one empty record and are skipped the same way. Parsing stops at the first record
    /// that does not fit, so garbage yields fewer entries, never invented ones.
    /// </summary>
    internal static List<DiskDirent> ParseDirents(ReadOnlySpan<byte> raw)
    {
        var entries = new List<DiskDirent>();
        var offset = 0;
        while (offset + 8 <= raw.Length)
        {
            var inode = BinaryPrimitives.ReadUInt32LittleEndian(raw[offset..]);
            int recordLength = BinaryPrimitives.ReadUInt16LittleEndian(raw[(offset + 4)..]);
            var nameLength = raw[offset + 6];
            if (recordLength < 8 || recordLength % 4 != 0 || offset + recordLength > raw.Length || 8 + nameLength > recordLength)
            {
                break;
            }

            var name = raw.Slice(offset + 8, nameLength);
            if (inode != 0 && nameLength > 0 && !name.SequenceEqual("."u8) && !name.SequenceEqual(".."u8) && name.IndexOf((byte)'/') < 0 && name.IndexOf((byte)0) < 0)
            {
                entries.Add(new DiskDirent(inode, name.ToArray()));
            }

            offset += recordLength;
        }

        return entries;
    }

    /// <summary>A symlink's target bytes: in the inode itself when short, else its first block.</summary>
    internal async Task<byte[]> LinkTargetAsync(DiskInode link, CancellationToken cancellationToken)
    {
        var length = (int)Math.Clamp(link.Size, 0, 4096);
        if ((link.Flags & (ExtentsFlag | InlineDataFlag)) == 0 && link.Size < 60)
        {
            return link.Block[..length];
        }

        return await CatAsync(link.Number, length, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The data block numbers of an inode (<c>blocks</c>: numbers only), at most <paramref name="max"/>.</summary>
    internal async Task<List<ulong>> BlocksAsync(uint inode, int max, CancellationToken cancellationToken)
    {
        var text = new StringBuilder();
        await RunAsync(["-R", $"blocks <{inode}>", image], data =>
        {
            text.Append(Encoding.Latin1.GetString(data.Span));
            return text.Length < max * 21;
        }, cancellationToken).ConfigureAwait(false);
        return text.ToString().Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries)
            .Select(t => ulong.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var b) ? b : 0).Where(b => b != 0).Take(max).ToList();
    }

    /// <summary>The file system's block size, from the superblock (offset 1024, s_log_block_size at 24).</summary>
    internal int BlockSize()
    {
        using var file = File.OpenRead(image);
        var superblock = new byte[1024];
        file.Position = 1024;
        file.ReadExactly(superblock);
        if (BinaryPrimitives.ReadUInt16LittleEndian(superblock.AsSpan(56)) != 0xEF53)
        {
            throw new GuestOperationException("disk_unreadable", "the workspace's disk holds no ext4 file system");
        }

        var log = BinaryPrimitives.ReadUInt32LittleEndian(superblock.AsSpan(24));
        return log <= 6 ? 1024 << (int)log : throw new GuestOperationException("disk_unreadable", "the workspace's disk has an impossible block size");
    }

    // ---- paths ---------------------------------------------------------------------------

    /// <summary>
    /// Walks <paramref name="components"/> from the root inside the image, following symlinks
    /// inside the image (never on the host) up to 40 hops. Returns the inode and the path it
    /// really is at, or null when a component does not exist.
    /// </summary>
    internal async Task<(DiskInode Inode, List<byte[]> Canonical)?> ResolveAsync(IReadOnlyList<byte[]> components, bool followLast, CancellationToken cancellationToken)
    {
        var hops = 0;
        var pending = new Queue<byte[]>(components);
        var stack = new List<(DiskInode Inode, byte[] Name)>();
        var root = (await InodesAsync([RootInode], cancellationToken).ConfigureAwait(false)).GetValueOrDefault(RootInode)
            ?? throw new GuestOperationException("disk_unreadable", "the root directory of the workspace's disk cannot be read");
        var current = root;
        while (pending.TryDequeue(out var name))
        {
            if (name.Length == 0 || name.AsSpan().SequenceEqual("."u8))
            {
                continue;
            }

            if (name.AsSpan().SequenceEqual(".."u8))
            {
                if (stack.Count > 0)
                {
                    stack.RemoveAt(stack.Count - 1);
                }

                current = stack.Count > 0 ? stack[^1].Inode : root;
                continue;
            }

            if (!current.IsDirectory)
            {
                return null;
            }

            var (entries, _) = await DirectoryAsync(current, cancellationToken).ConfigureAwait(false);
            var match = entries.FirstOrDefault(e => e.Name.AsSpan().SequenceEqual(name));
            if (match is null)
            {
                return null;
            }

            var inode = (await InodesAsync([match.Inode], cancellationToken).ConfigureAwait(false)).GetValueOrDefault(match.Inode);
            if (inode is null)
            {
                return null;
            }

            if (inode.IsSymlink && (pending.Count > 0 || followLast))
            {
                if (++hops > MaxSymlinkHops)
                {
                    throw new PyroInputException("disk_path_loop", "too many symbolic links inside the workspace's disk on the way to that path");
                }

                var target = await LinkTargetAsync(inode, cancellationToken).ConfigureAwait(false);
                var rest = pending.ToList();
                pending.Clear();
                if (target.Length > 0 && target[0] == (byte)'/')
                {
                    stack.Clear();
                    current = root;
                }

                foreach (var part in Split(target).Concat(rest))
                {
                    pending.Enqueue(part);
                }

                continue;
            }

            stack.Add((inode, name));
            current = inode;
        }

        return (current, stack.Select(s => s.Name).ToList());
    }

    internal static List<byte[]> Split(ReadOnlySpan<byte> path)
    {
        var parts = new List<byte[]>();
        foreach (var range in path.Split((byte)'/'))
        {
            if (range.End.Value > range.Start.Value)
            {
                parts.Add(path[range].ToArray());
            }
        }

        return parts;
    }

    internal static string Join(IEnumerable<byte[]> components) => "/" + string.Join('/', components.Select(c => Encoding.UTF8.GetString(c)));
}
