using PyroMcp.Runtime;
using PyroMcp.Vmm;

namespace PyroMcp.Templates;

/// <summary>How a VM came up: restored from a template or a fork image, or booted; and why it booted when a restore was wanted.</summary>
internal sealed record VmStartInfo(string Mode, string? ColdReason, bool TemplateBuilt)
{
    internal const string Warm = "warm";
    internal const string Cold = "cold";
    internal const string Fork = "fork";
}

/// <summary>
/// Starts a VM warm when it can and cold when it must: the one place that decides, so a run, a
/// workspace create and a fork agree. A template is built on first need; one that fails its
/// digest is deleted and built again (never resumed); one QEMU will not take is deleted and the
/// VM boots cold, with the reason reported.
/// </summary>
internal static class VmStarter
{
    internal static async Task<(QemuVm Vm, VmStartInfo Start)> StartAsync(string id, VmSpec spec, EnvironmentInfo environment, RuntimeBundle bundle, PyroOptions options,
        NetworkPolicy network, bool cold, IProgress<PyroProgress>? progress, string operation, CancellationToken cancellationToken, string? persistentDirectory = null)
    {
        string? reason = cold ? "a cold boot was asked for" : null;
        var built = false;
        if (!cold)
        {
            var templates = new TemplateStore(options);
            var inputs = new TemplateInputs(environment, bundle, spec, network.HasEgress());
            for (var attempt = 1; reason is null; attempt++)
            {
                SavedVm image;
                string key;
                try
                {
                    (image, key, var fresh) = await templates.EnsureAsync(inputs, progress, cancellationToken).ConfigureAwait(false);
                    built |= fresh;
                }
                catch (Exception ex) when (ex is PyroException or IOException or UnauthorizedAccessException)
                {
                    reason = "no template could be built: " + ex.Message;
                    break;
                }

                try
                {
                    var vm = await QemuVm.StartAsync(id, spec, environment.RootfsImage, bundle, options, cancellationToken, persistentDirectory, network, image).ConfigureAwait(false);
                    return (vm, new VmStartInfo(VmStartInfo.Warm, null, built));
                }
                catch (SavedVmDamagedException ex)
                {
                    templates.Remove(key);
                    progress?.Report(new PyroProgress(operation, "template_damaged", [new("reason", ex.Message), new("action", attempt == 1 ? "rebuilding it" : "booting cold")]));
                    if (attempt > 1)
                    {
                        reason = "the template was damaged again after a rebuild: " + ex.Message;
                    }
                }
                catch (Exception ex) when (ex is VmBootException or IOException)
                {
                    // A template this QEMU will not take is no use to the next start either.
                    templates.Remove(key);
                    reason = "the template could not be restored: " + FirstLine(ex.Message);
                }
            }

            progress?.Report(new PyroProgress(operation, "cold_boot", [new("reason", reason!)]));
            if (persistentDirectory is not null)
            {
                // A failed restore may have left the template's disk: the boot starts from a fresh one.
                File.Delete(Path.Combine(persistentDirectory, QemuVm.DiskFileName));
            }
        }

        var booted = await QemuVm.StartAsync(id, spec, environment.RootfsImage, bundle, options, cancellationToken, persistentDirectory, network).ConfigureAwait(false);
        return (booted, new VmStartInfo(VmStartInfo.Cold, reason, built));
    }

    private static string FirstLine(string text) => text.Split('\n', 2)[0];
}
