using System.Text.Json.Serialization;

namespace PyroMcp;

/// <summary>
/// What network a guest gets. JSON, the CLI and MCP spell it <c>off</c>, <c>egress</c> and
/// <c>egress+published-ports</c>. Whatever the policy, the guest never reaches the host itself.
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<NetworkPolicy>))]
public enum NetworkPolicy
{
    /// <summary>No network device at all: the guest has only its loopback.</summary>
    [JsonStringEnumMemberName("off")] Off,
    /// <summary>Outbound connections through the host's user-mode network (passt), DNS through the host's resolver.</summary>
    [JsonStringEnumMemberName("egress")] Egress,
    /// <summary>Egress, and guest TCP ports may be published on the host's 127.0.0.1.</summary>
    [JsonStringEnumMemberName("egress+published-ports")] EgressPublishedPorts,
}

/// <summary>The spelled names of <see cref="NetworkPolicy"/>.</summary>
public static class NetworkPolicyNames
{
    /// <summary>Every accepted name, in order.</summary>
    public static IReadOnlyList<string> All { get; } = ["off", "egress", "egress+published-ports"];

    /// <summary>"off", "egress" or "egress+published-ports".</summary>
    public static string ToName(this NetworkPolicy policy) => policy switch
    {
        NetworkPolicy.Off => "off",
        NetworkPolicy.Egress => "egress",
        NetworkPolicy.EgressPublishedPorts => "egress+published-ports",
        _ => throw new ArgumentOutOfRangeException(nameof(policy), policy, null),
    };

    /// <summary>Whether the guest gets a network device.</summary>
    public static bool HasEgress(this NetworkPolicy policy) => policy != NetworkPolicy.Off;

    /// <summary>Whether guest ports may be published on the host.</summary>
    public static bool AllowsPublishing(this NetworkPolicy policy) => policy == NetworkPolicy.EgressPublishedPorts;

    /// <summary>Parses a name; anything else is <c>network_policy_invalid</c>.</summary>
    /// <exception cref="PyroInputException">The name is not one of <see cref="All"/>.</exception>
    public static NetworkPolicy Parse(string? name)
    {
        var trimmed = name?.Trim().ToLowerInvariant();
        return trimmed switch
        {
            "off" => NetworkPolicy.Off,
            "egress" => NetworkPolicy.Egress,
            "egress+published-ports" => NetworkPolicy.EgressPublishedPorts,
            _ => throw new PyroInputException("network_policy_invalid",
                $"unknown network policy '{GuestText(name)}': use off (no network), egress (outbound only) or egress+published-ports (outbound, and guest ports published on the host's 127.0.0.1)", nameof(WorkspaceCreateRequest.NetworkPolicy)),
        };
    }

    private static string GuestText(string? name) => name is null ? "" : name.Length > 40 ? name[..40] + "..." : name;
}

/// <summary>The network a running guest was given at boot.</summary>
public sealed record GuestNetwork
{
    /// <summary>The guest's interface, <c>eth0</c>.</summary>
    public string Interface { get; init; } = "eth0";
    /// <summary>The guest's IPv4 address. passt gives the guest the host's own address: the host is never reachable at it.</summary>
    public required string Address { get; init; }
    /// <summary>Prefix length of <see cref="Address"/>.</summary>
    public int PrefixLength { get; init; }
    /// <summary>The default gateway (the host's gateway; passt does not map it to the host).</summary>
    public string? Gateway { get; init; }
    /// <summary>Name servers the guest uses.</summary>
    public IReadOnlyList<string> DnsServers { get; init; } = [];

    /// <summary><c>10.0.0.5/24 via 10.0.0.1, dns 10.0.0.1</c>.</summary>
    public override string ToString()
        => $"{Address}/{PrefixLength}{(Gateway is null ? "" : $" via {Gateway}")}, dns {(DnsServers.Count == 0 ? "none" : string.Join(' ', DnsServers))}";
}
