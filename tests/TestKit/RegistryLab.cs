using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;

namespace PyroMcp.TestKit;

/// <summary>
/// A real registry (Debian's <c>docker-registry</c>, the CNCF distribution) on 127.0.0.1 with a
/// temp storage directory and either htpasswd (Basic) auth or token auth whose realm is a tiny
/// token server in this process (a self-signed certificate, ES256 JWTs with an <c>x5c</c> header).
/// Disposing stops it and removes its storage.
/// </summary>
internal sealed class RegistryLab : IAsyncDisposable
{
    internal const string User = "pyro-lab";
    internal const string Password = "lab-secret-7c1f";

    private readonly TempDir _dir;
    private readonly Process _registry;
    private readonly TokenServer? _tokens;

    private RegistryLab(TempDir dir, Process registry, int port, TokenServer? tokens)
    {
        _dir = dir;
        _registry = registry;
        Port = port;
        _tokens = tokens;
    }

    internal int Port { get; }

    /// <summary><c>127.0.0.1:PORT</c>.</summary>
    internal string Host => $"127.0.0.1:{Port}";

    /// <summary>Where the registry keeps blobs (tests may damage them).</summary>
    internal string StorageDir => Path.Combine(_dir.Path, "storage");

    /// <summary>Tokens the token server issued.</summary>
    internal int TokensIssued => _tokens?.Issued ?? 0;

    internal static Dictionary<string, string> Credentials => new() { ["OCI_REGISTRY_USERNAME"] = User, ["OCI_REGISTRY_PASSWORD"] = Password };

    /// <param name="tokenAuth">Token (Bearer) auth through the in-process token server, else htpasswd (Basic).</param>
    /// <param name="anonymous">No auth at all: anyone on loopback may push and pull.</param>
    internal static async Task<RegistryLab> StartAsync(bool tokenAuth = false, bool anonymous = false)
    {
        foreach (var tool in new[] { "docker-registry", "htpasswd" })
        {
            Assert.True(File.Exists("/usr/bin/" + tool), $"{tool} is missing: apt-get install docker-registry apache2-utils (test.sh does)");
        }

        var dir = new TempDir("pyro-registry-");
        var port = FreePort();
        TokenServer? tokens = null;
        string auth;
        if (anonymous)
        {
            auth = "";
        }
        else if (tokenAuth)
        {
            tokens = TokenServer.Start(dir.Path);
            auth = $"""
                auth:
                  token:
                    realm: http://127.0.0.1:{tokens.Port}/token
                    service: pyro-lab
                    issuer: pyro-lab-issuer
                    rootcertbundle: {tokens.CertificatePath}
                """;
        }
        else
        {
            var htpasswd = await Processes.RunAsync("htpasswd", ["-Bbn", User, Password]);
            Assert.True(htpasswd.ExitCode == 0, htpasswd.ToString());
            File.WriteAllText(Path.Combine(dir.Path, "htpasswd"), htpasswd.Stdout.Trim() + "\n");
            auth = $"""
                auth:
                  htpasswd:
                    realm: pyro-lab
                    path: {Path.Combine(dir.Path, "htpasswd")}
                """;
        }

        var config = Path.Combine(dir.Path, "config.yml");
        File.WriteAllText(config, $"""
            version: 0.1
            log:
              level: info
              accesslog:
                disabled: true
            storage:
              filesystem:
                rootdirectory: {Path.Combine(dir.Path, "storage")}
              delete:
                enabled: true
            http:
              addr: 127.0.0.1:{port}
            {auth}
            """);
        var registry = Processes.Start("/usr/bin/docker-registry", ["serve", config]);
        var stderr = new StringBuilder();
        registry.ErrorDataReceived += (_, e) => { lock (stderr) { stderr.AppendLine(e.Data); } };
        registry.OutputDataReceived += (_, e) => { };
        registry.BeginErrorReadLine();
        registry.BeginOutputReadLine();
        var lab = new RegistryLab(dir, registry, port, tokens);
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false });
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            try
            {
                using var response = await http.GetAsync($"http://127.0.0.1:{port}/v2/");
                if (response.StatusCode is HttpStatusCode.OK or HttpStatusCode.Unauthorized)
                {
                    return lab;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }

            if (registry.HasExited || DateTime.UtcNow > deadline)
            {
                await lab.DisposeAsync();
                lock (stderr)
                {
                    Assert.Fail($"docker-registry did not come up on 127.0.0.1:{port}: {stderr}");
                }
            }

            await Task.Delay(50);
        }
    }

    internal static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_registry.HasExited)
        {
            _registry.Kill(entireProcessTree: true);
            await _registry.WaitForExitAsync();
        }

        _registry.Dispose();
        _tokens?.Dispose();
        _dir.Dispose();
    }

    /// <summary>The realm of token auth: checks Basic credentials, issues ES256 JWTs the registry verifies against the certificate.</summary>
    private sealed class TokenServer : IDisposable
    {
        private readonly HttpListener _listener;
        private readonly ECDsa _key;
        private readonly X509Certificate2 _certificate;
        private int _issued;

        private TokenServer(HttpListener listener, ECDsa key, X509Certificate2 certificate, int port, string certificatePath)
        {
            _listener = listener;
            _key = key;
            _certificate = certificate;
            Port = port;
            CertificatePath = certificatePath;
        }

        internal int Port { get; }

        internal string CertificatePath { get; }

        internal int Issued => Volatile.Read(ref _issued);

        internal static TokenServer Start(string dir)
        {
            var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest("CN=pyro-lab-token", key, HashAlgorithmName.SHA256);
            var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
            var path = Path.Combine(dir, "token.crt");
            File.WriteAllText(path, certificate.ExportCertificatePem() + "\n");
            var port = FreePort();
            var listener = new HttpListener();
            listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            listener.Start();
            var server = new TokenServer(listener, key, certificate, port, path);
            _ = Task.Run(server.ServeAsync);
            return server;
        }

        private async Task ServeAsync()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await _listener.GetContextAsync();
                }
                catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException or InvalidOperationException)
                {
                    return;
                }

                try
                {
                    Answer(context);
                }
                catch (Exception ex) when (ex is HttpListenerException or IOException)
                {
                    // The client went away.
                }
            }
        }

        private void Answer(HttpListenerContext context)
        {
            var header = context.Request.Headers["Authorization"];
            var expected = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes(User + ":" + Password));
            if (header != expected)
            {
                context.Response.StatusCode = 401;
                context.Response.Close();
                return;
            }

            var scope = context.Request.QueryString["scope"] ?? "";
            var parts = scope.Split(':');
            var access = parts.Length == 3 && parts[0] == "repository"
                ? new[] { new { type = "repository", name = parts[1], actions = parts[2].Split(',') } }
                : [];
            var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            var head = JsonSerializer.Serialize(new { typ = "JWT", alg = "ES256", x5c = new[] { Convert.ToBase64String(_certificate.RawData) } });
            var claims = JsonSerializer.Serialize(new
            {
                iss = "pyro-lab-issuer",
                sub = User,
                aud = context.Request.QueryString["service"] ?? "",
                exp = now + 300,
                nbf = now - 10,
                iat = now,
                jti = Guid.NewGuid().ToString("N"),
                access,
            });
            var signingInput = B64(Encoding.UTF8.GetBytes(head)) + "." + B64(Encoding.UTF8.GetBytes(claims));
            var signature = _key.SignData(Encoding.ASCII.GetBytes(signingInput), HashAlgorithmName.SHA256);
            var token = signingInput + "." + B64(signature);
            Interlocked.Increment(ref _issued);
            var body = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { token, expires_in = 300 }));
            context.Response.ContentType = "application/json";
            context.Response.OutputStream.Write(body);
            context.Response.Close();
        }

        private static string B64(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

        public void Dispose()
        {
            _listener.Stop();
            _listener.Close();
            _certificate.Dispose();
            _key.Dispose();
        }
    }
}

/// <summary>
/// A loopback TCP proxy in front of a server that can misbehave once: cut a connection after N
/// bytes in one direction, or flip one byte of a large response. Counts the bytes it forwards.
/// </summary>
internal sealed class FaultProxy : IDisposable
{
    private readonly TcpListener _listener;
    private readonly int _upstream;
    private readonly CancellationTokenSource _stop = new();
    private long _toServer;
    private long _toClient;
    private int _cuts;
    private int _flips;

    internal FaultProxy(int upstreamPort)
    {
        _upstream = upstreamPort;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _ = Task.Run(AcceptAsync);
    }

    internal int Port { get; }

    internal string Host => $"127.0.0.1:{Port}";

    /// <summary>Once: drop the connection whose client-to-server bytes pass this (an upload mid-PATCH).</summary>
    internal long? CutUploadAfter { get; set; }

    /// <summary>Once: drop the connection whose server-to-client bytes pass this (a download mid-GET).</summary>
    internal long? CutDownloadAfter { get; set; }

    /// <summary>Every connection: flip the byte at this server-to-client offset (inside a large body).</summary>
    internal long? FlipDownloadAt { get; set; }

    internal long BytesToServer => Interlocked.Read(ref _toServer);

    internal long BytesToClient => Interlocked.Read(ref _toClient);

    internal int Cuts => Volatile.Read(ref _cuts);

    internal int Flips => Volatile.Read(ref _flips);

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        using (var server = new TcpClient())
        {
            try
            {
                await server.ConnectAsync(IPAddress.Loopback, _upstream, _stop.Token);
                using var cut = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                var up = PumpAsync(client.GetStream(), server.GetStream(), toServer: true, cut);
                var down = PumpAsync(server.GetStream(), client.GetStream(), toServer: false, cut);
                await Task.WhenAny(up, down);
                await cut.CancelAsync();
                await Task.WhenAll(up.ContinueWith(_ => { }), down.ContinueWith(_ => { }));
            }
            catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
                // A connection that ends is fine.
            }
        }
    }

    private async Task PumpAsync(NetworkStream from, NetworkStream to, bool toServer, CancellationTokenSource cut)
    {
        var buffer = new byte[64 * 1024];
        long count = 0;
        while (true)
        {
            var n = await from.ReadAsync(buffer, cut.Token);
            if (n == 0)
            {
                to.Socket.Shutdown(SocketShutdown.Send);
                return;
            }

            var limit = toServer ? CutUploadAfter : CutDownloadAfter;
            if (limit is { } l && count + n > l)
            {
                if (toServer) { CutUploadAfter = null; } else { CutDownloadAfter = null; }
                var keep = (int)Math.Max(0, l - count);
                await to.WriteAsync(buffer.AsMemory(0, keep), cut.Token);
                Interlocked.Add(ref toServer ? ref _toServer : ref _toClient, keep);
                Interlocked.Increment(ref _cuts);
                if (toServer)
                {
                    // The server sees a reset mid-request.
                    to.Socket.LingerState = new LingerOption(true, 0);
                }

                // The client gets what was forwarded, then the end: a body cut short.
                to.Socket.Shutdown(SocketShutdown.Send);
                from.Socket.Close();
                to.Socket.Close();
                return;
            }

            if (!toServer && FlipDownloadAt is { } f && count <= f && f < count + n)
            {
                buffer[f - count] ^= 0x01;
                Interlocked.Increment(ref _flips);
            }

            count += n;
            Interlocked.Add(ref toServer ? ref _toServer : ref _toClient, n);
            await to.WriteAsync(buffer.AsMemory(0, n), cut.Token);
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _stop.Dispose();
    }
}
