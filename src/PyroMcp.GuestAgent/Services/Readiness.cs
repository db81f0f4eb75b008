using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent.Services;

/// <summary>The readiness probes of <see cref="ReadinessProbe"/>, run in the guest.</summary>
internal static class Readiness
{
    private const int MaxTargetChars = 4096;
    private static readonly TimeSpan NetworkProbeTimeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan CommandProbeTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Checks a probe before anything starts; <c>readiness_invalid</c> says what is wrong.</summary>
    internal static void Validate(ReadinessProbe probe)
    {
        if (string.IsNullOrWhiteSpace(probe.Target))
        {
            throw Invalid("the readiness target is empty");
        }

        if (probe.Target.Contains('\0') || probe.Target.Length > MaxTargetChars)
        {
            throw Invalid($"the readiness target must be at most {MaxTargetChars} characters without NUL");
        }

        switch (probe.Type)
        {
            case "file":
                break;
            case "tcp":
                if (ParseHostPort(probe.Target) is null)
                {
                    throw Invalid($"tcp readiness needs HOST:PORT (e.g. 127.0.0.1:8080), not '{probe.Target}'");
                }

                break;
            case "http":
                if (!Uri.TryCreate(probe.Target, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp || uri.Host.Length == 0)
                {
                    throw Invalid($"http readiness needs an http:// URL (e.g. http://127.0.0.1:8080/health), not '{probe.Target}'");
                }

                break;
            case "command":
                if (System.Text.Encoding.UTF8.GetByteCount(probe.Target) > ServiceRequest.MaxCommandBytes)
                {
                    throw Invalid("the readiness command is too long");
                }

                break;
            default:
                throw Invalid($"unknown readiness type '{probe.Type}': use file, tcp, http or command");
        }
    }

    /// <summary>Runs one probe; never throws for a failing service, only reports.</summary>
    internal static async Task<(bool Passed, string Text)> ProbeAsync(
        ReadinessProbe probe, string cwd, IReadOnlyDictionary<string, string> env, string busybox, TimeSpan remaining, CancellationToken cancellationToken)
    {
        try
        {
            return probe.Type switch
            {
                "file" => ProbeFile(Path.Combine(cwd, probe.Target)),
                "tcp" => await ProbeTcpAsync(probe.Target, cancellationToken).ConfigureAwait(false),
                "http" => await ProbeHttpAsync(probe.Target, cancellationToken).ConfigureAwait(false),
                _ => await ProbeCommandAsync(probe.Target, cwd, env, busybox, remaining < CommandProbeTimeout ? remaining : CommandProbeTimeout, cancellationToken).ConfigureAwait(false),
            };
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return (false, "timed out");
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return (false, ex.Message);
        }
    }

    private static (bool, string) ProbeFile(string path)
        => File.Exists(path) || Directory.Exists(path) ? (true, "found: " + path) : (false, "not found: " + path);

    private static async Task<(bool, string)> ProbeTcpAsync(string target, CancellationToken cancellationToken)
    {
        var (host, port) = ParseHostPort(target)!.Value;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(NetworkProbeTimeout);
        using var client = new TcpClient();
        try
        {
            await client.ConnectAsync(host, port, timeout.Token).ConfigureAwait(false);
            return (true, "connected to " + target);
        }
        catch (SocketException ex)
        {
            return (false, ex.SocketErrorCode switch
            {
                SocketError.ConnectionRefused => "connection refused",
                SocketError.HostNotFound or SocketError.NoData => "host not found: " + host,
                _ => ex.Message,
            });
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return (false, "no answer within 2 s");
        }
    }

    /// <summary>
    /// A raw HTTP/1.0 GET: the status line is all a probe needs, and the agent stays free of
    /// the HTTP stack (it is trimmed, and starts at every boot). A redirect is an answer, not followed.
    /// </summary>
    private static async Task<(bool, string)> ProbeHttpAsync(string target, CancellationToken cancellationToken)
    {
        var uri = new Uri(target);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(NetworkProbeTimeout);
        using var client = new TcpClient();
        try
        {
            await client.ConnectAsync(uri.DnsSafeHost, uri.Port, timeout.Token).ConfigureAwait(false);
            var stream = client.GetStream();
            var request = $"GET {uri.PathAndQuery} HTTP/1.0\r\nHost: {uri.Authority}\r\nUser-Agent: pyro-agent\r\nConnection: close\r\n\r\n";
            await stream.WriteAsync(Encoding.ASCII.GetBytes(request), timeout.Token).ConfigureAwait(false);
            var buffer = new byte[512];
            var length = 0;
            while (length < buffer.Length && Array.IndexOf(buffer, (byte)'\n', 0, length) < 0)
            {
                var read = await stream.ReadAsync(buffer.AsMemory(length), timeout.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                length += read;
            }

            var line = Encoding.ASCII.GetString(buffer, 0, length).Split('\n')[0].TrimEnd('\r');
            var parts = line.Split(' ', 3);
            if (parts.Length >= 2 && parts[0].StartsWith("HTTP/", StringComparison.Ordinal)
                && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var code) && code is >= 100 and < 600)
            {
                return (code is >= 200 and < 400, "HTTP " + code.ToString(CultureInfo.InvariantCulture));
            }

            return (false, length == 0 ? "closed without an answer" : "not an HTTP answer: " + ServiceManager.Clip(line, 80));
        }
        catch (SocketException ex)
        {
            return (false, ex.SocketErrorCode == SocketError.ConnectionRefused ? "connection refused" : ex.Message);
        }
        catch (IOException ex)
        {
            return (false, ex.Message);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return (false, "no answer within 2 s");
        }
    }

    private static async Task<(bool, string)> ProbeCommandAsync(
        string command, string cwd, IReadOnlyDictionary<string, string> env, string busybox, TimeSpan limit, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(busybox)
        {
            WorkingDirectory = cwd,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // Its own group, so a probe that hangs is ended with whatever it started.
        foreach (var arg in new[] { "setsid", "/bin/sh", "-c", command })
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment.Clear();
        foreach (var (key, value) in env)
        {
            start.Environment[key] = value;
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start the probe");
        process.StandardInput.Close();
        // Drain so a chatty probe never blocks on a full pipe; the text is not kept.
        var drain = Task.WhenAll(process.StandardOutput.BaseStream.CopyToAsync(Stream.Null, cancellationToken), process.StandardError.BaseStream.CopyToAsync(Stream.Null, cancellationToken));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(limit);
        try
        {
            await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            ProcessTree.SignalSession(process.Id, ProcessTree.SIGKILL);
            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            _ = drain.ContinueWith(static t => t.Exception, TaskScheduler.Default);
            cancellationToken.ThrowIfCancellationRequested();
            return (false, $"timed out after {limit.TotalMilliseconds:0} ms");
        }

        ProcessTree.SignalSession(process.Id, ProcessTree.SIGKILL);
        _ = drain.ContinueWith(static t => t.Exception, TaskScheduler.Default);
        return (process.ExitCode == 0, "exit " + process.ExitCode.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>HOST:PORT, with [v6] brackets allowed; null when it does not parse.</summary>
    internal static (string Host, int Port)? ParseHostPort(string target)
    {
        var colon = target.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(target.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            return null;
        }

        var host = target[..colon];
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            host = host[1..^1];
            return IPAddress.TryParse(host, out var v6) && v6.AddressFamily == AddressFamily.InterNetworkV6 ? (host, port) : null;
        }

        if (host.Contains(':', StringComparison.Ordinal) || host.Any(c => char.IsWhiteSpace(c) || char.IsControl(c) || c == '/'))
        {
            return null;
        }

        return (host, port);
    }

    private static AgentFailure Invalid(string message) => new("readiness_invalid", message);
}
