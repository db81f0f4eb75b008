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

/// <summary>The diff of a workspace against its baseline.</summary>
internal sealed partial class WorkspaceManager
{
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
}
