using System.Globalization;
using System.Text.Json;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Oci;
using PyroMcp.Protocol;
using PyroMcp.Protocol.Files;

namespace PyroMcp.Images;

/// <summary>
/// <c>pyro env import</c>: an OCI image (registry, layout or archive) becomes an environment.
/// Layers are fetched digest-verified into a staging directory, flattened by
/// <see cref="LayerFlattener"/>, given the mount points and files the guest's init needs, and
/// made into the ext4 root disk the same way the catalog's are. The install is atomic: the
/// staging directory is renamed into place only when everything is done, and removed on failure.
/// </summary>
internal static class ImageImporter
{
    internal const string DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    /// <summary>Directories the initramfs mounts over or the agent needs, made real directories if the image has them otherwise.</summary>
    private static readonly (string Name, int Mode)[] MountPoints = [("proc", 0x16D), ("sys", 0x16D), ("dev", 0x1ED), ("run", 0x1ED), ("tmp", 0x3FF), ("workspace", 0x1ED), ("etc", 0x1ED)];

    /// <summary>
    /// Imports the image at <paramref name="reference"/> as the environment <paramref name="name"/>;
    /// a different image under a name whose disk <paramref name="workspacesOn"/> says workspaces are
    /// backed by is refused before anything is fetched beyond its manifest.
    /// </summary>
    internal static async Task<EnvironmentInfo> ImportAsync(EnvironmentStore store, PyroOptions options, string reference, string? name, FlattenLimits limits,
        Func<string, IReadOnlyList<string>> workspacesOn, IProgress<PyroProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reference);
        name = ImportedEnvironments.Validate(string.IsNullOrWhiteSpace(name) ? ImportedEnvironments.DefaultName(reference) : name.Trim());
        void Report(string phase, params KeyValuePair<string, string>[] fields)
            => progress?.Report(new PyroProgress("import", phase, [new("environment", name), .. fields]));

        PrivateDirectory.Ensure(options.EnvironmentCacheDir);
        PrivateDirectory.Ensure(store.PlatformDir);
        var directory = ImportedEnvironments.DirectoryFor(name);
        using var gate = await FileLock.AcquireAsync(Path.Combine(options.EnvironmentCacheDir, ".locks", directory + ".lock"),
            () => Report("wait", new KeyValuePair<string, string>("reason", "another import of this name is running")), cancellationToken).ConfigureAwait(false);
        foreach (var stale in Directory.GetDirectories(store.PlatformDir, EnvironmentStore.StagingPrefix + directory + "-*"))
        {
            LayerFlattener.RemoveTree(stale);
        }

        Report("resolve", new KeyValuePair<string, string>("source", reference));
        using var image = await OciImageSource.OpenAsync(reference, OciClientOptions.FromEnvironment(), progress, cancellationToken).ConfigureAwait(false);
        var current = store.Inspect(ImportedEnvironments.SpecFor(name, reference));
        if (current.Installed && current.Image?.ManifestDigest == image.ManifestDigest)
        {
            // The same image under the same name: nothing to do, and workspaces on its disk keep it.
            Report("ready", new("cached", "yes"), new("rootfs_sha256", current.RootfsSha256 ?? ""));
            return current;
        }

        if (current.Installed && workspacesOn(name) is { Count: > 0 } users)
        {
            // Their qcow2 overlays name this disk as their base: another image under it would change their files.
            throw EnvironmentStore.InUse(name, users, $"import the new image under another name (--name), or delete them first (pyro workspace delete ID)");
        }

        var staging = Path.Combine(store.PlatformDir, $"{EnvironmentStore.StagingPrefix}{directory}-{Environment.ProcessId}");
        Directory.CreateDirectory(staging, (UnixFileMode)0x1C0);
        try
        {
            var blobs = Path.Combine(staging, "blobs");
            Directory.CreateDirectory(blobs, (UnixFileMode)0x1C0);
            var layerFiles = new List<(Func<Stream> Open, string? MediaType)>();
            for (var i = 0; i < image.Layers.Count; i++)
            {
                var layer = image.Layers[i];
                Report("fetch", new("layer", $"{i + 1}/{image.Layers.Count}"), new("digest", layer.Digest), new("bytes", layer.Size.ToString(CultureInfo.InvariantCulture)));
                var file = Path.Combine(blobs, layer.Digest.Replace(':', '-'));
                if (!File.Exists(file))
                {
                    await image.FetchBlobAsync(layer, file, cancellationToken).ConfigureAwait(false);
                }

                layerFiles.Add((() => new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan), layer.MediaType));
            }

            var tree = Path.Combine(staging, "tree");
            var flattened = await LayerFlattener.FlattenAsync(layerFiles, tree, limits,
                (i, bytes) => Report("flatten", new("layer", $"{i + 1}/{image.Layers.Count}"), new("bytes", bytes.ToString(CultureInfo.InvariantCulture))), cancellationToken).ConfigureAwait(false);
            foreach (var mismatch in flattened.MediaTypeMismatches)
            {
                Report("flatten", new KeyValuePair<string, string>("note", mismatch + "; read by its bytes"));
            }

            LayerFlattener.RemoveTree(blobs);
            var defaults = ExecDefaults(image.Config);
            Prepare(tree, defaults);
            Report("image", new("files", flattened.Files.ToString(CultureInfo.InvariantCulture)), new("bytes", flattened.Bytes.ToString(CultureInfo.InvariantCulture)),
                new("skipped", flattened.SkippedCount.ToString(CultureInfo.InvariantCulture)));
            var rootfs = Path.Combine(staging, EnvironmentStore.RootfsFile);
            await EnvironmentStore.MakeImageAsync(tree, rootfs, cancellationToken).ConfigureAwait(false);
            LayerFlattener.RemoveTree(tree);
            Report("verify");
            var manifest = new EnvironmentManifest
            {
                Name = name,
                Version = "imported",
                Distribution = "OCI image",
                Packages = [],
                RootfsSha256 = FileIntegrity.HashAndStamp(rootfs, Path.Combine(staging, EnvironmentStore.StampFile)),
                RootfsBytes = new FileInfo(rootfs).Length,
                Source = $"oci image {reference} ({image.ManifestDigest})",
                BuiltAt = DateTimeOffset.UtcNow,
                Kind = "imported",
                Image = new ImportedImage
                {
                    Reference = reference,
                    ManifestDigest = image.ManifestDigest,
                    ManifestMediaType = image.ManifestMediaType,
                    ConfigDigest = image.ConfigDescriptor.Digest,
                    LayerDigests = [.. image.Layers.Select(l => l.Digest)],
                    Env = defaults.Env,
                    WorkingDir = defaults.WorkingDir,
                    User = defaults.User,
                    SkippedEntries = flattened.SkippedCount,
                },
            };
            await File.WriteAllTextAsync(Path.Combine(staging, EnvironmentStore.ManifestFile), JsonSerializer.Serialize(manifest, InternalJsonContext.Default.EnvironmentManifest), cancellationToken).ConfigureAwait(false);
            Report("install");
            var final = Path.Combine(store.PlatformDir, directory);
            if (Directory.Exists(final))
            {
                LayerFlattener.RemoveTree(final);
            }

            Directory.Move(staging, final);
        }
        finally
        {
            if (Directory.Exists(staging))
            {
                LayerFlattener.RemoveTree(staging);
            }
        }

        var info = store.Inspect(ImportedEnvironments.SpecFor(name, reference));
        Report("ready", new KeyValuePair<string, string>("rootfs_sha256", info.RootfsSha256 ?? ""));
        return info;
    }

    /// <summary>The image config's Env (with the usual PATH when it has none, as Docker gives), WorkingDir and User.</summary>
    internal static ImageExecDefaults ExecDefaults(OciImageConfig config)
    {
        var env = config.Env.Where(e => e.IndexOf('=', StringComparison.Ordinal) > 0 && !e.Contains('\0', StringComparison.Ordinal)).ToList();
        if (!env.Any(e => e.StartsWith("PATH=", StringComparison.Ordinal)))
        {
            env.Insert(0, DefaultPath);
        }

        return new ImageExecDefaults
        {
            Env = env,
            WorkingDir = string.IsNullOrWhiteSpace(config.WorkingDir) ? null : config.WorkingDir,
            User = string.IsNullOrWhiteSpace(config.User) ? null : config.User,
        };
    }

    /// <summary>
    /// What the guest needs beyond the image: real directories at the mount points, the working
    /// directory, /etc/hostname and /etc/hosts (replaced, as a container runtime does), and the
    /// exec defaults file the agent reads.
    /// </summary>
    private static void Prepare(string tree, ImageExecDefaults defaults)
    {
        foreach (var (name, mode) in MountPoints)
        {
            var path = tree + "/" + name;
            if (PathStats.LStat(path)?.Kind != PathKind.Directory)
            {
                LayerFlattener.RemoveTree(path);
                Directory.CreateDirectory(path);
                File.SetUnixFileMode(path, (UnixFileMode)mode);
            }
        }

        if (defaults.WorkingDir is { } workingDir && workingDir.StartsWith('/'))
        {
            // Docker makes the working directory when a container starts; made here, inside the root like any entry.
            var segments = ArchiveNames.Normalize(workingDir.TrimStart('/'), out _)?.Split('/', StringSplitOptions.RemoveEmptyEntries) ?? [];
            var current = tree;
            foreach (var segment in segments)
            {
                current += "/" + segment;
                var stat = PathStats.LStat(current);
                if (stat is null)
                {
                    Directory.CreateDirectory(current, (UnixFileMode)0x1ED);
                }
                else if (stat.Value.Kind != PathKind.Directory)
                {
                    // A link or file in the way: the agent reports cwd_not_found in the guest if it does not resolve there.
                    break;
                }
            }
        }

        // The workspace belongs to the image's user, so its commands can write where they start.
        if (OwnerOf(tree, defaults.User) is { } owner && PathStats.LStat(tree + "/workspace")?.Kind == PathKind.Directory)
        {
            ImageInterop.LChown(tree + "/workspace", owner.Uid, owner.Gid);
        }

        WriteNew(tree + "/etc/hostname", "pyro\n"u8);
        WriteNew(tree + "/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 pyro\n::1 localhost\n"u8);
        WriteNew(tree + ImageExecDefaults.GuestPath, ProtocolJsonContext.Encode(defaults));
    }

    /// <summary>
    /// The ids of <c>user[:group]</c> from the image's own /etc/passwd and /etc/group (regular files
    /// only, read as data); null for root or a name the image does not define (the agent then says <c>user_not_found</c>).
    /// </summary>
    internal static (int Uid, int Gid)? OwnerOf(string tree, string? user)
    {
        if (string.IsNullOrWhiteSpace(user))
        {
            return null;
        }

        var parts = user.Split(':', 2);
        string[]? Find(string file, string key, int field)
            => PathStats.LStat(tree + file) is { Kind: PathKind.File, Size: < 16 << 20 }
                ? File.ReadLines(tree + file).Select(l => l.Split(':')).FirstOrDefault(e => e.Length > 3 && e[field] == key)
                : null;

        int uid, gid;
        if (!int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out uid))
        {
            var entry = Find("/etc/passwd", parts[0], 0);
            if (entry is null || !int.TryParse(entry[2], NumberStyles.None, CultureInfo.InvariantCulture, out uid) || !int.TryParse(entry[3], NumberStyles.None, CultureInfo.InvariantCulture, out gid))
            {
                return null;
            }
        }
        else
        {
            gid = Find("/etc/passwd", parts[0], 2) is { } entry && int.TryParse(entry[3], NumberStyles.None, CultureInfo.InvariantCulture, out var g) ? g : uid;
        }

        if (parts.Length == 2 && !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out gid))
        {
            var group = Find("/etc/group", parts[1], 0);
            if (group is null || !int.TryParse(group[2], NumberStyles.None, CultureInfo.InvariantCulture, out gid))
            {
                return null;
            }
        }

        return uid == 0 && gid == 0 ? null : (uid, gid);
    }

    /// <summary>Replaces whatever the image put at <paramref name="path"/> (a link included, never followed) with a new file.</summary>
    private static void WriteNew(string path, ReadOnlySpan<byte> content)
    {
        LayerFlattener.RemoveTree(path);
        using var handle = ImageInterop.CreateNew(path);
        RandomAccess.Write(handle, content, 0);
        ImageInterop.SetOwnerAndMode(handle, path, 0, 0, 0x1A4);
    }
}
