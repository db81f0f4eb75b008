using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using PyroMcp.Host;
using PyroMcp.Oci;

namespace PyroMcp.Environments;

/// <summary>Environments as OCI artifacts: publish to a registry, download from one, and the blob cache.</summary>
internal sealed partial class EnvironmentStore
{
    /// <summary>zstd level of the published root disk: fast, and the zero blocks of the sparse image cost nothing.</summary>
    private const int CompressionLevel = 3;
    private const int Block = 4096;

    private string BlobsDir => Path.Combine(options.EnvironmentCacheDir, "blobs", "sha256");

    private OciClientOptions Oci => options.Oci ?? OciClientOptions.FromEnvironment();

    private string BlobPath(string digest) => Path.Combine(BlobsDir, OciDigest.Hex(digest));

    /// <summary>
    /// Downloads the environment from <paramref name="reference"/> into <paramref name="staging"/>:
    /// the layer blob into the blob cache (resumed if a pull was cut), then decompressed into a
    /// sparse root disk whose sha256 must be the one the config names.
    /// </summary>
    private async Task DownloadAsync(EnvironmentSpec spec, string reference, string staging, IProgress<PyroProgress>? progress, CancellationToken cancellationToken)
    {
        void Report(string phase, params KeyValuePair<string, string>[] fields)
            => progress?.Report(new PyroProgress("pull", phase, [new("environment", spec.Name), .. fields]));

        var source = "oci:" + reference;
        Report("download", new KeyValuePair<string, string>("source", source));
        var bytesProgress = progress is null ? null : new SyncProgress<PyroProgress>(p =>
        {
            if (p.Operation == "oci")
            {
                Report("download", [new("source", source), .. p.Fields.Where(f => f.Key is "bytes" or "total")]);
            }
        });
        using var image = await OciImageSource.OpenAsync(reference, Oci, bytesProgress, cancellationToken).ConfigureAwait(false);
        var config = EnvironmentArtifact.ReadConfig(image, reference);
        if (config.Name != spec.Name)
        {
            throw new OciException("oci_image_invalid", $"{reference} holds the environment '{config.Name}', not '{spec.Name}'.");
        }

        var layer = image.Layers[0];
        PrivateDirectory.Ensure(Path.GetDirectoryName(BlobsDir)!);
        PrivateDirectory.Ensure(BlobsDir);
        var blob = BlobPath(layer.Digest);
        if (!File.Exists(blob) || new FileInfo(blob).Length != layer.Size)
        {
            await image.FetchBlobAsync(layer, blob, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            Report("download", new("source", source), new("cached", "yes"));
        }

        Report("decompress", new KeyValuePair<string, string>("bytes", config.RootfsBytes.ToString(CultureInfo.InvariantCulture)));
        var rootfs = Path.Combine(staging, RootfsFile);
        string sha;
        long written;
        try
        {
            (sha, written) = await DecompressSparseAsync(blob, rootfs, config.RootfsBytes, cancellationToken).ConfigureAwait(false);
        }
        catch (IOException ex) when (OciBlobFiles.IsDiskFull(ex))
        {
            throw OciBlobFiles.DiskFull(rootfs, ex);
        }
        catch (Exception ex) when (ex is ZstdSharp.ZstdException or InvalidDataException)
        {
            File.Delete(blob);
            throw new OciException("oci_image_invalid", $"the root disk layer of {reference} is not valid zstd ({ex.Message}); the cached blob was removed.", ex);
        }

        Report("verify");
        if (sha != config.RootfsSha256 || written != config.RootfsBytes)
        {
            throw new OciException("oci_digest_mismatch", $"the root disk of {reference} has sha256 {sha} ({written} bytes), not the {config.RootfsSha256} ({config.RootfsBytes} bytes) its config names. Nothing was installed.");
        }

        FileIntegrity.WriteStamp(rootfs, Path.Combine(staging, StampFile), sha);
        await File.WriteAllBytesAsync(BlobPath(image.ConfigDescriptor.Digest), image.ConfigBytes, cancellationToken).ConfigureAwait(false);
        await File.WriteAllBytesAsync(BlobPath(image.ManifestDigest), image.ManifestBytes, cancellationToken).ConfigureAwait(false);
        var manifest = new EnvironmentManifest
        {
            Name = spec.Name,
            Version = config.Version,
            Distribution = config.Distribution,
            Packages = config.Packages,
            RootfsSha256 = sha,
            RootfsBytes = written,
            Source = source,
            BuiltAt = config.BuiltAt,
            OciSource = reference,
            OciManifestDigest = image.ManifestDigest,
            OciConfigDigest = image.ConfigDescriptor.Digest,
            OciLayerDigest = layer.Digest,
        };
        await File.WriteAllTextAsync(Path.Combine(staging, ManifestFile), JsonSerializer.Serialize(manifest, InternalJsonContext.Default.EnvironmentManifest), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Decompresses a zstd root disk, seeking over zero blocks so the result is as sparse as the original; returns its sha256 and size.</summary>
    private static async Task<(string Sha256, long Bytes)> DecompressSparseAsync(string blob, string rootfs, long expectedBytes, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var input = new FileStream(blob, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        await using var inputScope = input.ConfigureAwait(false);
        var zstd = new ZstdSharp.DecompressionStream(input);
        await using var zstdScope = zstd.ConfigureAwait(false);
        var output = new FileStream(rootfs, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1);
        await using var outputScope = output.ConfigureAwait(false);
        // Two buffers: while one is hashed and written on the pool, the next is decompressed, so a
        // pull costs about the longer of the two (SHA-256 of the whole disk) instead of their sum.
        byte[] current = new byte[1 << 20], other = new byte[1 << 20];
        Task pending = Task.CompletedTask;
        long total = 0;
        try
        {
            while (true)
            {
                var n = await zstd.ReadAtLeastAsync(current, current.Length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
                await pending.ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }

                if (total + n > expectedBytes)
                {
                    throw new OciException("oci_digest_mismatch", $"the root disk decompresses to more than the {expectedBytes} bytes its config names.");
                }

                var full = current;
                pending = Task.Run(() => HashAndWriteSparse(full, n), cancellationToken);
                (current, other) = (other, current);
                total += n;
            }
        }
        catch
        {
            // The write in flight must end before the output is disposed under it.
            await pending.ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).ConfigureAwait(false);
            throw;
        }

        output.SetLength(total);
        output.Flush(flushToDisk: true);
        return (Convert.ToHexStringLower(hash.GetHashAndReset()), total);

        // Zero blocks are skipped over rather than written, so the disk stays as sparse as the original.
        void HashAndWriteSparse(byte[] buffer, int n)
        {
            hash.AppendData(buffer, 0, n);
            for (var offset = 0; offset < n; offset += Block)
            {
                var span = buffer.AsSpan(offset, Math.Min(Block, n - offset));
                if (span.IndexOfAnyExcept((byte)0) < 0)
                {
                    output.Seek(span.Length, SeekOrigin.Current);
                }
                else
                {
                    output.Write(span);
                }
            }
        }
    }

    /// <summary>
    /// Publishes an installed environment: the root disk compressed into one layer (kept in the
    /// blob cache), a config of pyro's own media type, an OCI image manifest under the tag.
    /// </summary>
    internal async Task<EnvironmentPublishResult> PublishAsync(EnvironmentSpec spec, string referenceText, IProgress<PyroProgress>? progress, CancellationToken cancellationToken)
    {
        var reference = OciReference.Parse(referenceText, "reference");
        if (reference.Digest is not null)
        {
            throw new PyroInputException("oci_reference_invalid", $"'{referenceText}' names a digest; publish to a tag (HOST[:PORT]/REPOSITORY:TAG).", "reference");
        }

        var ociOptions = Oci;
        void Report(string phase, params KeyValuePair<string, string>[] fields)
            => progress?.Report(new PyroProgress("publish", phase, [new("environment", spec.Name), .. fields]));

        var info = Inspect(spec);
        var installed = ReadManifest(info.InstallManifest);
        if (!info.Installed || installed is null)
        {
            throw new EnvironmentException("environment_unavailable", $"{spec.Name} is not installed ({info.State.Replace('_', ' ')}); pull it first: pyro env pull {spec.Name}.");
        }

        PrivateDirectory.Ensure(options.EnvironmentCacheDir);
        PrivateDirectory.Ensure(Path.GetDirectoryName(BlobsDir)!);
        PrivateDirectory.Ensure(BlobsDir);

        // The same root disk compresses to the same layer: reuse it when this cache made it before.
        Report("compress", new KeyValuePair<string, string>("bytes", info.RootfsBytes!.Value.ToString(CultureInfo.InvariantCulture)));
        var (layerDigest, layerBytes) = await CompressLayerAsync(info, installed, cancellationToken).ConfigureAwait(false);
        var config = EnvironmentArtifact.Config(installed, spec);
        var configDigest = OciDigest.Of(config);
        var manifest = EnvironmentArtifact.Manifest(configDigest, config.Length, layerDigest, layerBytes, installed);
        var manifestDigest = OciDigest.Of(manifest);

        using var client = new RegistryClient(reference, ociOptions);
        var uploaded = 0;
        var skipped = 0;
        foreach (var (digest, size, open) in new (string, long, Func<Stream>)[]
        {
            (layerDigest, layerBytes, () => new FileStream(BlobPath(layerDigest), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16)),
            (configDigest, config.Length, () => new MemoryStream(config)),
        })
        {
            Report("upload", new("blob", digest), new("total", size.ToString(CultureInfo.InvariantCulture)));
            using var stream = open();
            var sent = await client.PushBlobAsync(stream, digest, size, bytes => Report("upload", new("blob", digest),
                new("bytes", bytes.ToString(CultureInfo.InvariantCulture)), new("total", size.ToString(CultureInfo.InvariantCulture))), cancellationToken).ConfigureAwait(false);
            if (sent)
            {
                uploaded++;
            }
            else
            {
                skipped++;
                Report("upload", new("blob", digest), new("skipped", "present"));
            }
        }

        Report("manifest", new KeyValuePair<string, string>("reference", reference.ToString()));
        await client.PutManifestAsync(reference.ManifestReference, manifest, OciMediaTypes.OciManifest, cancellationToken).ConfigureAwait(false);
        return new EnvironmentPublishResult
        {
            Environment = spec.Name,
            Reference = reference.Tag is null ? reference + ":latest" : reference.ToString(),
            ManifestDigest = manifestDigest,
            ConfigDigest = configDigest,
            LayerDigest = layerDigest,
            LayerBytes = layerBytes,
            RootfsSha256 = installed.RootfsSha256,
            RootfsBytes = installed.RootfsBytes,
            BlobsUploaded = uploaded,
            BlobsSkipped = skipped,
        };
    }

    /// <summary>The zstd layer of the root disk in the blob cache: the one a pull installed, else made now.</summary>
    private async Task<(string Digest, long Bytes)> CompressLayerAsync(EnvironmentInfo info, EnvironmentManifest installed, CancellationToken cancellationToken)
    {
        if (installed.OciLayerDigest is { } pulled && File.Exists(BlobPath(pulled)))
        {
            return (pulled, new FileInfo(BlobPath(pulled)).Length);
        }

        var temp = Path.Combine(BlobsDir, $".publish-{Guid.NewGuid():N}-{Environment.ProcessId}");
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long length;
            {
                var output = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
                await using var outputScope = output.ConfigureAwait(false);
                var hashing = new HashingStream(output, hash);
                var zstd = new ZstdSharp.CompressionStream(hashing, CompressionLevel, leaveOpen: true);
                await using (zstd.ConfigureAwait(false))
                {
                    var input = new FileStream(info.RootfsImage, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
                    await using var inputScope = input.ConfigureAwait(false);
                    await input.CopyToAsync(zstd, 1 << 20, cancellationToken).ConfigureAwait(false);
                }

                await output.FlushAsync(cancellationToken).ConfigureAwait(false);
                length = output.Length;
            }

            var digest = "sha256:" + Convert.ToHexStringLower(hash.GetHashAndReset());
            File.Move(temp, BlobPath(digest), overwrite: true);
            return (digest, length);
        }
        catch (IOException ex) when (OciBlobFiles.IsDiskFull(ex))
        {
            throw OciBlobFiles.DiskFull(temp, ex);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    /// <summary>Removes cached blobs no installed environment references (and leftovers of publishes); keeps partial downloads of pulls that may resume.</summary>
    private long PruneBlobs(IReadOnlyList<EnvironmentSpec> installed, List<string> removed)
    {
        if (!Directory.Exists(BlobsDir))
        {
            return 0;
        }

        var referenced = new HashSet<string>(StringComparer.Ordinal);
        foreach (var spec in installed)
        {
            if (ReadManifest(Inspect(spec).InstallManifest) is { } m)
            {
                foreach (var digest in new[] { m.OciManifestDigest, m.OciConfigDigest, m.OciLayerDigest })
                {
                    if (OciDigest.IsValid(digest))
                    {
                        referenced.Add(OciDigest.Hex(digest!));
                    }
                }
            }
        }

        long freed = 0;
        foreach (var file in Directory.GetFiles(BlobsDir))
        {
            var name = Path.GetFileName(file);
            if (referenced.Contains(name) || name.EndsWith(".partial", StringComparison.Ordinal)
                || (name.StartsWith(".publish-", StringComparison.Ordinal) && Staging.OwnerAlive(name[1..])))
            {
                continue;
            }

            freed += new FileInfo(file).Length;
            File.Delete(file);
            removed.Add(file);
        }

        return freed;
    }

    /// <summary>Hashes what passes through on its way to the file.</summary>
    private sealed class HashingStream(Stream inner, IncrementalHash hash) : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            hash.AppendData(buffer);
            inner.Write(buffer);
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            hash.AppendData(buffer.Span);
            await inner.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush() => inner.Flush();
        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

/// <summary>The shape of a published environment: its config and manifest.</summary>
internal static class EnvironmentArtifact
{
    internal sealed record EnvironmentConfig(string Name, string Version, string Distribution, IReadOnlyList<string> Packages, string RootfsSha256, long RootfsBytes, DateTimeOffset BuiltAt);

    /// <summary>The config blob: the environment's metadata. Carries architecture and os so tools that peek at configs see the platform.</summary>
    internal static byte[] Config(EnvironmentManifest m, EnvironmentSpec spec)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("architecture", "amd64");
            w.WriteString("os", "linux");
            w.WriteString("name", spec.Name);
            w.WriteString("version", m.Version);
            w.WriteString("distribution", m.Distribution);
            w.WriteStartArray("packages");
            foreach (var p in m.Packages)
            {
                w.WriteStringValue(p);
            }

            w.WriteEndArray();
            w.WriteString("rootfs_sha256", m.RootfsSha256);
            w.WriteNumber("rootfs_bytes", m.RootfsBytes);
            w.WriteString("rootfs_format", "ext4");
            w.WriteStartObject("runtime");
            w.WriteString("platform", "linux-x86_64");
            w.WriteString("pyro_version", Pyro.CatalogVersion);
            w.WriteEndObject();
            w.WriteString("built_at", m.BuiltAt.ToUniversalTime().ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture));
            w.WriteEndObject();
        }

        return buffer.ToArray();
    }

    internal static byte[] Manifest(string configDigest, long configBytes, string layerDigest, long layerBytes, EnvironmentManifest m)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteNumber("schemaVersion", 2);
            w.WriteString("mediaType", OciMediaTypes.OciManifest);
            w.WriteStartObject("config");
            w.WriteString("mediaType", OciMediaTypes.EnvironmentConfig);
            w.WriteString("digest", configDigest);
            w.WriteNumber("size", configBytes);
            w.WriteEndObject();
            w.WriteStartArray("layers");
            w.WriteStartObject();
            w.WriteString("mediaType", OciMediaTypes.EnvironmentRootfs);
            w.WriteString("digest", layerDigest);
            w.WriteNumber("size", layerBytes);
            w.WriteStartObject("annotations");
            w.WriteString("org.opencontainers.image.title", "rootfs.ext4.zst");
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteStartObject("annotations");
            w.WriteString("org.opencontainers.image.title", m.Name);
            w.WriteString("org.opencontainers.image.version", m.Version);
            w.WriteString("org.opencontainers.image.created", m.BuiltAt.ToUniversalTime().ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture));
            w.WriteEndObject();
            w.WriteEndObject();
        }

        return buffer.ToArray();
    }

    /// <summary>Checks that an image is a pyro environment and reads its config.</summary>
    internal static EnvironmentConfig ReadConfig(ResolvedImage image, string reference)
    {
        if (image.ConfigDescriptor.MediaType != OciMediaTypes.EnvironmentConfig || image.Layers.Count != 1 || image.Layers[0].MediaType != OciMediaTypes.EnvironmentRootfs)
        {
            throw new OciException("oci_image_invalid",
                $"{reference} is not a pyro environment (config '{image.ConfigDescriptor.MediaType}', {image.Layers.Count} layer(s)); publish one with 'pyro env publish'.");
        }

        try
        {
            using var doc = JsonDocument.Parse(image.ConfigBytes);
            var r = doc.RootElement;
            string S(string name) => r.GetProperty(name).GetString() ?? throw new JsonException(name);
            var sha = S("rootfs_sha256");
            if (sha.Length != 64 || !sha.All(char.IsAsciiHexDigitLower))
            {
                throw new JsonException("rootfs_sha256 is not 64 lower-case hex digits");
            }

            return new EnvironmentConfig(S("name"), S("version"), S("distribution"),
                [.. r.GetProperty("packages").EnumerateArray().Select(p => p.GetString() ?? "")],
                sha, r.GetProperty("rootfs_bytes").GetInt64(),
                DateTimeOffset.Parse(S("built_at"), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal));
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new OciException("oci_image_invalid", $"the environment config of {reference} is malformed ({ex.Message}).", ex);
        }
    }
}
