using System.Globalization;

namespace PyroMcp.Networking;

/// <summary>
/// Reads what a user asks to publish: <c>GUEST_PORT</c> or <c>HOST_PORT:GUEST_PORT</c>, decimal
/// digits only. Host ports below 1024 are refused even when pyro runs as root: a workspace must
/// not be able to stand in for a system service.
/// </summary>
internal static class PortPublication
{
    /// <summary>The lowest host port pyro publishes on.</summary>
    internal const int MinHostPort = 1024;

    private const string Allowed = "give GUEST_PORT or HOST_PORT:GUEST_PORT in decimal, with GUEST_PORT from 1 to 65535 and HOST_PORT from 1024 to 65535 (pyro does not publish on privileged host ports); leave HOST_PORT out to get a free one";

    /// <summary>Parses a publication; throws <see cref="PyroInputException"/> <c>port_invalid</c> with what is allowed.</summary>
    internal static (int? HostPort, int GuestPort) Parse(string? spec)
    {
        var text = (spec ?? "").Trim();
        var parts = text.Split(':');
        if (parts.Length > 2 || text.Length == 0)
        {
            throw Invalid(spec);
        }

        var guest = Number(parts[^1]) ?? throw Invalid(spec);
        int? host = parts.Length == 2 ? Number(parts[0]) ?? throw Invalid(spec) : null;
        CheckGuestPort(guest);
        CheckHostPort(host);
        return (host, guest);
    }

    /// <summary>Throws <c>port_invalid</c> unless <paramref name="port"/> is 1 to 65535.</summary>
    internal static void CheckGuestPort(int port)
    {
        if (port is < 1 or > 65535)
        {
            throw new PyroInputException("port_invalid", $"guest port {port} is out of range: {Allowed}");
        }
    }

    /// <summary>Throws <c>port_invalid</c> unless <paramref name="port"/> is null (any free port) or 1024 to 65535.</summary>
    internal static void CheckHostPort(int? port)
    {
        if (port is < MinHostPort or > 65535)
        {
            throw new PyroInputException("port_invalid", $"host port {port} is not allowed: {Allowed}");
        }
    }

    private static int? Number(string text)
        => text.Length is >= 1 and <= 5 && text.All(char.IsAsciiDigit)
            ? int.Parse(text, NumberStyles.None, CultureInfo.InvariantCulture)
            : null;

    private static PyroInputException Invalid(string? spec)
    {
        // Echoed to a terminal: no control characters, bounded.
        var shown = new string((spec ?? "").Where(c => !char.IsControl(c)).Take(40).ToArray());
        return new PyroInputException("port_invalid", $"'{shown}' is not a port to publish: {Allowed}");
    }
}
