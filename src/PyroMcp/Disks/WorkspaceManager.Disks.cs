using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using PyroMcp.Disks;
using PyroMcp.Host;

namespace PyroMcp.Workspaces;

/// <summary>
/// The disk of a stopped workspace, read on the host without booting it and without mounting
/// anything: its qcow2 overlay is flattened into a private raw image inside the workspace's own
/// directory and read with debugfs (<see cref="OfflineDisk"/>). The operation lock is held for the
/// whole call, so nobody boots, resets or deletes the disk while it is read.
/// </summary>
internal sealed partial class WorkspaceManager
{
    /// <summary>Runtime-only state in the guest: hidden from disk list, refused by disk read, removed from a disk export.</summary>
    internal static readonly IReadOnlyList<string> ScrubbedGuestPaths = ["/run/pyro-secrets", "/run/pyro", "/var/lib/pyro"];

    internal const string DiskTempPrefix = "disk-tmp.";
    internal const long MaxDiskReadBytes = 64L * 1024 * 1024;
    private const int MaxScrubInodes = 200_000;

    internal async Task<CappedList<FileEntry>> ListDiskAsync(string idOrName, string path, bool recursive, CancellationToken cancellationToken)
    {
        var components = DiskPath(path);
        return await WithStoppedDiskAsync(idOrName, null, async (record, disk) =>
        {
            var scrubbed = await ScrubbedLocationsAsync(disk, cancellationToken).ConfigureAwait(false);
            var start = await ResolveVisibleAsync(disk, components, scrubbed, cancellationToken).ConfigureAwait(false);
            if (!start.Inode.IsDirectory)
            {
                throw new PyroInputException("disk_path_not_directory", $"{OfflineDisk.Join(components)} is not a directory on the workspace's disk: read it with disk read");
            }

            var kept = new List<FileEntry>();
            long total = 0;
            var queue = new Queue<(DiskInode Inode, List<byte[]> Canonical, string Relative)>();
            queue.Enqueue((start.Inode, start.Canonical, ""));
            while (queue.TryDequeue(out var directory))
            {
                var (entries, _) = await disk.DirectoryAsync(directory.Inode, cancellationToken).ConfigureAwait(false);
                var visible = entries.Where(e => !IsScrubbed([.. directory.Canonical, e.Name], scrubbed)).ToList();
                total += visible.Count;
                var room = options.MaxListEntries - kept.Count;
                if (room <= 0)
                {
                    continue;
                }

                var shown = visible.Take(room).ToList();
                var inodes = await disk.InodesAsync(shown.Select(e => e.Inode).ToList(), cancellationToken).ConfigureAwait(false);
                foreach (var entry in shown)
                {
                    var relative = directory.Relative + Encoding.UTF8.GetString(entry.Name);
                    var inode = inodes.GetValueOrDefault(entry.Inode);
                    string? target = null;
                    if (inode is { IsSymlink: true })
                    {
                        target = Encoding.UTF8.GetString(await disk.LinkTargetAsync(inode, cancellationToken).ConfigureAwait(false));
                    }

                    kept.Add(new FileEntry
                    {
                        Path = SanitizeName(relative, 4096),
                        Type = inode?.Kind ?? EntryKind.Other,
                        Size = inode?.Size ?? 0,
                        Mode = (inode?.Mode ?? 0) & 0xFFF,
                        LinkTarget = target is null ? null : SanitizeName(target, 4096),
                    });
                    if (recursive && inode is { IsDirectory: true })
                    {
                        queue.Enqueue((inode, [.. directory.Canonical, entry.Name], relative + "/"));
                    }
                }
            }

            return new CappedList<FileEntry>(kept, total);
        }, cancellationToken).ConfigureAwait(false);
    }

    internal async Task<FileContent> ReadDiskAsync(string idOrName, string path, long maxBytes, CancellationToken cancellationToken)
    {
        if (maxBytes < 0 || maxBytes > MaxDiskReadBytes)
        {
            throw new PyroInputException("invalid_max_bytes", $"max bytes must be between 1 and {MaxDiskReadBytes} (got {maxBytes}); 0 means the default of {options.MaxOutputBytes}", "maxBytes");
        }

        var components = DiskPath(path);
        var limit = maxBytes > 0 ? maxBytes : options.MaxOutputBytes;
        return await WithStoppedDiskAsync(idOrName, null, async (record, disk) =>
        {
            var scrubbed = await ScrubbedLocationsAsync(disk, cancellationToken).ConfigureAwait(false);
            var (inode, canonical) = await ResolveVisibleAsync(disk, components, scrubbed, cancellationToken).ConfigureAwait(false);
            if (inode.IsDirectory)
            {
                throw new PyroInputException("disk_path_is_directory", $"{OfflineDisk.Join(components)} is a directory on the workspace's disk: list it with disk list");
            }

            if (!inode.IsFile)
            {
                throw new PyroInputException("disk_path_not_file", $"{OfflineDisk.Join(components)} is not a regular file on the workspace's disk (a device, socket or FIFO)");
            }

            var content = await disk.CatAsync(inode.Number, Math.Min(limit, inode.Size), cancellationToken).ConfigureAwait(false);
            return new FileContent(record.Id, SanitizeName(OfflineDisk.Join(canonical), 4096), content, content.Length, inode.Size > content.Length);
        }, cancellationToken).ConfigureAwait(false);
    }

    internal async Task<DiskExportResult> ExportDiskAsync(string idOrName, string output, IProgress<PyroProgress>? progress, CancellationToken cancellationToken)
    {
        var fullOutput = Path.GetFullPath(output);
        CheckNewOutput(fullOutput);
        var clock = Stopwatch.StartNew();
        return await WithStoppedDiskAsync(idOrName, progress, async (record, disk) =>
        {
            void Report(string phase) => progress?.Report(new PyroProgress("workspace-disk-export", phase, [new("workspace_id", record.Id)]));
            Report("scrub");
            var removed = await ScrubAsync(disk, cancellationToken).ConfigureAwait(false);
            Report("check");
            var check = await ProcessRunner.RunAsync(HostTools.E2fsck.Require(), ["-fn", disk.Image], cancellationToken: cancellationToken).ConfigureAwait(false);
            if (check.ExitCode != 0)
            {
                throw new GuestOperationException("disk_export_check_failed", $"the scrubbed image did not pass e2fsck -fn (exit {check.ExitCode}), so nothing was written to {fullOutput}: {check.StderrTail}{TailOf(check.Stdout)}");
            }

            Report("write");
            FaultPoint.Hit("disk-export.before-write");
            CheckNewOutput(fullOutput);
            File.SetUnixFileMode(disk.Image, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            PlaceOutput(disk.Image, fullOutput, Path.GetDirectoryName(disk.Image)!);
            return new DiskExportResult(record.Id, fullOutput, new FileInfo(fullOutput).Length, removed, clock.ElapsedMilliseconds);
        }, cancellationToken).ConfigureAwait(false);
    }

    // ---- the stopped disk ----------------------------------------------------------------

    /// <summary>Takes the operation lock, checks the workspace is stopped, flattens its disk into a private raw image and hands it to <paramref name="work"/>; the image is gone afterwards.</summary>
    private async Task<T> WithStoppedDiskAsync<T>(string idOrName, IProgress<PyroProgress>? progress, Func<WorkspaceRecord, OfflineDisk, Task<T>> work, CancellationToken cancellationToken)
    {
        HostTools.Debugfs.Require();
        HostTools.E2fsck.Require();
        var id = (await GetAsync(idOrName, cancellationToken).ConfigureAwait(false)).Id;
        using var operation = await WorkspaceLocks.OperationAsync(Store.StateDir, id, cancellationToken).ConfigureAwait(false);
        // Read again under the lock: a start that finished while we waited must be seen.
        var record = Store.Find(id) ?? throw new PyroInputException("workspace_not_found", $"no workspace '{idOrName}': list the workspaces to see which exist");
        if (record.State != WorkspaceState.Stopped)
        {
            throw new WorkspaceStateException("workspace_not_stopped",
                $"workspace {record.Id} is {record.State.ToName()}; the disk tools read the disk of a stopped workspace only. Stop it first: pyro workspace stop {record.Id}");
        }

        var directory = Store.WorkspaceDir(record.Id);
        var overlay = Path.Combine(directory, WorkspaceLifecycle.DiskFile);
        if (!File.Exists(overlay))
        {
            throw new GuestOperationException("disk_missing", $"workspace {record.Id} has no disk file ({WorkspaceLifecycle.DiskFile}); reset it to get a fresh disk");
        }

        RemoveStaleDiskTemps(directory);
        var temp = Path.Combine(directory, DiskTempPrefix + Guid.NewGuid().ToString("N")[..12]);
        PrivateDirectory.Ensure(temp);
        try
        {
            var raw = Path.Combine(temp, "disk.raw");
            progress?.Report(new PyroProgress("workspace-disk-export", "convert", [new("workspace_id", record.Id)]));
            var convert = await ProcessRunner.RunAsync(HostTools.QemuImg.Require(), ["convert", "-q", "-f", "qcow2", "-O", "raw", overlay, raw], cancellationToken: cancellationToken).ConfigureAwait(false);
            if (convert.ExitCode != 0)
            {
                throw new GuestOperationException("disk_unreadable", $"qemu-img could not read the workspace's disk (exit {convert.ExitCode}): {convert.StderrTail}");
            }

            // A guest powered off with its root still mounted leaves a journal to replay: without
            // the replay debugfs would read stale metadata, and a later e2fsck would replay the
            // journal over the scrub. Done on the private copy only.
            var replay = await ProcessRunner.RunAsync(HostTools.E2fsck.Require(), ["-E", "journal_only", "-y", raw], cancellationToken: cancellationToken).ConfigureAwait(false);
            if (replay.ExitCode >= 4)
            {
                throw new GuestOperationException("disk_unreadable", $"the journal of the workspace's disk cannot be replayed (e2fsck exit {replay.ExitCode}): {replay.StderrTail}{TailOf(replay.Stdout)}");
            }

            return await work(record, new OfflineDisk(raw)).ConfigureAwait(false);
        }
        finally
        {
            RemoveDiskTemp(temp);
        }
    }

    /// <summary>
    /// Temp directories of disk calls: any present when a call holds the operation lock belongs to a
    /// call that died (kill -9). A note in one names the export temp it left beside the output.
    /// </summary>
    private static void RemoveStaleDiskTemps(string workspaceDir)
    {
        foreach (var stale in Directory.EnumerateDirectories(workspaceDir, DiskTempPrefix + "*"))
        {
            RemoveDiskTemp(stale);
        }
    }

    private static void RemoveDiskTemp(string temp)
    {
        var note = Path.Combine(temp, "pending-output");
        if (File.Exists(note))
        {
            var pending = File.ReadAllText(note).Trim();
            if (Path.GetFileName(pending).StartsWith(".pyro-disk-export.", StringComparison.Ordinal))
            {
                File.Delete(pending);
            }
        }

        if (Directory.Exists(temp))
        {
            Directory.Delete(temp, recursive: true);
        }
    }

    private static void CheckNewOutput(string fullOutput)
    {
        if (UnixStat.LStat(fullOutput) is not null)
        {
            throw new PyroInputException("output_exists", $"{fullOutput} already exists; export never overwrites: pick a new output path", "output");
        }

        if (!Directory.Exists(Path.GetDirectoryName(fullOutput)))
        {
            throw new PyroInputException("output_parent_missing", $"the directory of {fullOutput} does not exist: create it first", "output");
        }
    }

    /// <summary>
    /// Gives the image its final name without ever replacing a file: link(2) fails when the name
    /// exists. Across file systems the image is first copied (holes kept) to a temp beside the
    /// output, named in a note so a killed call's leftover is removed by the next one.
    /// </summary>
    private static void PlaceOutput(string image, string fullOutput, string temp)
    {
        if (Link(image, fullOutput) == 0)
        {
            return;
        }

        var errno = Marshal.GetLastPInvokeError();
        const int Exdev = 18;
        const int Eexist = 17;
        if (errno == Eexist)
        {
            throw new PyroInputException("output_exists", $"{fullOutput} already exists; export never overwrites: pick a new output path", "output");
        }

        if (errno != Exdev)
        {
            throw new IOException($"cannot create {fullOutput}: errno {errno}");
        }

        var beside = Path.Combine(Path.GetDirectoryName(fullOutput)!, ".pyro-disk-export." + Guid.NewGuid().ToString("N")[..12]);
        File.WriteAllText(Path.Combine(temp, "pending-output"), beside);
        try
        {
            CopySparse(image, beside);
            if (Link(beside, fullOutput) != 0)
            {
                errno = Marshal.GetLastPInvokeError();
                throw errno == Eexist
                    ? new PyroInputException("output_exists", $"{fullOutput} already exists; export never overwrites: pick a new output path", "output")
                    : new IOException($"cannot create {fullOutput}: errno {errno}");
            }
        }
        finally
        {
            File.Delete(beside);
        }
    }

    private static void CopySparse(string source, string destination)
    {
        using var input = File.OpenRead(source);
        using var output = new FileStream(destination, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite });
        var buffer = new byte[1024 * 1024];
        int n;
        while ((n = input.Read(buffer)) > 0)
        {
            if (buffer.AsSpan(0, n).ContainsAnyExcept((byte)0))
            {
                output.Write(buffer, 0, n);
            }
            else
            {
                output.Seek(n, SeekOrigin.Current);
            }
        }

        output.SetLength(input.Length);
        output.Flush(flushToDisk: true);
    }

    [LibraryImport("libc", EntryPoint = "link", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Link(string oldPath, string newPath);

    // ---- paths and scrubbing -------------------------------------------------------------

    /// <summary>A user path as components: relative ones under /workspace, absolute ones from the root; <c>..</c> refused.</summary>
    internal static List<byte[]> DiskPath(string path)
    {
        if (path.Contains('\0'))
        {
            throw new PyroInputException("disk_path_invalid", "the path holds a NUL character", "path");
        }

        var full = string.IsNullOrWhiteSpace(path) || path == "." ? GuestRoot : path.StartsWith('/') ? path : GuestRoot + "/" + path;
        var parts = full.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToList();
        if (parts.Contains(".."))
        {
            throw new PyroInputException("disk_path_invalid", $"'{SanitizeName(path, 300)}' holds '..': give the path without it (relative paths are under /workspace, absolute ones from the disk's root)", "path");
        }

        return parts.Select(p => Encoding.UTF8.GetBytes(p)).ToList();
    }

    /// <summary>Where the scrubbed paths really are in this image: as written and, when they go through symlinks, where those lead.</summary>
    private static async Task<List<List<byte[]>>> ScrubbedLocationsAsync(OfflineDisk disk, CancellationToken cancellationToken)
    {
        var locations = new List<List<byte[]>>();
        foreach (var path in ScrubbedGuestPaths)
        {
            var literal = OfflineDisk.Split(Encoding.UTF8.GetBytes(path));
            locations.Add(literal);
            if (await disk.ResolveAsync(literal, followLast: true, cancellationToken).ConfigureAwait(false) is { } resolved)
            {
                locations.Add(resolved.Canonical);
            }
        }

        return locations;
    }

    private static bool IsScrubbed(IReadOnlyList<byte[]> canonical, List<List<byte[]>> scrubbed)
        => scrubbed.Any(s => s.Count <= canonical.Count && s.Select((part, i) => part.AsSpan().SequenceEqual(canonical[i])).All(x => x));

    private static async Task<(DiskInode Inode, List<byte[]> Canonical)> ResolveVisibleAsync(OfflineDisk disk, List<byte[]> components, List<List<byte[]>> scrubbed, CancellationToken cancellationToken)
    {
        if (IsScrubbed(components, scrubbed))
        {
            throw Scrubbed(components);
        }

        var resolved = await disk.ResolveAsync(components, followLast: true, cancellationToken).ConfigureAwait(false)
            ?? throw new PyroInputException("disk_path_not_found", $"{SanitizeName(OfflineDisk.Join(components), 4096)} does not exist on the workspace's disk", "path");
        if (IsScrubbed(resolved.Canonical, scrubbed))
        {
            throw Scrubbed(components);
        }

        return resolved;
    }

    private static PyroInputException Scrubbed(List<byte[]> components)
        => new("disk_path_scrubbed", $"{SanitizeName(OfflineDisk.Join(components), 4096)} is runtime-only state of pyro ({string.Join(", ", ScrubbedGuestPaths)}), which the disk tools never show or export", "path");

    /// <summary>
    /// Removes the scrubbed paths from the raw image: every inode under them is freed and cleared
    /// (clri zeroes the inode itself: short symlink targets and in-inode attributes), their entries
    /// unlinked; e2fsck then repairs the counts and discards every free block (on a regular file that
    /// punches holes, so freed data reads as zeros); finally the journal's old blocks are zeroed.
    /// </summary>
    private static async Task<IReadOnlyList<string>> ScrubAsync(OfflineDisk disk, CancellationToken cancellationToken)
    {
        var removed = new List<string>();
        var kill = new List<uint>();
        var unlink = new List<(uint Parent, byte[] Name)>();
        foreach (var path in ScrubbedGuestPaths)
        {
            foreach (var target in new[] { false, true })
            {
                var components = OfflineDisk.Split(Encoding.UTF8.GetBytes(path));
                if (await disk.ResolveAsync(components, followLast: target, cancellationToken).ConfigureAwait(false) is not { } found || found.Canonical.Count == 0)
                {
                    continue;
                }

                var parent = await disk.ResolveAsync(found.Canonical[..^1], followLast: true, cancellationToken).ConfigureAwait(false);
                if (parent is null)
                {
                    continue;
                }

                unlink.Add((parent.Value.Inode.Number, found.Canonical[^1]));
                await CollectAsync(disk, found.Inode, kill, cancellationToken).ConfigureAwait(false);
                removed.Add(OfflineDisk.Join(found.Canonical));
            }
        }

        if (unlink.Count > 0)
        {
            var commands = new List<string>();
            foreach (var (parent, name) in unlink.Distinct())
            {
                // A name with a space or quote cannot be given to debugfs safely; such a name is not one of ours, and its inode is freed anyway.
                var text = Encoding.UTF8.GetString(name);
                if (text.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
                {
                    commands.Add($"cd <{parent}>");
                    commands.Add($"unlink {text}");
                }
            }

            foreach (var inode in kill.Distinct().Where(i => i > 11))
            {
                commands.Add($"kill_file <{inode}>");
                commands.Add($"clri <{inode}>");
            }

            var file = Path.Combine(Path.GetDirectoryName(disk.Image)!, "scrub.cmd");
            await File.WriteAllLinesAsync(file, commands, cancellationToken).ConfigureAwait(false);
            await disk.RunAsync(["-w", "-f", file, disk.Image], _ => true, cancellationToken).ConfigureAwait(false);
            File.Delete(file);
        }

        // Two passes: e2fsck turns discard off in a run that repairs anything (the unlinks leave counts
        // to fix), so the first repairs and the second, on a clean file system, discards every free block.
        var repair = await ProcessRunner.RunAsync(HostTools.E2fsck.Require(), ["-fy", disk.Image], cancellationToken: cancellationToken).ConfigureAwait(false);
        if (repair.ExitCode >= 4)
        {
            throw new GuestOperationException("disk_export_check_failed", $"e2fsck could not repair the workspace's disk after scrubbing (exit {repair.ExitCode}); nothing was exported: {repair.StderrTail}{TailOf(repair.Stdout)}");
        }

        var discard = await ProcessRunner.RunAsync(HostTools.E2fsck.Require(), ["-fy", "-E", "discard", disk.Image], cancellationToken: cancellationToken).ConfigureAwait(false);
        if (discard.ExitCode != 0)
        {
            throw new GuestOperationException("disk_export_check_failed", $"e2fsck still found problems after repairing the scrubbed disk (exit {discard.ExitCode}), so its free blocks were not zeroed; nothing was exported: {discard.StderrTail}{TailOf(discard.Stdout)}");
        }

        await ZeroJournalAsync(disk, cancellationToken).ConfigureAwait(false);
        return removed.Distinct().ToList();
    }

    private static async Task CollectAsync(OfflineDisk disk, DiskInode top, List<uint> kill, CancellationToken cancellationToken)
    {
        var queue = new Queue<DiskInode>([top]);
        var seen = new HashSet<uint>();
        while (queue.TryDequeue(out var inode))
        {
            if (!seen.Add(inode.Number) || seen.Count > MaxScrubInodes)
            {
                continue;
            }

            kill.Add(inode.Number);
            if (inode.IsDirectory)
            {
                var (entries, _) = await disk.DirectoryAsync(inode, cancellationToken).ConfigureAwait(false);
                var children = await disk.InodesAsync(entries.Select(e => e.Inode).Where(n => !seen.Contains(n)).ToList(), cancellationToken).ConfigureAwait(false);
                foreach (var child in children.Values)
                {
                    queue.Enqueue(child);
                }
            }
        }

        if (seen.Count > MaxScrubInodes)
        {
            throw new GuestOperationException("disk_export_too_large", $"the runtime-only state on the disk holds more than {MaxScrubInodes} entries; reset the workspace, or export its files with workspace export while it runs");
        }
    }

    /// <summary>After a clean e2fsck the journal is empty; its blocks past the first (the journal's superblock) only hold old copies of metadata, zeroed here.</summary>
    private static async Task ZeroJournalAsync(OfflineDisk disk, CancellationToken cancellationToken)
    {
        var blockSize = disk.BlockSize();
        var blocks = await disk.BlocksAsync(OfflineDisk.JournalInode, 1 << 22, cancellationToken).ConfigureAwait(false);
        var image = new FileStream(disk.Image, FileMode.Open, FileAccess.ReadWrite);
        await using var imageScope = image.ConfigureAwait(false);
        var buffer = new byte[blockSize];
        var zeros = new byte[blockSize];
        foreach (var block in blocks.Skip(1))
        {
            image.Position = (long)block * blockSize;
            if (image.Position + blockSize > image.Length)
            {
                continue;
            }

            await image.ReadExactlyAsync(buffer, cancellationToken).ConfigureAwait(false);
            if (buffer.AsSpan().ContainsAnyExcept((byte)0))
            {
                image.Position = (long)block * blockSize;
                await image.WriteAsync(zeros, cancellationToken).ConfigureAwait(false);
            }
        }

        await image.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private static string TailOf(string text) => text.Length > 2000 ? text[^2000..] : text;

    /// <summary>Names from the disk as one printable line: control characters (newlines included) become '?'; invalid UTF-8 became U+FFFD when decoded.</summary>
    internal static string SanitizeName(string text, int maxLength)
        => new(text.Take(maxLength).Select(c => char.IsControl(c) ? '?' : c).ToArray());

    // Every result that carries names or content from the disk goes through one of these, so
    // secret redaction can be applied in one place.
}
