using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace PyroMcp.TestKit;

/// <summary>
/// A minimal HTTP/1.0-1.1 file server on a socket the lab opened in a namespace: GET and HEAD of
/// the paths it was given (query strings ignored, so git's smart probe falls back to the dumb
/// protocol), one request per connection, and a count of requests per path so a test can prove a
/// download really reached it.
/// </summary>
internal sealed class HttpServer : IAsyncDisposable
{
    private const int MaxHeader = 16 * 1024;
    private const int MaxPaths = 10_000;
    private readonly Socket _listener;
    private readonly ConcurrentDictionary<string, byte[]> _files = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _hits = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    internal HttpServer(Socket listener)
    {
        _listener = listener;
        var end = (IPEndPoint)listener.LocalEndPoint!;
        Address = end.Address.ToString();
        Port = end.Port;
        _loop = Task.Run(AcceptLoopAsync);
    }

    internal string Address { get; }

    internal int Port { get; }

    /// <summary>The URL of <paramref name="path"/> (starting with /) on this server.</summary>
    internal string Url(string path) => $"http://{Address}:{Port}{path}";

    /// <summary>Serves <paramref name="body"/> at <paramref name="path"/> (starting with /).</summary>
    internal void Serve(string path, byte[] body) => _files[path] = body;

    /// <summary>Serves every file under <paramref name="directory"/> below <paramref name="prefix"/> (a bare git repository after <c>git update-server-info</c>, for example).</summary>
    internal void ServeDirectory(string prefix, string directory)
    {
        foreach (var file in Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(directory, file).Replace('\\', '/');
            Serve(prefix.TrimEnd('/') + "/" + relative, File.ReadAllBytes(file));
        }
    }

    /// <summary>How many requests asked for <paramref name="path"/> (without its query string), whether or not it exists.</summary>
    internal int Requests(string path) => _hits.TryGetValue(path, out var n) ? n : 0;

    /// <summary>Every request so far.</summary>
    internal int TotalRequests => _hits.Values.Sum();

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            _ = Task.Run(() => ServeOneAsync(client));
        }
    }

    private async Task ServeOneAsync(Socket client)
    {
        using var _ = client;
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        limit.CancelAfter(TimeSpan.FromSeconds(60));
        try
        {
            var header = await ReadHeaderAsync(client, limit.Token);
            if (header is null)
            {
                return;
            }

            var requestLine = header[..header.IndexOf("\r\n", StringComparison.Ordinal)].Split(' ');
            if (requestLine.Length < 2)
            {
                await SendAsync(client, 400, "Bad Request", [], true, limit.Token);
                return;
            }

            var method = requestLine[0];
            var target = requestLine[1];
            var path = target.Split('?')[0];

            // A guest can ask for endless distinct paths: past the cap they share one counter.
            _hits.AddOrUpdate(_hits.Count < MaxPaths || _hits.ContainsKey(path) ? path : "*", 1, (_, n) => n + 1);
            if (method is not ("GET" or "HEAD"))
            {
                await SendAsync(client, 405, "Method Not Allowed", [], true, limit.Token);
            }
            else if (_files.TryGetValue(path, out var body))
            {
                await SendAsync(client, 200, "OK", body, method == "GET", limit.Token);
            }
            else
            {
                await SendAsync(client, 404, "Not Found", Encoding.ASCII.GetBytes("not found\n"), method == "GET", limit.Token);
            }

            client.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private static async Task<string?> ReadHeaderAsync(Socket client, CancellationToken cancellationToken)
    {
        var buffer = new byte[MaxHeader];
        var filled = 0;
        while (filled < buffer.Length)
        {
            var n = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, cancellationToken);
            if (n == 0)
            {
                return null;
            }

            filled += n;
            var text = Encoding.Latin1.GetString(buffer, 0, filled);
            if (text.Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                return text;
            }
        }

        return null;
    }

    private static async Task SendAsync(Socket client, int status, string reason, byte[] body, bool withBody, CancellationToken cancellationToken)
    {
        var head = Encoding.ASCII.GetBytes($"HTTP/1.0 {status} {reason}\r\nContent-Type: application/octet-stream\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n");
        await client.SendAsync(head, SocketFlags.None, cancellationToken);
        if (withBody && body.Length > 0)
        {
            await client.SendAsync(body, SocketFlags.None, cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _loop;
        _stop.Dispose();
    }
}

/// <summary>
/// A DNS server on UDP port 53 of a lab namespace: an A query for a name under its suffix is
/// answered with one address, any other type under the suffix with no data, every other name with
/// NXDOMAIN. It counts the queries, so a test can tell "resolved here" from "resolved elsewhere".
/// </summary>
internal sealed class DnsServer : IAsyncDisposable
{
    private const ushort TypeA = 1;
    private const int MaxLog = 100_000;
    private readonly Socket _socket;
    private readonly string _suffix;
    private readonly IPAddress _answer;
    private readonly ConcurrentQueue<string> _log = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    internal DnsServer(Socket socket, string suffix, IPAddress answer)
    {
        _socket = socket;
        _suffix = suffix.Trim('.').ToLowerInvariant();
        _answer = answer;
        _loop = Task.Run(ServeAsync);
    }

    /// <summary>Every question so far (the first 100,000), as "TYPE name" (TYPE is the number, 1 = A, 28 = AAAA).</summary>
    internal IReadOnlyList<string> Queries => [.. _log];

    /// <summary>How many questions of any type named <paramref name="name"/>.</summary>
    internal int QueriesFor(string name) => _log.Count(q => q.EndsWith(" " + name.ToLowerInvariant(), StringComparison.Ordinal));

    private async Task ServeAsync()
    {
        var buffer = new byte[1500];
        EndPoint any = new IPEndPoint(IPAddress.Any, 0);
        while (!_stop.IsCancellationRequested)
        {
            SocketReceiveFromResult received;
            try
            {
                received = await _socket.ReceiveFromAsync(buffer, SocketFlags.None, any, _stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }

            var reply = Answer(buffer.AsSpan(0, received.ReceivedBytes));
            if (reply is not null)
            {
                try
                {
                    await _socket.SendToAsync(reply, SocketFlags.None, received.RemoteEndPoint, _stop.Token);
                }
                catch (SocketException)
                {
                }
            }
        }
    }

    private byte[]? Answer(ReadOnlySpan<byte> query)
    {
        // Header (12 bytes), then exactly one question: labels, type, class. Anything else is dropped.
        if (query.Length < 17 || (query[2] & 0x80) != 0 || BinaryPrimitives.ReadUInt16BigEndian(query[4..]) != 1)
        {
            return null;
        }

        var labels = new List<string>();
        var at = 12;
        while (true)
        {
            if (at >= query.Length)
            {
                return null;
            }

            var length = query[at];
            if (length == 0)
            {
                at++;
                break;
            }

            if (length > 63 || at + 1 + length > query.Length)
            {
                return null;
            }

            labels.Add(Encoding.ASCII.GetString(query.Slice(at + 1, length)).ToLowerInvariant());
            at += 1 + length;
        }

        if (at + 4 > query.Length)
        {
            return null;
        }

        var type = BinaryPrimitives.ReadUInt16BigEndian(query[at..]);
        var questionEnd = at + 4;
        var name = string.Join('.', labels);
        if (_log.Count < MaxLog)
        {
            _log.Enqueue($"{type} {name}");
        }

        var ours = name == _suffix || name.EndsWith("." + _suffix, StringComparison.Ordinal);
        var answer = ours && type == TypeA;
        var reply = new List<byte>();
        reply.AddRange(query[..2].ToArray());
        reply.Add((byte)(0x80 | 0x04 | (query[2] & 0x79)));
        reply.Add((byte)(0x80 | (ours ? 0 : 3)));
        reply.AddRange([0, 1, 0, (byte)(answer ? 1 : 0), 0, 0, 0, 0]);
        reply.AddRange(query[12..questionEnd].ToArray());
        if (answer)
        {
            reply.AddRange([0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            reply.AddRange(_answer.GetAddressBytes());
        }

        return [.. reply];
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _socket.Dispose();
        await _loop;
        _stop.Dispose();
    }
}

/// <summary>
/// A TCP listener on the side of the lab where pyro runs (the client namespace: "the host" to a
/// guest). It records every connection it ever accepts, answers with one line and closes, so a
/// test can prove that no guest reached it while a probe from the host itself did.
/// </summary>
internal sealed class LocalServer : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly ConcurrentQueue<string> _peers = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _accepted;

    internal LocalServer(Socket listener)
    {
        _listener = listener;
        EndPoint = (IPEndPoint)listener.LocalEndPoint!;
        _loop = Task.Run(AcceptLoopAsync);
    }

    internal IPEndPoint EndPoint { get; }

    internal int Port => EndPoint.Port;

    /// <summary>How many connections were ever accepted.</summary>
    internal int Accepted => Volatile.Read(ref _accepted);

    /// <summary>The remote end of every accepted connection (the first thousand).</summary>
    internal IReadOnlyList<string> Peers => [.. _peers];

    private async Task AcceptLoopAsync()
    {
        var banner = Encoding.ASCII.GetBytes("pyro-lab-local\n");
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            using (client)
            {
                Interlocked.Increment(ref _accepted);
                if (_peers.Count < 1000)
                {
                    _peers.Enqueue(client.RemoteEndPoint?.ToString() ?? "?");
                }

                try
                {
                    await client.SendAsync(banner, SocketFlags.None, _stop.Token);
                    client.Shutdown(SocketShutdown.Both);
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException)
                {
                }
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _loop;
        _stop.Dispose();
    }
}
