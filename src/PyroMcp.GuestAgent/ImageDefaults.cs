using System.Globalization;
using System.Text.Json;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent;

/// <summary>
/// The exec defaults of an imported image (<see cref="ImageExecDefaults"/>), read once when the
/// agent starts, and the user switch: a <c>user[:group]</c> resolved against the guest's own
/// /etc/passwd and /etc/group, applied by the agent itself (<see cref="ExecAs"/>) between <c>setsid</c> and the command.
/// </summary>
internal static class ImageDefaults
{
    /// <summary>The defaults in force; null on a disk that has none.</summary>
    internal static ImageExecDefaults? Current { get; private set; }

    /// <summary>Reads <paramref name="path"/>; a missing or unreadable file means no defaults (a broken one is the guest's own doing).</summary>
    internal static void Load(string path = ImageExecDefaults.GuestPath)
    {
        try
        {
            Current = File.Exists(path) ? ProtocolJsonContext.Decode<ImageExecDefaults>(File.ReadAllBytes(path)) : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException or ProtocolViolationException)
        {
            Current = null;
        }
    }

    /// <summary>Sets the defaults directly (tests).</summary>
    internal static void Set(ImageExecDefaults? defaults) => Current = defaults;

    /// <summary>The image's variables, applied over the agent's base environment and under the request's.</summary>
    internal static void AddEnvironment(Dictionary<string, string> env)
    {
        foreach (var pair in Current?.Env ?? [])
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            if (equals > 0 && !pair.Contains('\0', StringComparison.Ordinal))
            {
                env[pair[..equals]] = pair[(equals + 1)..];
            }
        }
    }

    /// <summary>The user a command runs as: the request's, else the image's; null for root (no switch).</summary>
    internal static ResolvedUser? ResolveUser(string? requested, string passwdPath = "/etc/passwd", string groupPath = "/etc/group")
    {
        var spec = string.IsNullOrWhiteSpace(requested) ? Current?.User : requested;
        if (string.IsNullOrWhiteSpace(spec))
        {
            return null;
        }

        var colon = spec.IndexOf(':', StringComparison.Ordinal);
        var userPart = colon < 0 ? spec : spec[..colon];
        var groupPart = colon < 0 ? null : spec[(colon + 1)..];
        var passwd = ReadTable(passwdPath);
        string[]? entry;
        uint uid;
        if (uint.TryParse(userPart, NumberStyles.None, CultureInfo.InvariantCulture, out uid))
        {
            entry = passwd.FirstOrDefault(e => e.Length >= 7 && e[2] == userPart);
        }
        else
        {
            entry = passwd.FirstOrDefault(e => e.Length >= 7 && e[0] == userPart)
                ?? throw new AgentFailure("user_not_found", $"user '{userPart}' is not in the guest's /etc/passwd");
            uid = uint.TryParse(entry[2], NumberStyles.None, CultureInfo.InvariantCulture, out var u) ? u
                : throw new AgentFailure("user_not_found", $"user '{userPart}' has no numeric uid in the guest's /etc/passwd");
        }

        uint gid;
        if (string.IsNullOrEmpty(groupPart))
        {
            gid = entry is not null && uint.TryParse(entry[3], NumberStyles.None, CultureInfo.InvariantCulture, out var g) ? g : uid == 0 ? 0 : uid;
        }
        else if (!uint.TryParse(groupPart, NumberStyles.None, CultureInfo.InvariantCulture, out gid))
        {
            var group = ReadTable(groupPath).FirstOrDefault(e => e.Length >= 3 && e[0] == groupPart)
                ?? throw new AgentFailure("user_not_found", $"group '{groupPart}' is not in the guest's /etc/group");
            gid = uint.TryParse(group[2], NumberStyles.None, CultureInfo.InvariantCulture, out var g) ? g
                : throw new AgentFailure("user_not_found", $"group '{groupPart}' has no numeric gid in the guest's /etc/group");
        }

        var name = entry?[0] ?? userPart;
        var home = entry is { Length: >= 7 } && entry[5].Length > 0 ? entry[5] : "/";
        return uid == 0 && gid == 0 ? null : new ResolvedUser(uid, gid, name, home);
    }

    /// <summary>
    /// The argv that runs <paramref name="argv"/> as <paramref name="user"/>: the agent itself as
    /// a launcher (<see cref="ExecAs"/>: no supplementary groups, then gid, then uid), exec'd by
    /// setsid, so the pid is still the group leader.
    /// </summary>
    internal static IEnumerable<string> Wrap(IReadOnlyList<string> argv, ResolvedUser? user)
    {
        if (user is null)
        {
            return argv;
        }

        var agent = Environment.ProcessPath ?? "/run/pyro/pyro-agent";
        return [agent, ExecAs.Flag, user.Uid.ToString(CultureInfo.InvariantCulture), user.Gid.ToString(CultureInfo.InvariantCulture), .. argv];
    }

    /// <summary>HOME, USER and LOGNAME of the user, unless the request set them.</summary>
    internal static void AddUserEnvironment(Dictionary<string, string> env, ResolvedUser? user, IReadOnlyDictionary<string, string>? requested)
    {
        if (user is null)
        {
            return;
        }

        foreach (var (key, value) in new[] { ("HOME", user.Home), ("USER", user.Name), ("LOGNAME", user.Name) })
        {
            if (requested?.ContainsKey(key) != true && Current?.Env.Any(e => e.StartsWith(key + "=", StringComparison.Ordinal)) != true)
            {
                env[key] = value;
            }
        }
    }

    private static List<string[]> ReadTable(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadLines(path).Take(100_000).Select(l => l.Split(':')).ToList() : [];
        }
        catch (IOException)
        {
            return [];
        }
    }
}

/// <summary>A user to switch to, resolved in the guest.</summary>
internal sealed record ResolvedUser(uint Uid, uint Gid, string Name, string Home);
