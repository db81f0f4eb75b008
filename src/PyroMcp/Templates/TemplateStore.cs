using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using PyroMcp.Host;
using PyroMcp.Runtime;
using PyroMcp.Vmm;

namespace PyroMcp.Templates;

/// <summary>What one template was built from, and the digests its files must match.</summary>
internal sealed record TemplateManifest
{
    public required string Key { get; init; }
    public required string Environment { get; init; }
    public required string RootfsSha256 { get; init; }
    public required string BundleId { get; init; }
    public required string Qemu { get; init; }
    public required int VcpuCount { get; init; }
    public required int MemMib { get; init; }
    public required string Accelerator { get; init; }
    public required bool Network { get; init; }
    /// <summary>QEMU's command line with placeholder paths, as it went into the key (for reading, not checked).</summary>
    public string? CommandLine { get; init; }
    public required string MemorySha256 { get; init; }
    public required long MemoryBytes { get; init; }
    public required string DiskSha256 { get; init; }
    public required long DiskBytes { get; init; }
    public required DateTimeOffset BuiltAt { get; init; }
    public required long BuildMs { get; init; }
}

/// <summary>The environment, bundle and VM shape a template is for: every input that changes what the saved guest is.</summary>
internal sealed record TemplateInputs(EnvironmentInfo Environment, RuntimeBundle Bundle, VmSpec Spec, bool Network)
{
    /// <summary>Bumped whenever what a template holds changes meaning (the agent's resume protocol, the save procedure).</summary>
    internal const string Format = "pyro-template-1";

    /// <summary>
    /// The cache key: a digest of every input, so any change (a rebuilt environment, another
    /// kernel, initramfs or agent, another QEMU binary, another shape or command line) names
    /// another template and the old one is never restored.
    /// </summary>
    internal string Key()
    {
        var text = new StringBuilder()
            .Append(Format).Append('\n')
            .Append(Environment.Name).Append('\n')
            .Append(Environment.RootfsSha256).Append('\n')
            .Append(Bundle.Manifest.BundleId).Append('\n')
            .Append(Bundle.Manifest.KernelSha256).Append('\n')
            .Append(Bundle.Manifest.InitramfsSha256).Append('\n')
            .Append(Bundle.Manifest.AgentSha256).Append('\n')
            .Append(QemuIdentity()).Append('\n')
            .Append(CommandLineShape()).Append('\n');
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..32];
    }

    /// <summary>QEMU's command line with placeholder paths: the device set, sizes, accelerator, TSC rate, sandbox and user drop.</summary>
    internal string CommandLineShape()
        => string.Join(' ', QemuCommandLine.Build(new QemuLaunch("template", Spec, "/kernel", "/initramfs", "/disk", "/agent", HostTools.QemuDropUser(),
            NetworkSocketPath: Network ? "/network" : null, ControlSocketPath: "/control")));

    /// <summary>The QEMU binary as a file (path, size, change time): a package upgrade names new templates.</summary>
    internal static string QemuIdentity()
    {
        var path = HostTools.Qemu.Require();
        var info = new FileInfo(path);
        return string.Create(CultureInfo.InvariantCulture, $"{path}:{info.Length}:{info.LastWriteTimeUtc.Ticks}");
    }
}

/// <summary>
/// Warm-start templates in <see cref="PyroOptions.TemplateCacheDir"/>: one directory per key with
/// the saved guest (memory.bin, disk.qcow2) and template.json. Built under a lock file into a
/// staging directory and renamed into place, so a reader sees a whole template or none, and a
/// build killed halfway leaves only a staging directory that is never restored.
/// </summary>
internal sealed class TemplateStore(PyroOptions options)
{
    private const string ManifestFile = "template.json";
    private const string StagingPrefix = ".staging-";

    private string Root => options.TemplateCacheDir;

    internal string DirectoryOf(string key) => Path.Combine(Root, key);

    /// <summary>The template for <paramref name="key"/> if a complete one is there (files present, sizes as recorded); its digests are checked when it is restored.</summary>
    internal (SavedVm Image, TemplateManifest Manifest)? TryOpen(string key)
    {
        if (UnixStat.LStat(Root) is null)
        {
            return null;
        }

        // Never restore from a directory another user could have written.
        PrivateDirectory.Verify(Root);
        var dir = DirectoryOf(key);
        var manifestPath = Path.Combine(dir, ManifestFile);
        TemplateManifest? manifest;
        try
        {
            manifest = File.Exists(manifestPath) ? JsonSerializer.Deserialize(File.ReadAllText(manifestPath), InternalJsonContext.Default.TemplateManifest) : null;
        }
        catch (JsonException)
        {
            manifest = null;
        }

        var memory = Path.Combine(dir, QemuVm.MemoryFileName);
        var disk = Path.Combine(dir, QemuVm.DiskFileName);
        if (manifest is null || manifest.Key != key
            || new FileInfo(memory) is not { Exists: true } m || m.Length != manifest.MemoryBytes
            || new FileInfo(disk) is not { Exists: true } d || d.Length != manifest.DiskBytes)
        {
            return null;
        }

        return (new SavedVm(memory, disk, manifest.MemorySha256, manifest.DiskSha256), manifest);
    }

    /// <summary>
    /// The template for <paramref name="inputs"/>, built first when there is none: a guest booted
    /// until its agent answers, then saved. Several processes may ask at once; one builds.
    /// </summary>
    internal async Task<(SavedVm Image, string Key, bool Built)> EnsureAsync(TemplateInputs inputs, IProgress<PyroProgress>? progress, CancellationToken cancellationToken)
    {
        var key = inputs.Key();
        void Report(string phase, params (string Key, string Value)[] fields)
            => progress?.Report(new PyroProgress("template", phase, [new("environment", inputs.Environment.Name), .. fields.Select(f => new KeyValuePair<string, string>(f.Key, f.Value))]));

        PrivateDirectory.Ensure(Root);
        if (TryOpen(key) is { } ready)
        {
            return (ready.Image, key, false);
        }

        using var held = await FileLock.AcquireAsync(Path.Combine(Root, key + ".lock"), () => Report("wait", ("reason", "another process is building this template")), cancellationToken).ConfigureAwait(false);
        if (TryOpen(key) is { } built)
        {
            return (built.Image, key, false);
        }

        Report("build", ("key", key), ("vcpus", inputs.Spec.VcpuCount.ToString(CultureInfo.InvariantCulture)),
            ("mem_mib", inputs.Spec.MemMib.ToString(CultureInfo.InvariantCulture)), ("network", inputs.Network ? "on" : "off"));
        RemoveStaleStaging();
        var staging = PrivateDirectory.Ensure(Path.Combine(Root, $"{StagingPrefix}{key}-{Environment.ProcessId}"));
        var clock = Stopwatch.StartNew();
        try
        {
            var vm = await QemuVm.StartAsync(QemuVm.NewId(), inputs.Spec, inputs.Environment.RootfsImage, inputs.Bundle, options, cancellationToken,
                network: inputs.Network ? NetworkPolicy.Egress : NetworkPolicy.Off).ConfigureAwait(false);
            SavedVm saved;
            await using (vm.ConfigureAwait(false))
            {
                vm.DiscardOnDispose = true;
                Report("save", ("key", key));
                saved = await vm.SaveAsync(staging, cancellationToken).ConfigureAwait(false);
            }

            var manifest = new TemplateManifest
            {
                Key = key,
                Environment = inputs.Environment.Name,
                RootfsSha256 = inputs.Environment.RootfsSha256 ?? "",
                BundleId = inputs.Bundle.Manifest.BundleId,
                Qemu = TemplateInputs.QemuIdentity(),
                VcpuCount = inputs.Spec.VcpuCount,
                MemMib = inputs.Spec.MemMib,
                Accelerator = inputs.Spec.Accelerator.ToString().ToLowerInvariant(),
                Network = inputs.Network,
                CommandLine = inputs.CommandLineShape(),
                MemorySha256 = FileIntegrity.Sha256(saved.MemoryPath),
                MemoryBytes = new FileInfo(saved.MemoryPath).Length,
                DiskSha256 = FileIntegrity.Sha256(saved.DiskPath),
                DiskBytes = new FileInfo(saved.DiskPath).Length,
                BuiltAt = DateTimeOffset.UtcNow,
                BuildMs = clock.ElapsedMilliseconds,
            };
            using (var file = new FileStream(Path.Combine(staging, ManifestFile), new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
            {
                JsonSerializer.Serialize(file, manifest, InternalJsonContext.Default.TemplateManifest);
            }

            var final = DirectoryOf(key);
            if (Directory.Exists(final))
            {
                // Incomplete or damaged (TryOpen refused it): replaced whole.
                Directory.Delete(final, recursive: true);
            }

            Directory.Move(staging, final);
            RemoveOutdated(manifest, inputs);
            Report("ready", ("key", key), ("memory_mib", (manifest.MemoryBytes / (1024.0 * 1024)).ToString("0.0", CultureInfo.InvariantCulture)),
                ("build_ms", manifest.BuildMs.ToString(CultureInfo.InvariantCulture)));
            return (new SavedVm(Path.Combine(final, QemuVm.MemoryFileName), Path.Combine(final, QemuVm.DiskFileName), manifest.MemorySha256, manifest.DiskSha256), key, true);
        }
        finally
        {
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }
        }
    }

    /// <summary>Deletes a template that failed its check or its restore; the next warm start builds it again.</summary>
    internal void Remove(string key)
    {
        try
        {
            Directory.Delete(DirectoryOf(key), recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    /// <summary>Every template there is, with its manifest (null for a directory that is not a whole template).</summary>
    internal IReadOnlyList<(string Directory, TemplateManifest? Manifest)> List()
    {
        if (UnixStat.LStat(Root) is null)
        {
            return [];
        }

        PrivateDirectory.Verify(Root);
        return [.. Directory.GetDirectories(Root)
            .Where(d => !Path.GetFileName(d).StartsWith(StagingPrefix, StringComparison.Ordinal))
            .Select(d => (d, TryOpen(Path.GetFileName(d))?.Manifest))];
    }

    /// <summary>
    /// Removes templates nothing current can restore: incomplete or damaged ones, those of an
    /// environment no longer installed as it was built, of another runtime bundle or QEMU, and
    /// unfinished builds whose builder is gone. With <paramref name="all"/>, every template.
    /// </summary>
    internal (IReadOnlyList<string> Removed, long FreedBytes) Prune(Func<string, string?> installedRootfsSha, Func<string, bool> bundleCached, bool all = false)
    {
        var removed = new List<string>();
        long freed = 0;
        if (UnixStat.LStat(Root) is null)
        {
            return (removed, 0);
        }

        PrivateDirectory.Verify(Root);
        var qemu = SafeQemuIdentity();
        foreach (var dir in Directory.GetDirectories(Root))
        {
            var name = Path.GetFileName(dir);
            if (name.StartsWith(StagingPrefix, StringComparison.Ordinal))
            {
                if (Staging.OwnerAlive(name))
                {
                    continue;
                }
            }
            else if (!all && TryOpen(name)?.Manifest is { } manifest
                     && installedRootfsSha(manifest.Environment) == manifest.RootfsSha256
                     && bundleCached(manifest.BundleId)
                     && manifest.Qemu == qemu)
            {
                continue;
            }

            freed += Delete(dir);
            removed.Add(dir);
        }

        return (removed, freed);
    }

    /// <summary>Deletes the templates made from <paramref name="environment"/> (a removed environment's: nothing can restore them).</summary>
    internal (int Removed, long FreedBytes) RemoveFor(string environment)
    {
        if (UnixStat.LStat(Root) is null)
        {
            return (0, 0);
        }

        PrivateDirectory.Verify(Root);
        var removed = 0;
        long freed = 0;
        foreach (var dir in Directory.GetDirectories(Root))
        {
            var name = Path.GetFileName(dir);
            if (name.StartsWith(StagingPrefix, StringComparison.Ordinal) || TryOpen(name)?.Manifest is not { } manifest || manifest.Environment != environment)
            {
                continue;
            }

            freed += Delete(dir);
            removed++;
        }

        return (removed, freed);
    }

    /// <summary>Deletes one template directory and its lock file; returns the bytes it held.</summary>
    private long Delete(string dir)
    {
        var bytes = Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        Directory.Delete(dir, recursive: true);
        File.Delete(Path.Combine(Root, Path.GetFileName(dir) + ".lock"));
        return bytes;
    }

    private static string? SafeQemuIdentity()
    {
        try
        {
            return TemplateInputs.QemuIdentity();
        }
        catch (HostRequirementException)
        {
            return null;
        }
    }

    /// <summary>
    /// After a build, the templates of the same environment and shape that nothing can restore any
    /// more go: another build of the environment, a runtime bundle no longer cached, another QEMU.
    /// Another bundle that is still cached (a second pyro build on the host) keeps its template.
    /// </summary>
    private void RemoveOutdated(TemplateManifest current, TemplateInputs inputs)
    {
        var bundles = Path.GetDirectoryName(inputs.Bundle.Directory);
        foreach (var (dir, manifest) in List())
        {
            if (manifest is not null && manifest.Key != current.Key && manifest.Environment == current.Environment && manifest.VcpuCount == current.VcpuCount
                && manifest.MemMib == current.MemMib && manifest.Accelerator == current.Accelerator && manifest.Network == current.Network
                && (manifest.RootfsSha256 != current.RootfsSha256 || manifest.Qemu != current.Qemu
                    || (bundles is not null && !Directory.Exists(Path.Combine(bundles, manifest.BundleId)))))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    private void RemoveStaleStaging()
    {
        foreach (var dir in Directory.GetDirectories(Root, StagingPrefix + "*"))
        {
            if (!Staging.OwnerAlive(Path.GetFileName(dir)))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }
}
