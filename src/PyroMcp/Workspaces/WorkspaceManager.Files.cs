using PyroMcp.Trees;
using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Pipelines;
using System.Text;
using System.Text.RegularExpressions;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Patching;
using PyroMcp.Protocol;
using PyroMcp.Protocol.Files;
using PyroMcp.Vmm;

namespace PyroMcp.Workspaces;

internal sealed partial class WorkspaceManager
{
    /// <summary>Most a tree (baseline, snapshot, diff side) may hold on the host: a guest cannot fill the host's disk or memory through us.</summary>
    internal const long MaxTreeBytes = 2L * 1024 * 1024 * 1024;
    private const long MaxExportEntries = 1_000_000;

    // ---- sync and files --------------------------------------------------------------------

    internal async Task<TransferResult> PushAsync(string idOrName, string source, string? destination, CancellationToken cancellationToken)
    {
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        if (!Directory.Exists(source) && !File.Exists(source))
        {
            throw new PyroInputException("source_not_found", $"{source} does not exist: give a directory or a .tar, .tar.gz or .tgz archive");
        }

        var guest = GuestPath(destination ?? GuestRoot);
        var clock = Stopwatch.StartNew();
        var connection = await ConnectAsync(record, cancellationToken).ConfigureAwait(false);
        await using var connectionScope = connection.ConfigureAwait(false);
        TarSummary summary;
        try
        {
            summary = await PushTreeAsync(connection, source, guest, clean: false, cancellationToken).ConfigureAwait(false);
        }
        catch (GuestOperationException ex)
        {
            // Entries before the failure are in place: say so, and how to get back to a known state.
            throw new GuestOperationException(ex.Code,
                $"sync into {guest} failed: {ex.Message}. Entries before the failure were written, so {guest} may hold part of the tree; " +
                $"push again, or reset the workspace to return to the baseline.");
        }

        return new TransferResult
        {
            WorkspaceId = record.Id,
            HostPath = Path.GetFullPath(source),
            GuestPath = guest,
            Entries = summary.Entries,
            Bytes = summary.Bytes,
            Skipped = summary.Skipped.Take(options.MaxSkippedEntries).Select(SanitizeSkip).ToList(),
            SkippedTotal = summary.Skipped.Count,
            DurationMs = clock.ElapsedMilliseconds,
        };
    }

    internal async Task<CappedList<FileEntry>> ListFilesAsync(string idOrName, string path, bool recursive, CancellationToken cancellationToken)
    {
        var connection = await ConnectAsync(await GetAsync(idOrName, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
        await using var connectionScope = connection.ConfigureAwait(false);
        var response = await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.FilesList, Files = new FilesRequest { Path = GuestPath(path), Recursive = recursive } }, null, null, cancellationToken).ConfigureAwait(false);
        // Only the entries kept are sanitized (copied); the guest's count of the rest is reported, not returned.
        return CappedList<FileEntry>.Take((response.Listing?.Entries ?? []).Select(SanitizeEntry), options.MaxListEntries);
    }

    internal async Task<FileContent> ReadFileAsync(string idOrName, string path, long maxBytes, CancellationToken cancellationToken)
    {
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var connection = await ConnectAsync(record, cancellationToken).ConfigureAwait(false);
        await using var connectionScope = connection.ConfigureAwait(false);
        var limit = maxBytes > 0 ? maxBytes : options.MaxOutputBytes;
        var content = new CappedBuffer(limit);
        var response = await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.FilesRead, Files = new FilesRequest { Path = GuestPath(path), MaxBytes = limit } },
            data => { content.Append(data.Span); return ValueTask.CompletedTask; }, null, cancellationToken).ConfigureAwait(false);
        var bytes = content.Bytes;
        return new FileContent(record.Id, GuestPath(path), bytes, bytes.Length, (response.File?.Truncated ?? false) || content.Overflowed);
    }

    internal async Task<FileEntry> WriteFileAsync(string idOrName, string path, Stream content, CancellationToken cancellationToken)
    {
        var connection = await ConnectAsync(await GetAsync(idOrName, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
        await using var connectionScope = connection.ConfigureAwait(false);
        var response = await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.FilesWrite, Files = new FilesRequest { Path = GuestPath(path), CreateParents = true } },
            null, content, cancellationToken).ConfigureAwait(false);
        return SanitizeEntry(response.File ?? new Protocol.FileEntry { Path = path, Type = "file" });
    }

    // ---- export ----------------------------------------------------------------------------

    internal async Task<TransferResult> ExportAsync(string idOrName, string path, string output, CancellationToken cancellationToken)
    {
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var fullOutput = Path.GetFullPath(output);
        if (File.Exists(fullOutput) || Directory.Exists(fullOutput))
        {
            throw new PyroInputException("output_exists", $"{fullOutput} already exists; export never overwrites: pick a new output path");
        }

        var guest = GuestPath(path);
        var clock = Stopwatch.StartNew();
        var connection = await ConnectAsync(record, cancellationToken).ConfigureAwait(false);
        await using var connectionScope = connection.ConfigureAwait(false);
        var kind = await KindOfAsync(connection, guest, cancellationToken).ConfigureAwait(false);
        Directory.CreateDirectory(Path.GetDirectoryName(fullOutput)!);
        if (kind == "file")
        {
            long written = 0;
            try
            {
                // 0644 less the umask: never group- or world-writable, whatever the guest's mode.
                var file = new FileStream(fullOutput, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = (UnixFileMode)0x1A4 });
                await using var fileScope = file.ConfigureAwait(false);
                await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.FilesRead, Files = new FilesRequest { Path = guest } },
                    async data =>
                    {
                        written += data.Length;
                        if (written > MaxTreeBytes)
                        {
                            throw new InvalidDataException($"the file is larger than the export limit of {MaxTreeBytes} bytes");
                        }

                        await file.WriteAsync(data, cancellationToken).ConfigureAwait(false);
                    }, null, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                File.Delete(fullOutput);
                throw;
            }

            return new TransferResult { WorkspaceId = record.Id, HostPath = fullOutput, GuestPath = guest, Entries = 1, Bytes = written, DurationMs = clock.ElapsedMilliseconds };
        }

        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 4 * 1024 * 1024, resumeWriterThreshold: 2 * 1024 * 1024));
        var extract = SafeTarExtractor.ExtractAsync(pipe.Reader.AsStream(), fullOutput, MaxTreeBytes, MaxExportEntries, cancellationToken);
        // A failed extraction stops the guest's tar stream: nobody would read it, and a reply left
        // streaming fills the pipe, then the channel, and stalls the workspace for every client.
        var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        _ = extract.ContinueWith(_ =>
        {
            try
            {
                stop.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The export already ended.
            }
        }, CancellationToken.None, TaskContinuationOptions.NotOnRanToCompletion, TaskScheduler.Default);
        try
        {
            await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.TarOut, Tar = new TarRequest { Path = guest } },
                async data =>
                {
                    var flushed = await pipe.Writer.WriteAsync(data, stop.Token).ConfigureAwait(false);
                    if (flushed.IsCompleted)
                    {
                        // The extractor stopped reading; its own error is the one to report.
                        await stop.CancelAsync().ConfigureAwait(false);
                        stop.Token.ThrowIfCancellationRequested();
                    }
                }, null, stop.Token).ConfigureAwait(false);
            await pipe.Writer.CompleteAsync().ConfigureAwait(false);
            var summary = await extract.ConfigureAwait(false);
            return new TransferResult
            {
                WorkspaceId = record.Id,
                HostPath = fullOutput,
                GuestPath = guest,
                Entries = summary.Files + summary.Directories + summary.Symlinks,
                Bytes = summary.Bytes,
                Skipped = summary.Skipped.Take(options.MaxSkippedEntries).ToList(),
                SkippedTotal = summary.Skipped.Count,
                DurationMs = clock.ElapsedMilliseconds,
            };
        }
        catch (Exception ex)
        {
            await pipe.Writer.CompleteAsync(ex).ConfigureAwait(false);
            Exception? extractFailure = null;
            try
            {
                await extract.ConfigureAwait(false);
            }
            catch (Exception failure)
            {
                extractFailure = failure;
            }

            if (Directory.Exists(fullOutput))
            {
                Directory.Delete(fullOutput, recursive: true);
            }

            // When the extractor failed first, the call was cancelled because of it: report the cause.
            var cause = ex is OperationCanceledException && extractFailure is not null && !cancellationToken.IsCancellationRequested ? extractFailure : ex;
            throw cause is InvalidDataException ? new GuestOperationException("export_too_large", cause.Message) : cause;
        }
        finally
        {
            stop.Dispose();
        }
    }

    private static async Task<string> KindOfAsync(Connection connection, string guest, CancellationToken cancellationToken)
    {
        if (guest == GuestRoot)
        {
            return "directory";
        }

        var parent = guest[..guest.LastIndexOf('/')] is { Length: > 0 } p ? p : "/";
        var name = guest[(guest.LastIndexOf('/') + 1)..];
        var listing = await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.FilesList, Files = new FilesRequest { Path = parent } }, null, null, cancellationToken).ConfigureAwait(false);
        var entry = listing.Listing?.Entries.FirstOrDefault(e => e.Path == name || e.Path.EndsWith("/" + name, StringComparison.Ordinal))
            ?? throw new GuestOperationException("not_found", $"{guest} does not exist in the workspace");
        return entry.Type == "symlink" ? "file" : entry.Type;
    }

    // ---- patch -----------------------------------------------------------------------------

    /// <summary>Most bytes the files one patch touches may hold together on the host while it is planned.</summary>
    private const long MaxPatchWorkingBytes = 512L * 1024 * 1024;

    internal Task<PatchResult> ApplyPatchAsync(string idOrName, string patchText, CancellationToken cancellationToken)
        => ApplyPatchAsync(idOrName, Encoding.UTF8.GetBytes(patchText), cancellationToken);

    internal async Task<PatchResult> ApplyPatchAsync(string idOrName, byte[] patchBytes, CancellationToken cancellationToken)
    {
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        IReadOnlyList<FilePatch> patches;
        try
        {
            patches = PatchParser.Parse(patchBytes);
        }
        catch (PatchFormatException ex)
        {
            throw new PyroInputException("invalid_patch", $"the patch is not a unified diff pyro can apply: {ex.Message}");
        }

        foreach (var patch in patches)
        {
            foreach (var name in new[] { patch.OldPath, patch.NewPath })
            {
                // One spelling per path, so that two patches of the same file are planned as one.
                if (name is not null && (name.Length == 0 || Protocol.Files.ArchiveNames.Normalize(name, out _) != name))
                {
                    throw new PyroInputException("invalid_patch", $"the patch names '{GuestAgentClient.Sanitize(name, 300)}': paths in a patch must be relative to /workspace, without '.', '..' or empty segments");
                }
            }
        }

        var connection = await ConnectAsync(record, cancellationToken).ConfigureAwait(false);
        await using var connectionScope = connection.ConfigureAwait(false);
        PatchPlan plan;
        try
        {
            plan = await PatchPlan.CreateAsync(patches, path => TryReadStateAsync(connection, path, cancellationToken), MaxPatchWorkingBytes).ConfigureAwait(false);
        }
        catch (PatchConflictException ex)
        {
            throw new PyroInputException("patch_does_not_apply", ex.Message + ". Nothing was changed.");
        }

        var done = new List<string>();
        try
        {
            // Removals first, as git apply does: a file may give way to a directory of the same name, or the reverse.
            foreach (var path in plan.Removals.ToList())
            {
                await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.FilesDelete, Files = new FilesRequest { Path = GuestPath(path) } }, null, null, cancellationToken).ConfigureAwait(false);
                if (!plan.Writes.Any(w => w.Path == path))
                {
                    done.Add(path);
                    await RemoveEmptyParentsAsync(path).ConfigureAwait(false);
                }
            }

            foreach (var (path, now, was) in plan.Writes.ToList())
            {
                if (now.IsSymlink)
                {
                    await WriteSymlinkAsync(connection, path, Encoding.UTF8.GetString(now.Content), cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    // Permission bits are set only when git's mode changes, so a 0600 file that is patched stays 0600.
                    int? mode = was is { IsSymlink: false } && was.Mode == now.Mode ? null : now.Mode & 0x1FF;
                    using var stream = new MemoryStream(now.Content, writable: false);
                    await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.FilesWrite, Files = new FilesRequest { Path = GuestPath(path), CreateParents = true, Mode = mode } }, null, stream, cancellationToken).ConfigureAwait(false);
                }

                done.Add(path);
            }
        }
        catch (GuestOperationException ex)
        {
            throw new GuestOperationException("patch_partially_applied",
                $"the patch applied in memory but changing the workspace failed: {ex.Message}. Already changed: {(done.Count == 0 ? "nothing" : string.Join(", ", done))}. " +
                $"The workspace now holds part of the patch: fix it by hand, or reset the workspace.");
        }

        return new PatchResult(record.Id, plan.Changed, plan.Created, plan.Modified, plan.Deleted);

        async Task RemoveEmptyParentsAsync(string path)
        {
            // git apply removes directories a deletion leaves empty; a directory that is not empty stays, and ends the walk.
            for (var slash = path.LastIndexOf('/'); slash > 0; slash = path.LastIndexOf('/', slash - 1))
            {
                try
                {
                    await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.FilesDelete, Files = new FilesRequest { Path = GuestPath(path[..slash]) } }, null, null, cancellationToken).ConfigureAwait(false);
                }
                catch (GuestOperationException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>A file or symlink of the workspace as a patch sees it; null when nothing is there.</summary>
    private static async Task<PatchFileState?> TryReadStateAsync(Connection connection, string path, CancellationToken cancellationToken)
    {
        var guest = GuestPath(path);
        var buffer = new CappedBuffer(PatchParser.MaxFileBytes);
        AgentResponse response;
        try
        {
            response = await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.FilesRead, Files = new FilesRequest { Path = guest, MaxBytes = PatchParser.MaxFileBytes } },
                data => { buffer.Append(data.Span); return ValueTask.CompletedTask; }, null, cancellationToken).ConfigureAwait(false);
        }
        catch (GuestOperationException ex) when (ex.Code == "not_found")
        {
            return null;
        }
        catch (GuestOperationException ex) when (ex.Code == "not_a_file")
        {
            var parent = path.Contains('/', StringComparison.Ordinal) ? path[..path.LastIndexOf('/')] : ".";
            var listing = await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.FilesList, Files = new FilesRequest { Path = GuestPath(parent) } }, null, null, cancellationToken).ConfigureAwait(false);
            var entry = listing.Listing?.Entries.FirstOrDefault(e => e.Path == path);
            if (entry is { Type: "symlink", LinkTarget: { Length: > 0 } target })
            {
                return new PatchFileState(Encoding.UTF8.GetBytes(target), PatchFileState.SymlinkMode);
            }

            if (entry is { Type: "directory" })
            {
                // No file there: a patch that turns a directory into a file deletes the files in it
                // first, and the removals (which run before any write) leave it empty and remove it.
                return null;
            }

            throw new PyroInputException("patch_does_not_apply", $"{guest} is a {GuestAgentClient.Sanitize(entry?.Type ?? "directory", 16)}, not a file or symlink; a patch changes only those. Nothing was changed.");
        }

        if (buffer.Overflowed || response.File?.Truncated == true)
        {
            throw new PyroInputException("patch_file_too_large",
                $"{guest} is larger than the {PatchParser.MaxFileBytes >> 20} MiB a patched file may have; nothing was changed. Change it with a command run in the workspace instead");
        }

        return new PatchFileState(buffer.Bytes, PatchFileState.GitFileMode(response.File?.Mode ?? 0x1A4));
    }

    /// <summary>Makes <paramref name="path"/> a symlink: a one-entry tar through the agent's confined extractor, which replaces whatever file is there.</summary>
    private static async Task WriteSymlinkAsync(Connection connection, string path, string target, CancellationToken cancellationToken)
    {
        using var tar = new MemoryStream();
        var writer = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true);
        await using (writer.ConfigureAwait(false))
        {
            await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.SymbolicLink, path) { LinkName = target, Mode = (UnixFileMode)0x1FF }, cancellationToken).ConfigureAwait(false);
        }

        tar.Position = 0;
        var response = await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.TarIn, Tar = new TarRequest { Path = GuestRoot } }, null, tar, cancellationToken).ConfigureAwait(false);
        if (response.Tar?.Skipped is { Count: > 0 } skipped)
        {
            throw new GuestOperationException("symlink_refused", $"the guest refused to make {path} a symlink: {GuestAgentClient.Sanitize(skipped[0].Reason, 100)}");
        }
    }

    // ---- baseline, diff --------------------------------------------------------------------

    internal async Task<WorkspaceDiff> DiffAsync(string idOrName, CancellationToken cancellationToken)
    {
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var baselinePath = Path.Combine(Store.WorkspaceDir(record.Id), BaselineFile);
        var connection = await ConnectAsync(record, cancellationToken).ConfigureAwait(false);
        await using var connectionScope = connection.ConfigureAwait(false);
        using var current = new MemoryStream();
        await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.TarOut, Tar = new TarRequest { Path = GuestRoot } },
            async data =>
            {
                if (current.Length + data.Length > TreeReader.MaxBytes)
                {
                    throw new GuestOperationException("diff_too_large", $"/workspace holds more than {TreeReader.MaxBytes >> 20} MiB; diff a smaller tree with export instead");
                }

                await current.WriteAsync(data, cancellationToken).ConfigureAwait(false);
            }, null, cancellationToken).ConfigureAwait(false);
        current.Position = 0;
        Dictionary<string, TreeEntry> before;
        var baseline = File.OpenRead(baselinePath);
        await using (baseline.ConfigureAwait(false))
        {
            before = await TreeReader.ReadAsync(baseline, cancellationToken).ConfigureAwait(false);
        }

        var after = await TreeReader.ReadAsync(current, cancellationToken).ConfigureAwait(false);
        return TreeDiff.Compare(record.Id, before, after);
    }

    // ---- snapshots and reset ---------------------------------------------------------------

    internal async Task<SnapshotInfo> CreateSnapshotAsync(string idOrName, string name, CancellationToken cancellationToken)
    {
        ValidateSnapshotName(name);
        var id = (await GetAsync(idOrName, cancellationToken).ConfigureAwait(false)).Id;
        // A snapshot holds the workspace's operation lock: no stop or reset can pull the VM away
        // mid-tree, and an interrupted one leaves only a .partial file that the repair removes.
        using var operation = await WorkspaceLocks.OperationAsync(Store.StateDir, id, cancellationToken).ConfigureAwait(false);
        var record = await GetAsync(id, cancellationToken).ConfigureAwait(false);
        var existing = Store.Snapshots(record.Id);
        if (existing.Any(s => s.Name == name))
        {
            throw new PyroInputException("snapshot_exists", $"snapshot '{name}' already exists: delete it first or pick another name");
        }

        // Both limits are checked before the guest is asked for anything.
        if (existing.Count >= options.MaxSnapshots)
        {
            throw new PyroInputException("snapshot_limit_reached",
                $"workspace {record.Id} has {existing.Count} snapshots, the most it may keep ({options.MaxSnapshots}): delete one and try again. " +
                "The limit is PyroOptions.MaxSnapshots, or PYRO_MAX_SNAPSHOTS.");
        }

        var snapshotsDir = Path.Combine(Store.WorkspaceDir(record.Id), SnapshotsDir);
        var used = SnapshotBytesOnDisk(snapshotsDir);
        var room = options.MaxSnapshotBytes - used;
        if (room <= 0)
        {
            throw SnapshotBytesExceeded(record.Id, used);
        }

        var connection = await ConnectAsync(record, cancellationToken).ConfigureAwait(false);
        await using var connectionScope = connection.ConfigureAwait(false);
        var file = Path.Combine(snapshotsDir, name + ".tar");
        TarSummary summary;
        try
        {
            summary = await SaveTreeAsync(connection, file, Math.Min(MaxTreeBytes, room), cancellationToken).ConfigureAwait(false);
        }
        catch (GuestOperationException ex) when (ex.Code == "tree_too_large" && room < MaxTreeBytes)
        {
            // SaveTreeAsync has removed the partial file already: nothing of this snapshot is left.
            throw SnapshotBytesExceeded(record.Id, used);
        }

        FaultPoint.Hit("snapshot.after-file");
        var snapshot = new SnapshotInfo(name, DateTimeOffset.UtcNow, summary.Entries, summary.Bytes);
        Store.AddSnapshot(record.Id, snapshot);
        return snapshot;
    }

    private PyroInputException SnapshotBytesExceeded(string id, long used)
        => new("snapshot_limit_reached",
            $"the snapshots of workspace {id} would take more than {options.MaxSnapshotBytes} bytes on the host ({used} bytes used before this one): " +
            "delete snapshots you no longer need, or make /workspace smaller. Nothing was kept of this snapshot. " +
            "The limit is PyroOptions.MaxSnapshotBytes, or PYRO_MAX_SNAPSHOT_BYTES.");

    /// <summary>What the snapshot files of a workspace take on disk now, measured rather than taken from the database.</summary>
    private static long SnapshotBytesOnDisk(string snapshotsDir)
        => Directory.Exists(snapshotsDir) ? new DirectoryInfo(snapshotsDir).EnumerateFiles("*.tar").Sum(f => f.Length) : 0;

    internal async Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(string idOrName, CancellationToken cancellationToken)
        => Store.Snapshots((await GetAsync(idOrName, cancellationToken).ConfigureAwait(false)).Id);

    internal async Task DeleteSnapshotAsync(string idOrName, string name, CancellationToken cancellationToken)
    {
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        if (!Store.DeleteSnapshot(record.Id, name))
        {
            throw new PyroInputException("snapshot_not_found", $"workspace {record.Id} has no snapshot '{name}'. List its snapshots to see which exist.");
        }

        File.Delete(Path.Combine(Store.WorkspaceDir(record.Id), SnapshotsDir, name + ".tar"));
    }

    private static void ValidateSnapshotName(string name)
    {
        if (!SnapshotPattern().IsMatch(name) || name == "baseline")
        {
            throw new PyroInputException("invalid_snapshot_name", $"invalid snapshot name '{name}': use 1-64 letters, digits, '.', '_' or '-'; 'baseline' is reserved");
        }
    }

    // ---- trees -----------------------------------------------------------------------------

    internal static async Task<TarSummary> PushTreeAsync(Connection connection, string source, string guestDestination, bool clean, CancellationToken cancellationToken)
    {
        Stream tar;
        Task writer = Task.CompletedTask;
        if (Directory.Exists(source))
        {
            var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 4 * 1024 * 1024, resumeWriterThreshold: 2 * 1024 * 1024));
            writer = Task.Run(async () =>
            {
                try
                {
                    await HostTarBuilder.WriteDirectoryAsync(source, pipe.Writer.AsStream(leaveOpen: true), cancellationToken).ConfigureAwait(false);
                    await pipe.Writer.CompleteAsync().ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    await pipe.Writer.CompleteAsync(ex).ConfigureAwait(false);
                }
            }, CancellationToken.None);
            tar = pipe.Reader.AsStream();
        }
        else
        {
            try
            {
                tar = HostTarBuilder.OpenArchive(source);
            }
            catch (ArgumentException ex)
            {
                throw new PyroInputException("unsupported_archive", ex.Message);
            }
        }

        await using (tar.ConfigureAwait(false))
        {
            var response = await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.TarIn, Tar = new TarRequest { Path = guestDestination, Clean = clean } }, null, tar, cancellationToken).ConfigureAwait(false);
            await writer.ConfigureAwait(false);
            return response.Tar ?? new TarSummary();
        }
    }

    /// <summary>Saves the guest's /workspace as a tar on the host (baseline, snapshot): written aside, then moved into place.</summary>
    internal static async Task<TarSummary> SaveTreeAsync(Connection connection, string file, long maxBytes, CancellationToken cancellationToken)
    {
        var temp = file + ".partial";
        long written = 0;
        try
        {
            TarSummary summary;
            var output = new FileStream(temp, FileMode.Create, FileAccess.Write);
            await using (output.ConfigureAwait(false))
            {
                var response = await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.TarOut, Tar = new TarRequest { Path = GuestRoot } },
                    async data =>
                    {
                        written += data.Length;
                        if (written > maxBytes)
                        {
                            throw new GuestOperationException("tree_too_large", $"/workspace packs to more than {maxBytes} bytes");
                        }

                        await output.WriteAsync(data, cancellationToken).ConfigureAwait(false);
                    }, null, cancellationToken).ConfigureAwait(false);
                await output.FlushAsync(cancellationToken).ConfigureAwait(false);
                output.Flush(flushToDisk: true);
                summary = response.Tar ?? new TarSummary();
            }

            FaultPoint.Hit("tree.after-partial");
            File.Move(temp, file, overwrite: true);
            return summary;
        }
        finally
        {
            File.Delete(temp);
        }
    }

    private static SkippedEntry SanitizeSkip(Protocol.SkippedEntry skip) => new(GuestAgentClient.Sanitize(skip.Name, 300), GuestAgentClient.Sanitize(skip.Reason, 200));

    private static FileEntry SanitizeEntry(Protocol.FileEntry entry) => new()
    {
        Path = GuestAgentClient.Sanitize(entry.Path, 4096),
        Type = entry.Type switch { "file" => EntryKind.File, "directory" => EntryKind.Directory, "symlink" => EntryKind.Symlink, _ => EntryKind.Other },
        Size = entry.Size,
        Mode = entry.Mode,
        LinkTarget = entry.LinkTarget is null ? null : GuestAgentClient.Sanitize(entry.LinkTarget, 4096),
        Truncated = entry.Truncated,
    };

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex SnapshotPattern();
}
