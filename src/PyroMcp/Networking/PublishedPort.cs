using System.Globalization;

namespace PyroMcp;

/// <summary>
/// A guest TCP port reachable from the host: connections to <see cref="HostAddress"/>:<see cref="HostPort"/>
/// are carried to 127.0.0.1:<see cref="GuestPort"/> inside the guest. Shown as
/// <c>127.0.0.1:18080->8080/tcp</c>.
/// </summary>
public sealed record PublishedPort
{
    /// <summary>The host address the port listens on: always the IPv4 loopback, <c>127.0.0.1</c>.</summary>
    public string HostAddress { get; init; } = "127.0.0.1";

    /// <summary>The host port, 1024 to 65535.</summary>
    public int HostPort { get; init; }

    /// <summary>The port on 127.0.0.1 inside the guest, 1 to 65535.</summary>
    public int GuestPort { get; init; }

    /// <summary>The service this port follows (released when it stops, exits or fails), or null for a port published on its own.</summary>
    public string? Service { get; init; }

    /// <summary>The transport: always <c>tcp</c>.</summary>
    public string Protocol { get; init; } = "tcp";

    /// <summary>The publication as <c>127.0.0.1:18080->8080/tcp</c>.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{HostAddress}:{HostPort}->{GuestPort}/{Protocol}");
}
