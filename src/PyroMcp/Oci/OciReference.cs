using System.Net;
using System.Text.RegularExpressions;

namespace PyroMcp.Oci;

/// <summary>
/// A registry reference <c>HOST[:PORT]/REPO[:TAG][@sha256:HEX]</c>. The host is required: pyro
/// never guesses a default registry.
/// </summary>
internal sealed partial record OciReference(string Registry, string Repository, string? Tag, string? Digest)
{
    /// <summary>What the manifest is asked for by: the digest when there is one, else the tag (<c>latest</c> when none).</summary>
    internal string ManifestReference => Digest ?? Tag ?? "latest";

    /// <summary>The host without the port, lower case, without IPv6 brackets.</summary>
    internal string Host
    {
        get
        {
            if (Registry.StartsWith('['))
            {
                return Registry[1..Registry.IndexOf(']', StringComparison.Ordinal)];
            }

            var colon = Registry.LastIndexOf(':');
            return (colon < 0 ? Registry : Registry[..colon]).ToLowerInvariant();
        }
    }

    /// <summary>127.0.0.0/8, ::1 or localhost: spoken to over plain HTTP, never through a proxy.</summary>
    internal bool IsLoopback => Host == "localhost" || (IPAddress.TryParse(Host, out var ip) && IPAddress.IsLoopback(ip));

    public override string ToString() => $"{Registry}/{Repository}{(Tag is null ? "" : ":" + Tag)}{(Digest is null ? "" : "@" + Digest)}";

    /// <summary>Parses a reference; <c>oci_reference_invalid</c> with what is wrong otherwise.</summary>
    internal static OciReference Parse(string text, string? field = null)
    {
        var s = text?.Trim() ?? "";
        PyroInputException Bad(string why) => new("oci_reference_invalid",
            $"'{s}' is not a registry reference ({why}). Write HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST], e.g. localhost:5000/pyro/debian-12:1.0.0.", field);

        if (s.Length == 0 || s.Length > 1024)
        {
            throw Bad(s.Length == 0 ? "it is empty" : "it is too long");
        }

        string? digest = null;
        var at = s.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0)
        {
            digest = s[(at + 1)..];
            s = s[..at];
            if (!OciDigest.IsValid(digest))
            {
                throw Bad("the digest must be sha256: and 64 lower-case hex digits");
            }
        }

        var slash = s.IndexOf('/', StringComparison.Ordinal);
        if (slash <= 0)
        {
            throw Bad("a registry host is required before the first '/'");
        }

        var registry = s[..slash];
        var rest = s[(slash + 1)..];
        if (!RegistryPattern().IsMatch(registry) || (!registry.Contains('.') && !registry.Contains(':') && !registry.StartsWith('[') && registry != "localhost"))
        {
            throw Bad($"'{registry}' is not a registry host (a name with a dot, a port, localhost or an IP address)");
        }

        string? tag = null;
        var colon = rest.LastIndexOf(':');
        if (colon >= 0 && !rest[colon..].Contains('/'))
        {
            tag = rest[(colon + 1)..];
            rest = rest[..colon];
            if (!TagPattern().IsMatch(tag))
            {
                throw Bad($"'{tag}' is not a tag (letters, digits, '_', '.', '-', at most 128)");
            }
        }

        if (!RepositoryPattern().IsMatch(rest) || rest.Length > 255)
        {
            throw Bad($"'{rest}' is not a repository name (lower-case path components of letters, digits and . _ -)");
        }

        return new OciReference(registry, rest, tag, digest);
    }

    [GeneratedRegex(@"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?$")]
    private static partial Regex RegistryPattern();

    [GeneratedRegex(@"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]
    private static partial Regex TagPattern();

    [GeneratedRegex(@"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")]
    private static partial Regex RepositoryPattern();
}

/// <summary>sha256 digests, the only algorithm pyro accepts: checked before any is used as a path or URL part.</summary>
internal static partial class OciDigest
{
    internal static bool IsValid(string? digest) => digest is not null && Pattern().IsMatch(digest);

    internal static string Of(ReadOnlySpan<byte> bytes) => "sha256:" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));

    internal static string Hex(string digest) => digest["sha256:".Length..];

    [GeneratedRegex("^sha256:[a-f0-9]{64}$")]
    private static partial Regex Pattern();
}
