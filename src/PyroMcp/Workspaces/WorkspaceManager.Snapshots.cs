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

/// <summary>Snapshots of /workspace: create (under the operation lock), list, delete.</summary>
internal sealed partial class WorkspaceManager
{
    // ---- snapshots ------------------------------------------------------------------------

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

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex SnapshotPattern();
}
