using PyroMcp.Host;

namespace PyroMcp.Networking;

/// <summary>Doctor's networking check: passt is found, and it really starts and serves its socket here.</summary>
internal static class NetworkCheck
{
    internal static async Task<NetworkingStatus> RunAsync(PyroOptions options, CancellationToken cancellationToken)
    {
        if (HostTools.Passt.Find() is not { } path)
        {
            return new NetworkingStatus(null, null, false, $"passt is not installed; guests can only run without a network. Install it with: {HostTools.InstallCommand([HostTools.Passt.Package])}");
        }

        var version = await PackageVersionAsync(cancellationToken).ConfigureAwait(false);
        PrivateDirectory.Ensure(options.RunDir);
        var scratch = PrivateDirectory.Ensure(Path.Combine(options.RunDir, $"doctor-net-{Environment.ProcessId}-{Guid.NewGuid():N}"));
        try
        {
            var passt = await PasstProcess.StartAsync(scratch, cancellationToken).ConfigureAwait(false);
            await passt.DisposeAsync().ConfigureAwait(false);
            return new NetworkingStatus(path, version, true, "passt starts and serves its socket; guests with a network policy get egress, never the host itself (--no-map-gw)");
        }
        catch (PyroException ex)
        {
            return new NetworkingStatus(path, version, false, ex.Message);
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static async Task<string?> PackageVersionAsync(CancellationToken cancellationToken)
    {
        try
        {
            var query = await ProcessRunner.RunAsync("dpkg-query", ["-W", "-f=${Version}", HostTools.Passt.Package], cancellationToken: cancellationToken).ConfigureAwait(false);
            return query.ExitCode == 0 && query.Stdout.Trim() is { Length: > 0 and < 100 } version ? version : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
