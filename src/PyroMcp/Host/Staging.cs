using System.Globalization;

namespace PyroMcp.Host;

/// <summary>Staging directories of cache builds, named <c>...-PID</c> after the process that builds them.</summary>
internal static class Staging
{
    /// <summary>Whether the builder named at the end of <paramref name="name"/> still runs: its lock protects the directory then.</summary>
    internal static bool OwnerAlive(string name)
        => int.TryParse(name[(name.LastIndexOf('-') + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && Directory.Exists($"/proc/{pid}");
}
