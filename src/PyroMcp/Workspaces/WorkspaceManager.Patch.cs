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

/// <summary>Applying a unified or git binary patch to a workspace, all or nothing.</summary>
internal sealed partial class WorkspaceManager
{
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
}
