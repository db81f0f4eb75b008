using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Runtime;
using PyroMcp.Templates;
using PyroMcp.Vmm;

namespace PyroMcp;

/// <summary>Environments: list, inspect, pull, publish, remove, prune.</summary>
public sealed partial class Pyro
{
    /// <summary>Every catalog environment with its cache state.</summary>
    public Task<IReadOnlyList<EnvironmentInfo>> ListEnvironmentsAsync(CancellationToken cancellationToken = default)
        => Task.Run<IReadOnlyList<EnvironmentInfo>>(() => EnvironmentCatalog.All.Concat(Images.ImportedEnvironments.All(_store)).Select(_store.Inspect).ToList(), cancellationToken);

    /// <summary>One environment's cache state, paths and checksums. Throws <see cref="PyroInputException"/> for an unknown name.</summary>
    public Task<EnvironmentInfo> InspectEnvironmentAsync(string name, CancellationToken cancellationToken = default)
    {
        var spec = EnvironmentCatalog.Resolve(name, Options);
        return Task.Run(() => _store.Inspect(spec), cancellationToken);
    }

    /// <summary>
    /// Installs an environment into the cache unless a verified copy is already there: downloaded
    /// from its OCI source when one is configured (<see cref="PyroOptions.EnvironmentRegistry"/>,
    /// <see cref="PyroOptions.EnvironmentCatalogFile"/>), digests verified, else built from the
    /// Debian mirror. Idempotent; concurrent pulls of one environment take turns (one download).
    /// </summary>
    /// <exception cref="OciException">The registry refused, vanished or sent something else; nothing was installed.</exception>
    public async Task<EnvironmentInfo> PullEnvironmentAsync(string name, IProgress<PyroProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var spec = EnvironmentCatalog.Resolve(name, Options);
        var info = await _store.PullAsync(spec, progress, cancellationToken).ConfigureAwait(false);
        await PrepareDefaultTemplateAsync(info, progress, cancellationToken).ConfigureAwait(false);
        return info;
    }

    /// <summary>
    /// After a pull, the warm-start template of the default VM shape (1 vCPU, 1024 MiB, no network),
    /// so the first run or create is warm too. A host that cannot boot guests skips it; a failed
    /// build is reported and left to the first start, which boots cold and says why.
    /// </summary>
    private async Task PrepareDefaultTemplateAsync(EnvironmentInfo environment, IProgress<PyroProgress>? progress, CancellationToken cancellationToken)
    {
        if (GuestBootBlocker(Options.Accelerator) is { } blocker)
        {
            progress?.Report(new PyroProgress("template", "skipped", [new("environment", environment.Name), new("reason", blocker.Code)]));
            return;
        }

        try
        {
            var bundle = await RuntimeBundle.EnsureAsync(Options, progress, cancellationToken).ConfigureAwait(false);
            var accelerator = KvmProbe.Detect().Choose(Options.Accelerator).Chosen;
            var defaults = new RunRequest { Environment = environment.Name, Command = ["true"] };
            var inputs = new TemplateInputs(environment, bundle, new VmSpec(defaults.VcpuCount, defaults.MemMib, accelerator), Network: false);
            var (_, key, built) = await new TemplateStore(Options).EnsureAsync(inputs, progress, cancellationToken).ConfigureAwait(false);
            if (!built)
            {
                progress?.Report(new PyroProgress("template", "ready", [new("environment", environment.Name), new("key", key), new("cached", "true")]));
            }
        }
        catch (Exception ex) when (ex is PyroException or IOException or UnauthorizedAccessException)
        {
            progress?.Report(new PyroProgress("template", "failed", [new("environment", environment.Name), new("reason", ex.Message.Split('\n', 2)[0])]));
        }
    }

    /// <summary>
    /// Removes an installed environment from the cache: its disk and manifest, and the warm-start
    /// templates made from it. Refused (<c>environment_in_use</c>) while workspaces of this state
    /// directory are on it, since their disks are overlays on its disk. A catalog environment can be
    /// pulled again; an imported one is gone until imported again. Operator only: no MCP tool removes.
    /// </summary>
    /// <returns>What was removed; <see cref="EnvironmentRemoveResult.Removed"/> is false when nothing was installed.</returns>
    /// <exception cref="PyroInputException">An unknown name (an imported environment that is not installed is unknown).</exception>
    /// <exception cref="EnvironmentException"><c>environment_in_use</c>: workspaces are on it; nothing was removed.</exception>
    public async Task<EnvironmentRemoveResult> RemoveEnvironmentAsync(string name, CancellationToken cancellationToken = default)
    {
        var spec = EnvironmentCatalog.Resolve(name, Options);
        if (WorkspacesOn(spec.Name) is { Count: > 0 } users)
        {
            throw EnvironmentStore.InUse(spec.Name, users, "delete them first (pyro workspace delete ID)");
        }

        var freed = await _store.RemoveAsync(spec, cancellationToken).ConfigureAwait(false);
        var (templates, templateBytes) = new TemplateStore(Options).RemoveFor(spec.Name);
        return new EnvironmentRemoveResult(spec.Name, freed is not null, (freed ?? 0) + templateBytes, templates);
    }

    /// <summary>The workspaces of this state directory whose disks are overlays on <paramref name="environment"/>'s.</summary>
    private IReadOnlyList<string> WorkspacesOn(string environment)
        => Workspaces.Store.List().Where(w => w.Environment == environment).Select(w => w.Id).ToList();

    /// <summary>
    /// Removes cache entries no current environment uses (old versions, unfinished or damaged
    /// builds), and warm-start templates nothing current can restore (of an environment, runtime
    /// bundle or QEMU that changed since they were built, or damaged).
    /// </summary>
    public Task<PruneResult> PruneEnvironmentsAsync(CancellationToken cancellationToken = default)
        => Task.Run(() =>
        {
            var environments = _store.Prune();
            var bundles = Path.Combine(Options.RuntimeCacheDir, "bundles");
            var templates = new TemplateStore(Options).Prune(
                name => EnvironmentCatalog.All.Concat(Images.ImportedEnvironments.All(_store)).FirstOrDefault(e => e.Name == name) is { } spec && _store.Inspect(spec) is { Installed: true } env ? env.RootfsSha256 : null,
                id => Directory.Exists(Path.Combine(bundles, id)));
            return new PruneResult([.. environments.Removed, .. templates.Removed], environments.FreedBytes + templates.FreedBytes);
        }, cancellationToken);

    /// <summary>
    /// Publishes an installed environment to a registry as an OCI artifact: an OCI image manifest
    /// tagged <paramref name="reference"/>'s tag, a config of media type
    /// <c>application/vnd.pyro.environment.config.v1+json</c> and one layer, the root disk
    /// compressed with zstd. Uploads are chunked and resume; blobs the registry has are not sent.
    /// Credentials come from <c>OCI_REGISTRY_USERNAME</c>/<c>OCI_REGISTRY_PASSWORD</c> or the
    /// container auth file.
    /// </summary>
    /// <param name="name">An installed catalog environment, e.g. <c>debian:12</c>.</param>
    /// <param name="reference"><c>HOST[:PORT]/REPOSITORY:TAG</c>; a loopback registry is spoken to over HTTP, any other over HTTPS unless listed in <c>PYRO_OCI_INSECURE_REGISTRIES</c>.</param>
    /// <param name="progress">Upload progress in bytes.</param>
    /// <param name="cancellationToken">Cancels the publish; an upload resumes on the next.</param>
    /// <exception cref="PyroInputException">Unknown environment or malformed reference.</exception>
    /// <exception cref="EnvironmentException">The environment is not installed.</exception>
    /// <exception cref="OciException">The registry refused or vanished.</exception>
    public Task<EnvironmentPublishResult> PublishEnvironmentAsync(string name, string reference, IProgress<PyroProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var spec = EnvironmentCatalog.Resolve(name);
        return _store.PublishAsync(spec, reference, progress, cancellationToken);
    }
}
