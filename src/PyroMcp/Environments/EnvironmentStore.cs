using System.Text.Json;
using PyroMcp.Host;

namespace PyroMcp.Environments;

/// <summary>What is recorded about a built environment; written last, so its presence means the build finished.</summary>
internal sealed record EnvironmentManifest
{
    public required string Name { get; init; }
    public required string Version { get; init; }
    public required string Distribution { get; init; }
    public required IReadOnlyList<string> Packages { get; init; }
    public required string RootfsSha256 { get; init; }
    public required long RootfsBytes { get; init; }
    public required string Source { get; init; }
    public required DateTimeOffset BuiltAt { get; init; }

    /// <summary>How long the local build took (bootstrap to verified image): the bench compares a pull with it without building again.</summary>
    public long? BuildMs { get; init; }
    public string? Kind { get; init; }
    public ImportedImage? Image { get; init; }
    public string? OciSource { get; init; }
    public string? OciManifestDigest { get; init; }
    public string? OciConfigDigest { get; init; }
    public string? OciLayerDigest { get; init; }
}

/// <summary>The on-disk cache of environments: build, verify, inspect, prune.</summary>
internal sealed partial class EnvironmentStore(PyroOptions options)
{
    internal const string ManifestFile = "environment.json";
    internal const string RootfsFile = "rootfs.ext4";
    internal const string StampFile = "rootfs.stamp";
    internal const string StagingPrefix = ".staging-";

    internal string PlatformDir => Path.Combine(options.EnvironmentCacheDir, "linux-x86_64");

    internal EnvironmentInfo Inspect(EnvironmentSpec spec)
    {
        var dir = Path.Combine(PlatformDir, spec.DirectoryName);
        var manifestPath = Path.Combine(dir, ManifestFile);
        var rootfs = Path.Combine(dir, RootfsFile);
        EnvironmentManifest? manifest = null;
        string state;
        if (!Directory.Exists(dir))
        {
            state = "not_installed";
        }
        else if ((manifest = ReadManifest(manifestPath)) is null)
        {
            state = "incomplete";
        }
        else
        {
            state = FileIntegrity.Verify(rootfs, Path.Combine(dir, StampFile), manifest.RootfsSha256) ? "installed" : "corrupt";
        }

        return new EnvironmentInfo
        {
            Name = spec.Name,
            Version = spec.Version,
            Description = spec.Description,
            Distribution = spec.Distribution,
            Packages = spec.Packages,
            Installed = state == "installed",
            State = state,
            CacheDir = options.EnvironmentCacheDir,
            InstallDir = dir,
            RootfsImage = rootfs,
            InstallManifest = manifestPath,
            RootfsSha256 = manifest?.RootfsSha256,
            RootfsBytes = manifest?.RootfsBytes,
            Source = manifest?.Source,
            BuiltAt = manifest?.BuiltAt,
            Kind = spec.Imported ? "imported" : "catalog",
            Image = manifest?.Image,
            OciSource = EnvironmentCatalog.OciSource(spec, options),
            OciManifestDigest = manifest?.OciManifestDigest,
            OciLayerDigest = manifest?.OciLayerDigest,
        };
    }

    /// <summary>Builds the environment unless a verified copy is there. Safe to call from several processes at once.</summary>
    internal async Task<EnvironmentInfo> PullAsync(EnvironmentSpec spec, IProgress<PyroProgress>? progress, CancellationToken cancellationToken)
    {
        void Report(string phase, params KeyValuePair<string, string>[] fields)
            => progress?.Report(new PyroProgress("pull", phase, [new("environment", spec.Name), .. fields]));

        // A root file system is what a VM boots: only from a cache no other user can write.
        PrivateDirectory.Ensure(options.EnvironmentCacheDir);
        PrivateDirectory.Ensure(PlatformDir);
        var current = Inspect(spec);
        if (current.Installed)
        {
            Report("ready", new KeyValuePair<string, string>("cached", "yes"));
            return current;
        }

        using var gate = await FileLock.AcquireAsync(Path.Combine(options.EnvironmentCacheDir, ".locks", spec.DirectoryName + ".lock"),
            () => Report("wait", new KeyValuePair<string, string>("reason", "another pull of this environment is running")), cancellationToken).ConfigureAwait(false);
        current = Inspect(spec);
        if (current.Installed)
        {
            Report("ready", new KeyValuePair<string, string>("cached", "yes"));
            return current;
        }

        if (spec.Imported)
        {
            throw new EnvironmentException("environment_not_installed",
                $"the imported environment {spec.Name} is {current.State.Replace('_', ' ')} and pyro cannot rebuild it; import it again with: pyro env import {manifestReference(current)} --name {spec.Name}");
        }

        if (current.State is "corrupt" or "incomplete")
        {
            Report("repair", new KeyValuePair<string, string>("reason", current.State == "corrupt" ? "rootfs sha256 does not match its manifest" : "a previous pull did not finish"));
        }

        // Holding the lock, any staging directory of this environment is a leftover of a dead pull.
        foreach (var stale in Directory.GetDirectories(PlatformDir, StagingPrefix + spec.DirectoryName + "-*"))
        {
            Directory.Delete(stale, recursive: true);
        }

        var staging = Path.Combine(PlatformDir, $"{StagingPrefix}{spec.DirectoryName}-{Environment.ProcessId}");
        Directory.CreateDirectory(staging);
        try
        {
            if (current.OciSource is { } ociSource)
            {
                await DownloadAsync(spec, ociSource, staging, progress, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await BuildAsync(spec, staging, Report, cancellationToken).ConfigureAwait(false);
            }

            Report("install");
            var final = Path.Combine(PlatformDir, spec.DirectoryName);
            if (Directory.Exists(final))
            {
                Directory.Delete(final, recursive: true);
            }

            Directory.Move(staging, final);
        }
        finally
        {
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }
        }

        var info = Inspect(spec);
        Report("ready");
        return info;
    }

    /// <summary>
    /// Deletes an installed environment's directory, under the same lock as its pull or import;
    /// returns the bytes freed, or null when nothing was installed. The directory is renamed to a
    /// staging name first, so a reader never sees half of it and a removal killed half-way is a
    /// leftover the next pull clears.
    /// </summary>
    internal async Task<long?> RemoveAsync(EnvironmentSpec spec, CancellationToken cancellationToken)
    {
        if (!Directory.Exists(PlatformDir))
        {
            return null;
        }

        PrivateDirectory.Verify(options.EnvironmentCacheDir);
        PrivateDirectory.Verify(PlatformDir);
        using var gate = await FileLock.AcquireAsync(Path.Combine(options.EnvironmentCacheDir, ".locks", spec.DirectoryName + ".lock"), () => { }, cancellationToken).ConfigureAwait(false);
        var dir = Path.Combine(PlatformDir, spec.DirectoryName);
        if (!Directory.Exists(dir))
        {
            return null;
        }

        var freed = Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        var doomed = Path.Combine(PlatformDir, $"{StagingPrefix}{spec.DirectoryName}-{Environment.ProcessId}");
        if (Directory.Exists(doomed))
        {
            Directory.Delete(doomed, recursive: true);
        }

        Directory.Move(dir, doomed);
        Directory.Delete(doomed, recursive: true);
        return freed;
    }

    /// <summary>The error for replacing or removing an environment that workspaces' disks are backed by.</summary>
    internal static EnvironmentException InUse(string name, IReadOnlyList<string> workspaces, string what)
        => new("environment_in_use",
            $"{workspaces.Count} workspace(s) of this state directory are on {name} ({string.Join(", ", workspaces.Take(10))}{(workspaces.Count > 10 ? ", ..." : "")}): their disks are overlays on its disk. To go on, {what}.");

    /// <summary>The local build: mmdebstrap, then mkfs.ext4, into <paramref name="staging"/>.</summary>
    private async Task BuildAsync(EnvironmentSpec spec, string staging, Action<string, KeyValuePair<string, string>[]> report, CancellationToken cancellationToken)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var tree = Path.Combine(staging, "tree");
        await BootstrapAsync(spec, tree, report, cancellationToken).ConfigureAwait(false);
        report("image", []);
        var rootfs = Path.Combine(staging, RootfsFile);
        await MakeImageAsync(tree, rootfs, cancellationToken).ConfigureAwait(false);
        Directory.Delete(tree, recursive: true);
        report("verify", []);
        var manifest = new EnvironmentManifest
        {
            Name = spec.Name,
            Version = spec.Version,
            Distribution = spec.Distribution,
            Packages = spec.Packages,
            RootfsSha256 = FileIntegrity.HashAndStamp(rootfs, Path.Combine(staging, StampFile)),
            RootfsBytes = new FileInfo(rootfs).Length,
            Source = $"mmdebstrap {spec.Suite} ({MirrorOrDefault() ?? "apt default mirror"})",
            BuiltAt = DateTimeOffset.UtcNow,
            BuildMs = clock.ElapsedMilliseconds,
        };
        await File.WriteAllTextAsync(Path.Combine(staging, ManifestFile), JsonSerializer.Serialize(manifest, InternalJsonContext.Default.EnvironmentManifest), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Removes what no current catalog entry uses: old versions, unknown entries, unfinished or damaged builds.</summary>
    internal PruneResult Prune()
    {
        var removed = new List<string>();
        long freed = 0;
        if (!Directory.Exists(PlatformDir))
        {
            return new PruneResult(removed, 0);
        }

        PrivateDirectory.Verify(options.EnvironmentCacheDir);
        PrivateDirectory.Verify(PlatformDir);

        // Imported environments are current until the user removes them.
        var installed = EnvironmentCatalog.All.Concat(Images.ImportedEnvironments.All(this)).Where(e => Inspect(e).Installed).ToList();
        var keep = installed.Select(e => e.DirectoryName).ToHashSet();
        freed += PruneBlobs(installed, removed);
        foreach (var dir in Directory.GetDirectories(PlatformDir))
        {
            var name = Path.GetFileName(dir);
            if (keep.Contains(name))
            {
                continue;
            }

            // A staging directory of a pull that is still running is protected by that pull's lock.
            if (name.StartsWith(StagingPrefix, StringComparison.Ordinal) && Staging.OwnerAlive(name))
            {
                continue;
            }

            freed += Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
            Directory.Delete(dir, recursive: true);
            removed.Add(dir);
        }

        return new PruneResult(removed, freed);
    }

    private static string manifestReference(EnvironmentInfo info) => info.Image?.Reference ?? "REF";

    internal static EnvironmentManifest? ReadManifest(string path)
    {
        try
        {
            return File.Exists(path) ? JsonSerializer.Deserialize(File.ReadAllText(path), InternalJsonContext.Default.EnvironmentManifest) : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string? MirrorOrDefault() => Environment.GetEnvironmentVariable("PYRO_DEBIAN_MIRROR") is { Length: > 0 } m ? m : null;

    private static async Task BootstrapAsync(EnvironmentSpec spec, string tree, Action<string, KeyValuePair<string, string>[]> report, CancellationToken cancellationToken)
    {
        var mmdebstrap = HostTools.Mmdebstrap.Require();
        report("bootstrap", [new("packages", spec.Packages.Count == 0 ? "minbase" : string.Join(',', spec.Packages))]);
        var args = new List<string> { "--variant=minbase", "--quiet" };
        if (spec.Packages.Count > 0)
        {
            args.Add("--include=" + string.Join(',', spec.Packages));
        }

        // Mount points the initramfs needs, and the workspace root; plain files, no hooks into the guest.
        args.Add("--customize-hook=mkdir -p \"$1/run\" \"$1/proc\" \"$1/sys\" \"$1/dev\" \"$1/workspace\" \"$1/tmp\"");
        args.Add("--customize-hook=echo pyro > \"$1/etc/hostname\"");
        args.Add("--customize-hook=printf '127.0.0.1 localhost\\n127.0.1.1 pyro\\n::1 localhost\\n' > \"$1/etc/hosts\"");
        args.Add(spec.Suite);
        args.Add(tree);
        if (MirrorOrDefault() is { } mirror)
        {
            args.Add(mirror);
        }

        var lines = 0;
        var result = await ProcessRunner.RunAsync(mmdebstrap, args, line =>
        {
            // mmdebstrap --quiet still reports failures; count lines as a sign of life.
            if (++lines % 20 == 0)
            {
                report("bootstrap", [new("lines", lines.ToString(System.Globalization.CultureInfo.InvariantCulture))]);
            }
        }, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw new EnvironmentException("environment_build_failed",
                $"mmdebstrap could not build {spec.Name} (exit {result.ExitCode}). Check that the Debian mirror is reachable (set PYRO_DEBIAN_MIRROR to use another). Its last output:\n{result.StderrTail}");
        }
    }

    internal static async Task MakeImageAsync(string tree, string image, CancellationToken cancellationToken)
    {
        var mkfs = HostTools.MkfsExt4.Require();
        var du = await ProcessRunner.RunAsync("du", ["-s", "-B1", "--apparent-size", tree], cancellationToken: cancellationToken).ConfigureAwait(false);
        if (du.ExitCode != 0 || !long.TryParse(du.Stdout.Split('\t')[0], out var used))
        {
            throw new EnvironmentException("environment_build_failed", $"could not measure the environment tree: {du.StderrTail}");
        }

        // Room for the workspace on top of the system: a sparse file, so unused space costs nothing.
        var sizeMib = ((used * 5 / 4) >> 20) + 2048;
        var result = await ProcessRunner.RunAsync(mkfs, ["-q", "-F", "-L", "pyro-root", "-m", "0", "-d", tree, image, $"{sizeMib}M"], cancellationToken: cancellationToken).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw new EnvironmentException("environment_build_failed", $"mkfs.ext4 could not make the root disk: {result.StderrTail}");
        }
    }
}
