using System.Text.Json;

namespace PyroMcp.Environments;

/// <summary>One recipe in the catalog: what goes into the root disk.</summary>
internal sealed record EnvironmentSpec(string Name, string Version, string Description, string Suite, IReadOnlyList<string> Packages)
{
    internal string Distribution => Imported ? "OCI image" : "debian 12";

    /// <summary>Directory name in the cache: the name made path-safe, plus the version.</summary>
    internal string DirectoryName => ImportedDirectory ?? Name.Replace(':', '_').Replace('/', '_') + "-" + Version;

    /// <summary>For an environment imported from an OCI image: its directory in the cache (there is no recipe to build it from).</summary>
    internal string? ImportedDirectory { get; init; }

    internal bool Imported => ImportedDirectory is not null;

    /// <summary>The repository name under a registry namespace: <c>debian:12</c> is <c>debian-12</c>.</summary>
    internal string RepositoryName => Name.Replace(':', '-').Replace('/', '-');
}

/// <summary>The environments this version of pyro knows how to build.</summary>
internal static class EnvironmentCatalog
{
    /// <summary>Version of the catalog as a whole; it moves with the pyro release.</summary>
    internal static string Version => typeof(EnvironmentCatalog).Assembly.GetName().Version is { } v ? $"{v.Major}.{v.Minor}.{v.Build}" : "0.0.0";

    internal const string DefaultEnvironment = "debian:12";

    internal static readonly IReadOnlyList<EnvironmentSpec> All =
    [
        new("debian:12", "1.0.0", "Debian 12 with Git preinstalled for common agent workflows.", "bookworm", ["git", "ca-certificates"]),
        new("debian:12-base", "1.0.0", "Minimal Debian 12 for shell and core Unix tooling.", "bookworm", []),
        new("debian:12-build", "1.0.0", "Debian 12 with Git and common build tools (build-essential, make, python3, pkg-config, curl).", "bookworm",
            ["git", "ca-certificates", "build-essential", "make", "python3", "pkg-config", "curl"]),
    ];

    /// <summary>A catalog environment only (publishing takes these).</summary>
    internal static EnvironmentSpec Resolve(string name)
    {
        var trimmed = name?.Trim() ?? "";
        return All.FirstOrDefault(e => e.Name == trimmed)
            ?? throw new PyroInputException("unknown_environment",
                $"unknown environment '{name}'. Known environments: {string.Join(", ", All.Select(e => e.Name))}.", nameof(RunRequest.Environment));
    }

    /// <summary>A catalog environment, or one imported into the cache of <paramref name="options"/>.</summary>
    internal static EnvironmentSpec Resolve(string name, PyroOptions options)
    {
        var trimmed = name?.Trim() ?? "";
        if (All.FirstOrDefault(e => e.Name == trimmed) is { } spec)
        {
            return spec;
        }

        var store = new EnvironmentStore(options);
        var imported = Images.ImportedEnvironments.All(store);
        return imported.FirstOrDefault(e => e.Name == trimmed)
            ?? throw new PyroInputException("unknown_environment",
                $"unknown environment '{name}'. Known environments: {string.Join(", ", All.Concat(imported).Select(e => e.Name))}.", nameof(RunRequest.Environment));
    }

    /// <summary>
    /// The OCI reference this environment is pulled from, or null when it is built locally: the
    /// catalog file's <c>oci_source</c> for it, else <c>REGISTRY/NAMESPACE/NAME:VERSION</c> under
    /// <see cref="PyroOptions.EnvironmentRegistry"/>.
    /// </summary>
    internal static string? OciSource(EnvironmentSpec spec, PyroOptions options)
    {
        if (spec.Imported)
        {
            return null;
        }

        if (options.EnvironmentCatalogFile is { } file)
        {
            if (CatalogFileSource(file, spec.Name) is { } fromFile)
            {
                return fromFile;
            }
        }

        if (options.EnvironmentRegistry is { } registry)
        {
            var reference = $"{registry.Trim().TrimEnd('/')}/{spec.RepositoryName}:{spec.Version}";
            Oci.OciReference.Parse(reference, nameof(PyroOptions.EnvironmentRegistry));
            return reference;
        }

        return null;
    }

    private static string? CatalogFileSource(string file, string name)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new JsonException("the top level is not an object");
            }

            if (!doc.RootElement.TryGetProperty(name, out var entry))
            {
                return null;
            }

            if (entry.ValueKind != JsonValueKind.Object || !entry.TryGetProperty("oci_source", out var source) || source.ValueKind != JsonValueKind.String)
            {
                throw new JsonException($"the entry '{name}' has no \"oci_source\" string");
            }

            var reference = source.GetString()!;
            Oci.OciReference.Parse(reference, nameof(PyroOptions.EnvironmentCatalogFile));
            return reference;
        }
        catch (Exception ex) when (ex is JsonException or IOException or UnauthorizedAccessException)
        {
            throw new PyroInputException("environment_catalog_invalid",
                $"the environment catalog file {file} (PYRO_ENVIRONMENT_CATALOG) cannot be used: {ex.Message}. It is JSON: {{\"debian:12\": {{\"oci_source\": \"HOST[:PORT]/REPOSITORY:TAG\"}}}}.",
                nameof(PyroOptions.EnvironmentCatalogFile));
        }
    }
}
