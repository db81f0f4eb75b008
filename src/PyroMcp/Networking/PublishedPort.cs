namespace PyroMcp;

/// <summary>A guest TCP port reachable on the host's loopback while the workspace runs.</summary>
public sealed record PublishedPort
{
    /// <summary>Always <c>127.0.0.1</c>: published ports are never on another host address.</summary>
    public string HostAddress { get; init; } = "127.0.0.1";
    /// <summary>The host port (1024 to 65535).</summary>
    public int HostPort { get; init; }
    /// <summary>The port on the guest's 127.0.0.1 that connections reach.</summary>
    public int GuestPort { get; init; }
    /// <summary>Always <c>tcp</c>.</summary>
    public string Protocol { get; init; } = "tcp";

    /// <summary><c>127.0.0.1:18080->8080/tcp</c>.</summary>
    public override string ToString() => $"{HostAddress}:{HostPort}->{GuestPort}/{Protocol}";
}
