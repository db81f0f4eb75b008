using System.Net;

namespace PyroMcp.Networking;

/// <summary>
/// Which name servers a guest can use. passt hands the guest the host's resolvers from
/// /etc/resolv.conf, but skips those on loopback (systemd-resolved's 127.0.0.53, a local dnsmasq):
/// with <c>--no-map-gw</c> the guest cannot reach the host's loopback. Then the upstream servers
/// such a local resolver uses, when the host lists them, are given to passt explicitly.
/// </summary>
internal static class HostResolvers
{
    internal const string SystemResolvConf = "/etc/resolv.conf";
    internal const string ResolvedUpstream = "/run/systemd/resolve/resolv.conf";

    /// <summary>The <c>--dns</c> servers to give passt: none when it finds usable ones itself.</summary>
    internal static IReadOnlyList<string> ForPasst(string systemFile = SystemResolvConf, string upstreamFile = ResolvedUpstream)
    {
        var system = Read(systemFile);
        if (system.Any(ip => !IPAddress.IsLoopback(ip)))
        {
            return [];
        }

        return [.. Read(upstreamFile).Where(ip => !IPAddress.IsLoopback(ip)).Take(3).Select(ip => ip.ToString())];
    }

    /// <summary>Why guests will have no DNS on this host, or null when they will.</summary>
    internal static string? Problem(string systemFile = SystemResolvConf, string upstreamFile = ResolvedUpstream)
    {
        var system = Read(systemFile);
        if (system.Any(ip => !IPAddress.IsLoopback(ip)) || ForPasst(systemFile, upstreamFile).Count > 0)
        {
            return null;
        }

        return system.Count == 0
            ? $"{systemFile} lists no name server: guests with egress connect by address only, and name lookups fail at once"
            : $"the host's only name servers are on loopback ({string.Join(", ", system)}), which guests cannot reach, and {upstreamFile} lists no upstream: guests with egress connect by address only";
    }

    private static List<IPAddress> Read(string path)
    {
        var servers = new List<IPAddress>();
        try
        {
            foreach (var line in File.ReadLines(path))
            {
                var fields = line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
                if (fields is ["nameserver", var address, ..] && IPAddress.TryParse(address, out var ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
                {
                    servers.Add(ip);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }

        return servers;
    }
}
