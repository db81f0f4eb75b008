using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using PyroMcp.Environments;

namespace PyroMcp.Images;

/// <summary>
/// Environments imported from OCI images: in the same cache as the catalog's, one directory each
/// (<c>imported-NAME-HASH</c>), found by the name their manifest records.
/// </summary>
internal static partial class ImportedEnvironments
{
    internal const string DirectoryPrefix = "imported-";

    /// <summary>Every imported environment with a readable manifest, by name.</summary>
    internal static IReadOnlyList<EnvironmentSpec> All(EnvironmentStore store)
    {
        if (!Directory.Exists(store.PlatformDir))
        {
            return [];
        }

        var found = new List<EnvironmentSpec>();
        foreach (var dir in Directory.GetDirectories(store.PlatformDir, DirectoryPrefix + "*").Order(StringComparer.Ordinal))
        {
            if (EnvironmentStore.ReadManifest(Path.Combine(dir, EnvironmentStore.ManifestFile)) is { Kind: "imported" } manifest
                && Path.GetFileName(dir) == DirectoryFor(manifest.Name))
            {
                found.Add(SpecFor(manifest.Name, manifest.Image?.Reference));
            }
        }

        return found;
    }

    internal static EnvironmentSpec SpecFor(string name, string? reference)
        => new(name, "imported", $"Imported from the OCI image {reference ?? "(unknown)"}.", "", []) { ImportedDirectory = DirectoryFor(name) };

    /// <summary>The directory of an imported name: path-safe, and a hash so <c>a/b</c> and <c>a_b</c> differ.</summary>
    internal static string DirectoryFor(string name)
        => DirectoryPrefix + name.Replace(':', '_').Replace('/', '_') + "-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(name)))[..12];

    /// <summary>
    /// Checks a name for an imported environment: lowercase letters, digits, <c>. _ - /</c>, then
    /// an optional <c>:tag</c>; not a catalog name. <c>environment_name_invalid</c> or <c>environment_name_taken</c>.
    /// </summary>
    internal static string Validate(string name)
    {
        if (!NamePattern().IsMatch(name))
        {
            throw new PyroInputException("environment_name_invalid",
                $"'{Trees.SafeTarExtractor.SanitizeName(name)}' is not a valid environment name: use lowercase letters, digits, '.', '_', '-' and '/' (up to 100), then optionally ':' and a tag (up to 64), e.g. alpine:3.20", "name");
        }

        if (EnvironmentCatalog.All.Any(e => e.Name == name))
        {
            throw new PyroInputException("environment_name_taken", $"'{name}' is a catalog environment; give the import another name with --name", "name");
        }

        return name;
    }

    /// <summary>
    /// The default name of an image: the last path component of a registry repository, of a layout
    /// directory or of an archive file (without <c>.tar</c>), lowercased, with its tag.
    /// </summary>
    internal static string DefaultName(string reference)
    {
        string path;
        string? tag = null;
        if (reference.StartsWith("oci:", StringComparison.Ordinal) || reference.StartsWith("oci-archive:", StringComparison.Ordinal) || reference.EndsWith(".tar", StringComparison.Ordinal))
        {
            var text = reference.StartsWith("oci:", StringComparison.Ordinal) ? reference[4..] : reference.StartsWith("oci-archive:", StringComparison.Ordinal) ? reference[12..] : reference;
            var colon = text.LastIndexOf(':');
            if (colon > 0 && !text[colon..].Contains('/'))
            {
                tag = text[(colon + 1)..];
                text = text[..colon];
            }

            path = Path.GetFileName(Path.TrimEndingDirectorySeparator(text));
            if (path.EndsWith(".tar", StringComparison.Ordinal))
            {
                path = path[..^4];
            }
        }
        else
        {
            var at = reference.IndexOf('@', StringComparison.Ordinal);
            var text = at >= 0 ? reference[..at] : reference;
            var slash = text.LastIndexOf('/');
            var last = slash >= 0 ? text[(slash + 1)..] : text;
            var colon = last.LastIndexOf(':');
            if (colon > 0)
            {
                tag = last[(colon + 1)..];
                last = last[..colon];
            }
            else if (at < 0)
            {
                tag = "latest";
            }

            path = last;
        }

        var clean = new string(path.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' ? c : '-').ToArray()).Trim('-', '.', '_');
        if (clean.Length == 0)
        {
            clean = "image";
        }

        var name = tag is { Length: > 0 } ? $"{clean}:{tag}" : clean;
        return NamePattern().IsMatch(name) ? name : clean;
    }

    [GeneratedRegex("^[a-z0-9][a-z0-9._/-]{0,99}(:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$")]
    private static partial Regex NamePattern();
}
