using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;

/// <summary>
/// Environments as OCI artifacts, beside software no one here wrote. The installed environment is
/// published to Debian's <c>docker-registry</c> on 127.0.0.1 (plain HTTP, as for any loopback
/// registry); then, interleaved, the first <c>pyro run ENV -- true</c> with an empty environment
/// cache pulls it (its pull timed up to the <c>[pull] phase=ready</c> line, before the template
/// build and the command) and <c>skopeo copy</c> copies the same reference into an OCI layout.
/// The bench never builds an environment: a build reaches the Debian mirror, and benches speak only
/// to loopback, so the local build's side is the time the build recorded in the installed
/// environment's manifest (<c>build_ms</c>) plus what the first run does after its pull.
/// </summary>
internal static class OciPull
{
    internal static async Task MeasureAsync(string cli, string environmentName, string installedDir, int rounds, Action<string> say, IDictionary<string, object> figures)
    {
        foreach (var tool in new[] { "/usr/bin/docker-registry", "/usr/bin/skopeo" })
        {
            if (!File.Exists(tool))
            {
                throw new InvalidOperationException($"{tool} is missing: apt-get install docker-registry skopeo (./test.sh does)");
            }
        }

        var scratch = Directory.CreateTempSubdirectory("pyro-bench-oci-").FullName;
        Process? registry = null;
        try
        {
            var port = FreePort();
            registry = await StartRegistryAsync(scratch, port);
            var catalog = new Dictionary<string, string> { ["PYRO_ENVIRONMENT_REGISTRY"] = $"127.0.0.1:{port}/pyro" };

            // The reference a pull would use, from the catalog itself (the documented round trip).
            var inspect = await RunAsync(cli, ["env", "inspect", environmentName, "--json"], catalog);
            var reference = JsonDocument.Parse(inspect.Stdout).RootElement.GetProperty("oci_source").GetString()
                ?? throw new InvalidOperationException("env inspect reported no oci_source with PYRO_ENVIRONMENT_REGISTRY set");
            var publish = await RunAsync(cli, ["env", "publish", environmentName, reference], catalog);
            say($"oci publish of {environmentName} to {reference}: {publish.Milliseconds:0} ms (compress and upload)");
            figures["oci_publish_ms"] = Math.Round(publish.Milliseconds);

            var pulls = new List<double>();
            var downloads = new List<double>();
            var firstRuns = new List<double>();
            var copies = new List<double>();
            for (var i = 0; i < rounds; i++)
            {
                var cache = Directory.CreateTempSubdirectory("pyro-bench-oci-cache-").FullName;
                var layout = Path.Combine(scratch, "layout-" + i.ToString(CultureInfo.InvariantCulture));
                try
                {
                    var env = new Dictionary<string, string>(catalog) { ["PYRO_ENVIRONMENT_CACHE_DIR"] = cache };
                    var run = await RunAsync(cli, ["run", environmentName, "--", "true"], env);
                    var downloadAt = run.LineAt("[pull] phase=download") ?? throw new InvalidOperationException("the first run did not pull:\n" + run.Stderr);
                    if (!run.Stderr.Contains("source=oci:" + reference, StringComparison.Ordinal))
                    {
                        throw new InvalidOperationException($"the first run did not pull from {reference}:\n{run.Stderr}");
                    }

                    var ready = run.LineAt("[pull] phase=ready") ?? throw new InvalidOperationException("the first run's pull never said ready:\n" + run.Stderr);
                    var decompress = run.LineAt("[pull] phase=decompress") ?? ready;
                    pulls.Add(ready);
                    downloads.Add(decompress - downloadAt);
                    firstRuns.Add(run.Milliseconds);

                    var copy = await RunAsync("/usr/bin/skopeo", ["copy", "--quiet", "--src-tls-verify=false", "docker://" + reference, $"oci:{layout}:latest"], []);
                    copies.Add(copy.Milliseconds);
                }
                finally
                {
                    Directory.Delete(cache, recursive: true);
                    if (Directory.Exists(layout))
                    {
                        Directory.Delete(layout, recursive: true);
                    }
                }
            }

            var pull = Median(pulls);
            var skopeo = Median(copies);
            var firstRun = Median(firstRuns);
            say($"pyro env pull over OCI (first run's pull, to ready): median {pull:0} ms, of which download {Median(downloads):0} ms  [{string.Join(", ", pulls.Select(p => p.ToString("0", CultureInfo.InvariantCulture)))}]");
            say($"skopeo copy of the same reference to an OCI layout: median {skopeo:0} ms");
            say($"ratio oci_pull / skopeo_copy = {pull / skopeo:0.00} (goal <= 1.0; the pull also decompresses the whole disk and checks its sha256)");
            say($"ratio oci_download / skopeo_copy = {Median(downloads) / skopeo:0.00} (the transfer alone)");
            figures["oci_pull_ms"] = Math.Round(pull);
            figures["oci_download_ms"] = Math.Round(Median(downloads));
            figures["skopeo_copy_ms"] = Math.Round(skopeo);
            figures["oci_pull_over_skopeo_copy"] = Math.Round(pull / skopeo, 2);
            // The transfer alone (what skopeo copy does: fetch and verify the blobs), before the disk is made.
            figures["oci_download_over_skopeo_copy"] = Math.Round(Median(downloads) / skopeo, 2);
            figures["first_run_oci_ms"] = Math.Round(firstRun);

            var manifest = Path.Combine(installedDir, "environment.json");
            var recorded = JsonDocument.Parse(File.ReadAllText(manifest)).RootElement;
            if (recorded.TryGetProperty("build_ms", out var buildMs) && buildMs.ValueKind == JsonValueKind.Number)
            {
                // Same template build and command after either; only the way to an installed disk differs.
                var local = buildMs.GetDouble() + (firstRun - pull);
                say($"first run with a pull: median {firstRun:0} ms; with the local build ({buildMs.GetDouble():0} ms, recorded by this cache's build): {local:0} ms");
                say($"ratio first_run_oci / first_run_local_build = {firstRun / local:0.00}");
                figures["local_build_ms"] = Math.Round(buildMs.GetDouble());
                figures["first_run_local_build_ms"] = Math.Round(local);
                figures["first_run_oci_over_local_build"] = Math.Round(firstRun / local, 2);
            }
            else
            {
                say($"first run with a pull: median {firstRun:0} ms; first_run_oci_over_local_build left out: {manifest} records no build_ms (built by a pyro before 0.2.0, or pulled)");
            }
        }
        finally
        {
            if (registry is not null)
            {
                registry.Kill(entireProcessTree: true);
                await registry.WaitForExitAsync();
                registry.Dispose();
            }

            Directory.Delete(scratch, recursive: true);
        }
    }

    private static async Task<Process> StartRegistryAsync(string dir, int port)
    {
        var config = Path.Combine(dir, "registry.yml");
        await File.WriteAllTextAsync(config, $"""
            version: 0.1
            log:
              level: error
              accesslog:
                disabled: true
            storage:
              filesystem:
                rootdirectory: {Path.Combine(dir, "storage")}
            http:
              addr: 127.0.0.1:{port}
            """);
        var start = new ProcessStartInfo("/usr/bin/docker-registry") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("serve");
        start.ArgumentList.Add(config);
        var registry = System.Diagnostics.Process.Start(start)!;
        registry.OutputDataReceived += (_, _) => { };
        registry.ErrorDataReceived += (_, _) => { };
        registry.BeginOutputReadLine();
        registry.BeginErrorReadLine();
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false });
        for (var clock = Stopwatch.StartNew(); clock.Elapsed < TimeSpan.FromSeconds(60) && !registry.HasExited; await Task.Delay(50))
        {
            try
            {
                using var response = await http.GetAsync($"http://127.0.0.1:{port}/v2/");
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return registry;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
        }

        registry.Kill(entireProcessTree: true);
        throw new InvalidOperationException($"docker-registry did not come up on 127.0.0.1:{port}");
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>One process to exit, with each stderr line's time since the start.</summary>
    private static async Task<Timed> RunAsync(string file, string[] arguments, Dictionary<string, string> env)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in arguments)
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in env)
        {
            start.Environment[key] = value;
        }

        var lines = new List<(double At, string Line)>();
        var clock = Stopwatch.StartNew();
        using var process = System.Diagnostics.Process.Start(start)!;
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (lines)
                {
                    lines.Add((clock.Elapsed.TotalMilliseconds, e.Data));
                }
            }
        };
        process.BeginErrorReadLine();
        var stdout = process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        var elapsed = clock.Elapsed.TotalMilliseconds;
        var timed = new Timed(elapsed, await stdout, lines);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} exited {process.ExitCode}: {timed.Stderr}");
        }

        return timed;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private sealed record Timed(double Milliseconds, string Stdout, List<(double At, string Line)> Lines)
    {
        internal string Stderr => string.Join('\n', Lines.Select(l => l.Line));

        /// <summary>When the first stderr line starting with <paramref name="prefix"/> arrived.</summary>
        internal double? LineAt(string prefix) => Lines.FirstOrDefault(l => l.Line.StartsWith(prefix, StringComparison.Ordinal)) is { Line: not null } hit ? hit.At : null;
    }
}
