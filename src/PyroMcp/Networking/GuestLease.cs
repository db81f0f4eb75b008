using System.Net;
using System.Net.Sockets;
using PyroMcp.Protocol;

namespace PyroMcp.Networking;

/// <summary>
/// Reads what a guest says about its network. The guest is hostile: only well-formed IPv4
/// addresses pass, a handful of them, so nothing it claims can inject text into status, logs or
/// the database.
/// </summary>
internal static class GuestLease
{
    private const int MaxDnsServers = 4;

    /// <summary>The guest's network, or null when it reported none (no device, or no lease).</summary>
    internal static GuestNetwork? Read(GuestNetworkReply? reply)
    {
        if (reply is null || Ipv4(reply.Address) is not { } address || reply.PrefixLength is < 1 or > 32)
        {
            return null;
        }

        return new GuestNetwork
        {
            Address = address,
            PrefixLength = reply.PrefixLength,
            Gateway = Ipv4(reply.Gateway),
            DnsServers = (reply.Dns ?? []).Take(MaxDnsServers).Select(Ipv4).OfType<string>().ToList(),
        };
    }

    /// <summary>Why the guest has no network although it was given one, cleaned for display; null when it has one or none was asked for.</summary>
    internal static string? Problem(GuestNetworkReply? reply, bool expected)
    {
        if (!expected || Read(reply) is not null)
        {
            return null;
        }

        return reply?.Error is { Length: > 0 } error
            ? Vmm.GuestAgentClient.Sanitize(error, 200)
            : "the guest reported no address on eth0";
    }

    private static string? Ipv4(string? text)
        => text is { Length: > 0 and <= 15 } && IPAddress.TryParse(text, out var ip) && ip.AddressFamily == AddressFamily.InterNetwork && ip.ToString() == text
            ? text
            : null;
}
