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

/// <summary>Moving a whole tree between host and guest: seeding, baselines and snapshots.</summary>
internal sealed partial class WorkspaceManager
{
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
}
