using System.Globalization;
using System.Text.Json;

namespace PyroMcp.Oci;

/// <summary>The media types pyro reads and writes.</summary>
internal static class OciMediaTypes
{
    internal const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    internal const string OciIndex = "application/vnd.oci.image.index.v1+json";
    internal const string OciConfig = "application/vnd.oci.image.config.v1+json";
    internal const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    internal const string DockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
    internal const string DockerConfig = "application/vnd.docker.container.image.v1+json";

    /// <summary>The config of an environment pyro published: its metadata, not a container image config.</summary>
    internal const string EnvironmentConfig = "application/vnd.pyro.environment.config.v1+json";

    /// <summary>The one layer of a published environment: the ext4 root disk, zstd-compressed.</summary>
    internal const string EnvironmentRootfs = "application/vnd.pyro.environment.rootfs.v1.ext4+zstd";

    internal static bool IsIndex(string? mediaType) => mediaType is OciIndex or DockerList;

    internal static bool IsManifest(string? mediaType) => mediaType is OciManifest or DockerManifest;

    /// <summary>What a manifest GET accepts.</summary>
    internal static readonly string[] Accept = [OciManifest, OciIndex, DockerManifest, DockerList];
}

/// <summary>A content descriptor: what a manifest says about a blob.</summary>
/// <param name="MediaType">The blob's media type.</param>
/// <param name="Digest">sha256:HEX, checked by <see cref="OciDigest.IsValid"/>.</param>
/// <param name="Size">Bytes.</param>
internal sealed record OciDescriptor(string MediaType, string Digest, long Size)
{
    /// <summary>os/architecture[/variant] of an index entry, when it says.</summary>
    internal string? Platform { get; init; }

    /// <summary>An index entry's <c>org.opencontainers.image.ref.name</c>, when it has one.</summary>
    internal string? RefName { get; init; }

    internal static OciDescriptor Parse(JsonElement e, string what)
    {
        if (e.ValueKind != JsonValueKind.Object
            || !e.TryGetProperty("digest", out var d) || d.ValueKind != JsonValueKind.String || !OciDigest.IsValid(d.GetString())
            || !e.TryGetProperty("size", out var s) || !s.TryGetInt64(out var size) || size < 0)
        {
            throw new OciException("oci_image_invalid", $"the image's {what} is not a valid descriptor (a sha256 digest and a size are required)");
        }

        var mediaType = e.TryGetProperty("mediaType", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString()! : "";
        string? platform = null;
        if (e.TryGetProperty("platform", out var p) && p.ValueKind == JsonValueKind.Object)
        {
            var os = p.TryGetProperty("os", out var o) ? o.GetString() : null;
            var arch = p.TryGetProperty("architecture", out var a) ? a.GetString() : null;
            var variant = p.TryGetProperty("variant", out var v) ? v.GetString() : null;
            platform = $"{os ?? "unknown"}/{arch ?? "unknown"}{(variant is null ? "" : "/" + variant)}";
        }

        string? refName = null;
        if (e.TryGetProperty("annotations", out var an) && an.ValueKind == JsonValueKind.Object
            && an.TryGetProperty("org.opencontainers.image.ref.name", out var r) && r.ValueKind == JsonValueKind.String)
        {
            refName = r.GetString();
        }

        return new OciDescriptor(mediaType, d.GetString()!, size) { Platform = platform, RefName = refName };
    }
}

/// <summary>What a container image's config says about how to run it (the fields pyro uses).</summary>
internal sealed record OciImageConfig
{
    public string? Architecture { get; init; }
    public string? Os { get; init; }
    public IReadOnlyList<string> Env { get; init; } = [];
    public string? WorkingDir { get; init; }
    public string? User { get; init; }
    public IReadOnlyList<string>? Entrypoint { get; init; }
    public IReadOnlyList<string>? Cmd { get; init; }

    /// <summary>Reads an OCI or Docker image config; a config of another kind (a pyro environment) yields what it has.</summary>
    internal static OciImageConfig Parse(byte[] bytes)
    {
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new OciException("oci_image_invalid", "the image config is not a JSON object");
            }

            var c = root.TryGetProperty("config", out var cfg) && cfg.ValueKind == JsonValueKind.Object ? cfg : default;
            return new OciImageConfig
            {
                Architecture = Str(root, "architecture"),
                Os = Str(root, "os"),
                Env = List(c, "Env") ?? [],
                WorkingDir = Str(c, "WorkingDir") is { Length: > 0 } w ? w : null,
                User = Str(c, "User") is { Length: > 0 } u ? u : null,
                Entrypoint = List(c, "Entrypoint"),
                Cmd = List(c, "Cmd"),
            };
        }
        catch (JsonException ex)
        {
            throw new OciException("oci_image_invalid", "the image config is not valid JSON", ex);
        }

        static string? Str(JsonElement e, string name)
            => e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

        static IReadOnlyList<string>? List(JsonElement e, string name)
            => e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array
                ? [.. v.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.String).Select(x => x.GetString()!)]
                : null;
    }
}

/// <summary>
/// How pyro talks to registries: timeouts, upload chunk size, credentials, registries allowed
/// over plain HTTP. <see cref="FromEnvironment"/> reads the <c>PYRO_OCI_*</c> and
/// <c>OCI_REGISTRY_*</c> variables.
/// </summary>
internal sealed record OciClientOptions
{
    internal const int DefaultChunkSize = 16 * 1024 * 1024;

    /// <summary>Longest wait for one request's answer, or between two reads of a download (<c>PYRO_OCI_REQUEST_TIMEOUT_SECONDS</c>, default 60).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Longest one upload request (a chunk) may take (<c>PYRO_OCI_UPLOAD_TIMEOUT_SECONDS</c>, default 300).</summary>
    public TimeSpan UploadTimeout { get; init; } = TimeSpan.FromSeconds(300);

    /// <summary>Bytes per upload PATCH (<c>PYRO_OCI_UPLOAD_CHUNK_SIZE_BYTES</c>, default 16 MiB).</summary>
    public int ChunkSize { get; init; } = DefaultChunkSize;

    /// <summary><c>OCI_REGISTRY_USERNAME</c>; with <see cref="Password"/>, overrides the auth file.</summary>
    public string? Username { get; init; }

    /// <summary><c>OCI_REGISTRY_PASSWORD</c>. Never logged, never in an error or progress line.</summary>
    public string? Password { get; init; }

    /// <summary>Where to look for <c>auths</c> when no username is set; null means the usual places.</summary>
    public IReadOnlyList<string>? AuthFiles { get; init; }

    /// <summary>host[:port] spoken to over plain HTTP although not loopback (<c>PYRO_OCI_INSECURE_REGISTRIES</c>).</summary>
    public IReadOnlyList<string> InsecureRegistries { get; init; } = [];

    /// <summary>Attempts per chunk or download before giving up with <c>oci_registry_unreachable</c>.</summary>
    public int MaxRetries { get; init; } = 5;

    /// <summary>Reads the environment variables; a malformed value is <c>oci_setting_invalid</c>.</summary>
    internal static OciClientOptions FromEnvironment()
    {
        var o = new OciClientOptions();
        return o with
        {
            RequestTimeout = Seconds("PYRO_OCI_REQUEST_TIMEOUT_SECONDS") ?? o.RequestTimeout,
            UploadTimeout = Seconds("PYRO_OCI_UPLOAD_TIMEOUT_SECONDS") ?? o.UploadTimeout,
            ChunkSize = Env("PYRO_OCI_UPLOAD_CHUNK_SIZE_BYTES") is { } c
                ? (int.TryParse(c, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 1024 && n <= 1024 * 1024 * 1024 ? n
                    : throw new PyroInputException("oci_setting_invalid", $"PYRO_OCI_UPLOAD_CHUNK_SIZE_BYTES='{c}' is not a whole number of bytes from 1024 to 1073741824."))
                : o.ChunkSize,
            Username = Env("OCI_REGISTRY_USERNAME"),
            Password = Environment.GetEnvironmentVariable("OCI_REGISTRY_PASSWORD"),
            InsecureRegistries = Env("PYRO_OCI_INSECURE_REGISTRIES") is { } list
                ? [.. list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(h => h.ToLowerInvariant())]
                : [],
        };

        static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v.Trim() : null;

        static TimeSpan? Seconds(string name) => Env(name) is { } v
            ? (int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var s) && s >= 1 && s <= 86400 ? TimeSpan.FromSeconds(s)
                : throw new PyroInputException("oci_setting_invalid", $"{name}='{v}' is not a whole number of seconds from 1 to 86400."))
            : null;
    }
}
