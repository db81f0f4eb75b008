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

/// <summary>Files of a running workspace: sync push, list, read, write, and export to the host.</summary>
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
            Mode = Directory.Exists(source) ? "directory" : "archive",
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

            return new TransferResult { WorkspaceId = record.Id, HostPath = fullOutput, GuestPath = guest, ArtifactType = EntryKind.File, Entries = 1, Bytes = written, DurationMs = clock.ElapsedMilliseconds };
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
                ArtifactType = EntryKind.Directory,
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
}
