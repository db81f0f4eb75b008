namespace PyroMcp.Environments;

/// <summary>One recipe in the catalog: what goes into the root disk.</summary>
internal sealed record EnvironmentSpec(string Name, string Version, string Description, string Suite, IReadOnlyList<string> Packages)
{
    internal string Distribution => "debian 12";

    /// <summary>Directory name in the cache: the name made path-safe, plus the version.</summary>
    internal string DirectoryName => ImportedDirectory ?? Name.Replace(':', '_').Replace('/', '_') + "-" + Version;

    /// <summary>For an environment imported from an OCI image: its directory in the cache (there is no recipe to build it from).</summary>
    internal string? ImportedDirectory { get; init; }

    internal bool Imported => ImportedDirectory is not null;
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
}
