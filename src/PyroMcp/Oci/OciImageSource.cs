using System.Formats.Tar;
using System.Text.Json;

namespace PyroMcp.Oci;

/// <summary>Reading manifests and indexes: media type, config, layers, platform choice.</summary>
internal static class OciManifests
{
    internal const string WantedPlatform = "linux/amd64";

    /// <summary>The media type a manifest says it has, else the one its shape shows, else the header's.</summary>
    internal static string MediaTypeOf(byte[] bytes, string? header)
    {
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new OciException("oci_image_invalid", "the manifest is not a JSON object");
            }

            if (root.TryGetProperty("mediaType", out var m) && m.ValueKind == JsonValueKind.String && m.GetString() is { Length: > 0 } declared)
            {
                return declared;
            }

            if (root.TryGetProperty("schemaVersion", out var v) && v.ValueKind == JsonValueKind.Number && v.GetInt32() == 1)
            {
                throw new OciException("oci_image_invalid", "the image has a Docker schema 1 manifest, which pyro does not read; push it again with a current tool (schema 2 or OCI).");
            }

            return root.TryGetProperty("manifests", out _) ? OciMediaTypes.OciIndex
                : root.TryGetProperty("layers", out _) ? OciMediaTypes.OciManifest
                : header ?? "";
        }
        catch (JsonException ex)
        {
            throw new OciException("oci_image_invalid", "the manifest is not valid JSON", ex);
        }
    }

    /// <summary>The linux/amd64 entry of an index; <c>oci_platform_unavailable</c> naming the platforms there are.</summary>
    internal static OciDescriptor PickPlatform(byte[] index, string where)
    {
        var entries = Entries(index);
        return entries.FirstOrDefault(e => e.Platform is { } p && (p == WantedPlatform || p.StartsWith(WantedPlatform + "/", StringComparison.Ordinal)) && OciMediaTypes.IsManifest(e.MediaType))
            ?? entries.FirstOrDefault(e => e.Platform is { } p && (p == WantedPlatform || p.StartsWith(WantedPlatform + "/", StringComparison.Ordinal)))
            ?? throw new OciException("oci_platform_unavailable",
                $"{where} has no {WantedPlatform} image; it has: {(entries.Count == 0 ? "nothing" : string.Join(", ", entries.Select(e => e.Platform ?? "unspecified").Distinct()))}. pyro boots x86_64 guests only.");
    }

    internal static List<OciDescriptor> Entries(byte[] index)
    {
        using var doc = Parse(index, "index");
        if (!doc.RootElement.TryGetProperty("manifests", out var manifests) || manifests.ValueKind != JsonValueKind.Array)
        {
            throw new OciException("oci_image_invalid", "the index has no manifests list");
        }

        return [.. manifests.EnumerateArray().Take(10_000).Select(e => OciDescriptor.Parse(e, "index entry"))];
    }

    internal static (OciDescriptor Config, IReadOnlyList<OciDescriptor> Layers) ConfigAndLayers(byte[] manifest)
    {
        using var doc = Parse(manifest, "manifest");
        var root = doc.RootElement;
        if (!root.TryGetProperty("config", out var config) || !root.TryGetProperty("layers", out var layers) || layers.ValueKind != JsonValueKind.Array)
        {
            throw new OciException("oci_image_invalid", "the manifest has no config or no layers list");
        }

        var list = layers.EnumerateArray().Select(e => OciDescriptor.Parse(e, "layer")).ToList();
        if (list.Count > 1000)
        {
            throw new OciException("oci_image_invalid", $"the manifest lists {list.Count} layers; pyro reads at most 1000.");
        }

        return (OciDescriptor.Parse(config, "config"), list);
    }

    private static JsonDocument Parse(byte[] bytes, string what)
    {
        try
        {
            var doc = JsonDocument.Parse(bytes);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                doc.Dispose();
                throw new OciException("oci_image_invalid", $"the {what} is not a JSON object");
            }

            return doc;
        }
        catch (JsonException ex)
        {
            throw new OciException("oci_image_invalid", $"the {what} is not valid JSON", ex);
        }
    }
}

/// <summary>Where an image's manifests and blobs come from: a registry, an OCI layout directory or an OCI archive.</summary>
internal interface IOciBlobSource : IDisposable
{
    /// <summary>A manifest or index by digest (verified).</summary>
    Task<byte[]> ReadManifestAsync(OciDescriptor descriptor, CancellationToken cancellationToken);

    /// <summary>A small blob in memory (verified).</summary>
    Task<byte[]> ReadSmallBlobAsync(OciDescriptor descriptor, long maxBytes, CancellationToken cancellationToken);

    /// <summary>A blob to a file (verified, via <c>.partial</c>).</summary>
    Task FetchBlobAsync(OciDescriptor descriptor, string destination, Action<long>? onBytes, CancellationToken cancellationToken);
}

/// <summary>
/// One linux/amd64 image, resolved: its manifest, config and layer descriptors, and a way to
/// fetch each blob to a digest-verified file. Dispose it to release the registry connection or archive.
/// </summary>
internal sealed class ResolvedImage : IDisposable
{
    private readonly IOciBlobSource _source;
    private readonly IProgress<PyroProgress>? _progress;

    internal ResolvedImage(IOciBlobSource source, IProgress<PyroProgress>? progress, string location, string manifestDigest, string manifestMediaType,
        byte[] manifestBytes, OciDescriptor configDescriptor, byte[] configBytes, IReadOnlyList<OciDescriptor> layers)
    {
        _source = source;
        _progress = progress;
        Location = location;
        ManifestDigest = manifestDigest;
        ManifestMediaType = manifestMediaType;
        ManifestBytes = manifestBytes;
        ConfigDescriptor = configDescriptor;
        ConfigBytes = configBytes;
        Config = OciImageConfig.Parse(configBytes);
        Layers = layers;
    }

    /// <summary>What was opened, as given.</summary>
    internal string Location { get; }

    /// <summary>sha256 of the platform manifest (not of an index above it).</summary>
    internal string ManifestDigest { get; }

    /// <summary>OCI image manifest or Docker schema 2 manifest.</summary>
    internal string ManifestMediaType { get; }

    internal byte[] ManifestBytes { get; }

    internal OciDescriptor ConfigDescriptor { get; }

    /// <summary>The config blob as stored (digest-verified).</summary>
    internal byte[] ConfigBytes { get; }

    /// <summary>The config read as a container image config.</summary>
    internal OciImageConfig Config { get; }

    /// <summary>Layers, bottom first.</summary>
    internal IReadOnlyList<OciDescriptor> Layers { get; }

    /// <summary>
    /// Writes a blob of this image to <paramref name="destinationPath"/>, whose presence then
    /// means the digest matched. A <c>destinationPath.partial</c> left by a broken transfer is resumed.
    /// Reports <c>[oci] phase=download blob=... bytes=... total=...</c>.
    /// </summary>
    internal Task FetchBlobAsync(OciDescriptor descriptor, string destinationPath, CancellationToken cancellationToken)
        => _source.FetchBlobAsync(descriptor, destinationPath, _progress is null ? null : bytes => _progress.Report(new PyroProgress("oci", "download",
            [new("blob", descriptor.Digest), new("bytes", bytes.ToString(System.Globalization.CultureInfo.InvariantCulture)), new("total", descriptor.Size.ToString(System.Globalization.CultureInfo.InvariantCulture))])), cancellationToken);

    public void Dispose() => _source.Dispose();
}

/// <summary>Opens an image wherever it is: a registry reference, <c>oci:DIR[:TAG]</c>, <c>oci-archive:FILE[:TAG]</c> or a <c>.tar</c> path.</summary>
internal static class OciImageSource
{
    private const long MaxConfigBytes = 8 * 1024 * 1024;

    internal static async Task<ResolvedImage> OpenAsync(string location, OciClientOptions options, IProgress<PyroProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(location);
        IOciBlobSource source;
        byte[] top;
        string topDigest;
        if (location.StartsWith("oci:", StringComparison.Ordinal) || location.StartsWith("oci-archive:", StringComparison.Ordinal) || location.EndsWith(".tar", StringComparison.Ordinal))
        {
            var archive = !location.StartsWith("oci:", StringComparison.Ordinal);
            var (path, tag) = SplitPathTag(location.StartsWith("oci:", StringComparison.Ordinal) ? location[4..] : location.StartsWith("oci-archive:", StringComparison.Ordinal) ? location[12..] : location);
            IOciLocalFiles files = archive ? OciArchiveFiles.Open(path) : new OciLayoutFiles(path);
            source = new LocalSource(files);
            try
            {
                var root = SelectFromIndex(files.ReadIndex(), tag, location);
                top = await source.ReadManifestAsync(root, cancellationToken).ConfigureAwait(false);
                topDigest = root.Digest;
            }
            catch
            {
                source.Dispose();
                throw;
            }
        }
        else
        {
            var reference = OciReference.Parse(location);
            var client = new RegistryClient(reference, options);
            source = new RegistrySource(client);
            try
            {
                (top, _, topDigest) = await client.GetManifestAsync(reference.ManifestReference, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                source.Dispose();
                throw;
            }
        }

        try
        {
            return await ResolveAsync(source, progress, location, top, topDigest, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    private static async Task<ResolvedImage> ResolveAsync(IOciBlobSource source, IProgress<PyroProgress>? progress, string location, byte[] manifest, string digest, CancellationToken cancellationToken)
    {
        var mediaType = OciManifests.MediaTypeOf(manifest, null);
        if (OciMediaTypes.IsIndex(mediaType))
        {
            var entry = OciManifests.PickPlatform(manifest, location);
            manifest = await source.ReadManifestAsync(entry, cancellationToken).ConfigureAwait(false);
            digest = entry.Digest;
            mediaType = OciManifests.MediaTypeOf(manifest, entry.MediaType);
        }

        if (!OciMediaTypes.IsManifest(mediaType))
        {
            throw new OciException("oci_image_invalid", $"{location} is a '{mediaType}', not an image manifest pyro reads (OCI image manifest or Docker schema 2).");
        }

        var (configDescriptor, layers) = OciManifests.ConfigAndLayers(manifest);
        var config = await source.ReadSmallBlobAsync(configDescriptor, MaxConfigBytes, cancellationToken).ConfigureAwait(false);
        var image = new ResolvedImage(source, progress, location, digest, mediaType, manifest, configDescriptor, config, layers);
        if (image.Config.Architecture is { } arch && (arch != "amd64" || (image.Config.Os is { } os && os != "linux")))
        {
            throw new OciException("oci_platform_unavailable", $"{location} is an image for {image.Config.Os ?? "unknown"}/{arch}; pyro boots linux/amd64 guests only.");
        }

        return image;
    }

    /// <summary><c>PATH[:TAG]</c>: the part after the last ':' is a tag when it has no '/'.</summary>
    private static (string Path, string? Tag) SplitPathTag(string text)
    {
        var colon = text.LastIndexOf(':');
        return colon > 0 && !text[colon..].Contains('/') ? (text[..colon], text[(colon + 1)..]) : (text, null);
    }

    private static OciDescriptor SelectFromIndex(byte[] index, string? tag, string location)
    {
        var entries = OciManifests.Entries(index);
        if (tag is not null)
        {
            return entries.FirstOrDefault(e => e.RefName == tag)
                ?? throw new OciException("oci_not_found", $"{location}: no image tagged '{tag}'; the layout has: {Tags(entries)}.");
        }

        return entries.Count switch
        {
            1 => entries[0],
            0 => throw new OciException("oci_not_found", $"{location} holds no image."),
            _ => throw new OciException("oci_not_found", $"{location} holds {entries.Count} images; name one with :TAG ({Tags(entries)})."),
        };
    }

    private static string Tags(List<OciDescriptor> entries)
        => entries.Count == 0 ? "nothing" : string.Join(", ", entries.Select(e => e.RefName ?? "(untagged " + e.Digest[..19] + ")"));

    private sealed class RegistrySource(RegistryClient client) : IOciBlobSource
    {
        public async Task<byte[]> ReadManifestAsync(OciDescriptor descriptor, CancellationToken cancellationToken)
            => (await client.GetManifestAsync(descriptor.Digest, cancellationToken).ConfigureAwait(false)).Bytes;

        public Task<byte[]> ReadSmallBlobAsync(OciDescriptor descriptor, long maxBytes, CancellationToken cancellationToken)
            => client.GetSmallBlobAsync(descriptor, maxBytes, cancellationToken);

        public Task FetchBlobAsync(OciDescriptor descriptor, string destination, Action<long>? onBytes, CancellationToken cancellationToken)
            => client.FetchBlobAsync(descriptor, destination, onBytes, cancellationToken);

        public void Dispose() => client.Dispose();
    }

    private sealed class LocalSource(IOciLocalFiles files) : IOciBlobSource
    {
        public Task<byte[]> ReadManifestAsync(OciDescriptor descriptor, CancellationToken cancellationToken)
            => ReadSmallBlobAsync(descriptor, 4 * 1024 * 1024, cancellationToken);

        public async Task<byte[]> ReadSmallBlobAsync(OciDescriptor descriptor, long maxBytes, CancellationToken cancellationToken)
        {
            if (descriptor.Size > maxBytes)
            {
                throw new OciException("oci_image_invalid", $"blob {descriptor.Digest} claims {descriptor.Size} bytes, more than the {maxBytes} allowed for it.");
            }

            var stream = files.OpenBlob(descriptor);
            await using var streamScope = stream.ConfigureAwait(false);
            var bytes = new byte[descriptor.Size];
            var n = await stream.ReadAtLeastAsync(bytes, bytes.Length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
            OciBlobFiles.CheckBytes(bytes.AsSpan(0, n), descriptor);
            return bytes;
        }

        public async Task FetchBlobAsync(OciDescriptor descriptor, string destination, Action<long>? onBytes, CancellationToken cancellationToken)
        {
            var stream = files.OpenBlob(descriptor);
            await using var streamScope = stream.ConfigureAwait(false);
            await OciBlobFiles.WriteVerifiedAsync(stream, descriptor, destination + ".partial", destination, 0, onBytes, null, cancellationToken).ConfigureAwait(false);
        }

        public void Dispose() => files.Dispose();
    }
}

/// <summary>The files of an OCI layout, in a directory or a tar.</summary>
internal interface IOciLocalFiles : IDisposable
{
    byte[] ReadIndex();

    Stream OpenBlob(OciDescriptor descriptor);
}

/// <summary>An OCI layout directory: <c>index.json</c> and <c>blobs/sha256/HEX</c>.</summary>
internal sealed class OciLayoutFiles : IOciLocalFiles
{
    private readonly string _dir;

    internal OciLayoutFiles(string dir)
    {
        _dir = Path.GetFullPath(dir);
        if (!File.Exists(Path.Combine(_dir, "index.json")))
        {
            throw new OciException("oci_not_found", $"{dir} is not an OCI layout (no index.json).");
        }
    }

    public byte[] ReadIndex()
    {
        var path = Path.Combine(_dir, "index.json");
        if (new FileInfo(path).Length > 4 * 1024 * 1024)
        {
            throw new OciException("oci_image_invalid", $"{path} is larger than 4 MiB.");
        }

        return File.ReadAllBytes(path);
    }

    public Stream OpenBlob(OciDescriptor descriptor)
    {
        // The digest was checked (sha256:HEX), so the path stays in blobs/sha256.
        var path = Path.Combine(_dir, "blobs", "sha256", OciDigest.Hex(descriptor.Digest));
        if (!File.Exists(path))
        {
            throw new OciException("oci_not_found", $"blob {descriptor.Digest} is missing from the layout {_dir}.");
        }

        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous);
    }

    public void Dispose()
    {
    }
}

/// <summary>
/// A tar of an OCI layout, read in place: one pass over the headers records where each regular
/// file's data lies; nothing is extracted, and only <c>index.json</c> and
/// <c>blobs/sha256/HEX</c> are ever looked up, so hostile names cannot point anywhere.
/// </summary>
internal sealed class OciArchiveFiles : IOciLocalFiles
{
    private const int MaxEntries = 200_000;
    private readonly FileStream _file;
    private readonly Dictionary<string, (long Offset, long Length)> _entries;

    private OciArchiveFiles(FileStream file, Dictionary<string, (long, long)> entries)
    {
        _file = file;
        _entries = entries;
    }

    internal static OciArchiveFiles Open(string path)
    {
        if (!File.Exists(path))
        {
            throw new OciException("oci_not_found", $"{path} does not exist.");
        }

        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var entries = new Dictionary<string, (long, long)>(StringComparer.Ordinal);
        try
        {
            using var reader = new TarReader(file, leaveOpen: true);
            var count = 0;
            while (reader.GetNextEntry(copyData: false) is { } entry)
            {
                if (++count > MaxEntries)
                {
                    throw new OciException("oci_image_invalid", $"{path} has more than {MaxEntries} entries; not an OCI archive pyro reads.");
                }

                if (entry.EntryType is TarEntryType.RegularFile or TarEntryType.V7RegularFile)
                {
                    var name = entry.Name;
                    while (name.StartsWith("./", StringComparison.Ordinal))
                    {
                        name = name[2..];
                    }

                    // On a seekable stream the reader has skipped the data and its padding to the next 512-byte block.
                    var offset = file.Position - ((entry.Length + 511) / 512 * 512);
                    if (entry.Length < 0 || offset < 0 || offset + entry.Length > file.Length)
                    {
                        throw new OciException("oci_image_invalid", $"{path}: the entry '{name}' runs past the end of the file.");
                    }

                    // A later entry of the same name wins, as tar extraction would have it.
                    entries[name] = (offset, entry.Length);
                }
            }
        }
        catch (Exception ex) when (ex is InvalidDataException or FormatException or EndOfStreamException or ArgumentException)
        {
            file.Dispose();
            throw new OciException("oci_image_invalid", $"{path} is not a readable tar ({ex.Message}).", ex);
        }
        catch
        {
            file.Dispose();
            throw;
        }

        if (!entries.ContainsKey("index.json"))
        {
            file.Dispose();
            throw new OciException("oci_image_invalid", $"{path} is not an OCI archive (no index.json at its top; a 'docker save' archive is not read).");
        }

        return new OciArchiveFiles(file, entries);
    }

    public byte[] ReadIndex()
    {
        var (offset, length) = _entries["index.json"];
        if (length > 4 * 1024 * 1024)
        {
            throw new OciException("oci_image_invalid", "the archive's index.json is larger than 4 MiB.");
        }

        var bytes = new byte[length];
        RandomAccess.Read(_file.SafeFileHandle, bytes, offset);
        return bytes;
    }

    public Stream OpenBlob(OciDescriptor descriptor)
    {
        if (!_entries.TryGetValue("blobs/sha256/" + OciDigest.Hex(descriptor.Digest), out var at))
        {
            throw new OciException("oci_not_found", $"blob {descriptor.Digest} is missing from the archive.");
        }

        return new WindowStream(_file.SafeFileHandle, at.Offset, at.Length);
    }

    public void Dispose() => _file.Dispose();

    /// <summary>A read-only window on the archive, with its own position (several may be open).</summary>
    private sealed class WindowStream(Microsoft.Win32.SafeHandles.SafeFileHandle handle, long start, long length) : Stream
    {
        private long _position;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => length;
        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var n = (int)Math.Min(buffer.Length, length - _position);
            if (n <= 0)
            {
                return 0;
            }

            n = RandomAccess.Read(handle, buffer[..n], start + _position);
            _position += n;
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            => ValueTask.FromResult(Read(buffer.Span));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => Task.FromResult(Read(buffer.AsSpan(offset, count)));

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
