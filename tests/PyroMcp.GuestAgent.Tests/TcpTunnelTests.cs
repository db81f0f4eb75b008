using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent.Tests;

/// <summary>tcp.connect through a real <see cref="AgentServer"/>, to real TCP servers on 127.0.0.1 of this process.</summary>
public sealed class TcpTunnelTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);
    private readonly DuplexPipe _pipe = new();
    private readonly string _root = Directory.CreateTempSubdirectory("pyro-tcp-test-").FullName;
    private readonly ConcurrentDictionary<uint, Channel<Frame>> _streams = new();
    private AgentServer _server = null!;
    private Task _serving = Task.CompletedTask;
    private FrameConnection _host = null!;
    private uint _next;

    public Task InitializeAsync()
    {
        _server = new AgentServer(_pipe.Guest, new AgentOptions("test", "/bin/false", _root));
        _serving = _server.RunAsync();
        _host = new FrameConnection(_pipe.Host, (frame, _) =>
        {
            if (_streams.TryGetValue(frame.StreamId, out var stream))
            {
                stream.Writer.TryWrite(frame);
            }

            return ValueTask.CompletedTask;
        });
        _host.Start();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _serving.WaitAsync(Deadline);
        await _server.DisposeAsync();
        Directory.Delete(_root, recursive: true);
    }

    [Fact]
    public async Task HalfCloseReachesTheGuestServerAndItsReplyStillComesBack()
    {
        using var listener = Listen();
        var served = Task.Run(async () =>
        {
            using var peer = await listener.AcceptAsync();
            var request = await ReadToEndAsync(peer);
            var text = Encoding.ASCII.GetString(request);
            await peer.SendAsync(Encoding.ASCII.GetBytes($"got {request.Length}: {text.ToUpperInvariant()}"));
            peer.Shutdown(SocketShutdown.Both);
        });

        var id = await OpenAsync(PortOf(listener));
        await SendAsync(id, FrameType.Stdin, "hello tunnel"u8.ToArray());
        await SendAsync(id, FrameType.StdinEnd);
        var (output, eof, end) = await DrainAsync(id);
        await served.WaitAsync(Deadline);

        Assert.Equal("got 12: HELLO TUNNEL", Encoding.ASCII.GetString(output));
        Assert.True(eof, "the guest server's end of sending reached the host as an empty Stdout frame");
        Assert.Equal(FrameType.Result, end.Type);
        var summary = ProtocolJsonContext.Decode<AgentResponse>(end.Payload).Tcp!;
        Assert.Equal((12L, (long)output.Length), (summary.BytesToGuest, summary.BytesFromGuest));
    }

    [Fact]
    public async Task NothingListeningIsConnectionRefusedNamingThePort()
    {
        // Bound but not listening: the port is ours, and a connection to it is refused.
        using var bound = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        bound.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var port = PortOf(bound);

        var id = await OpenAsync(port);
        var (_, _, end) = await DrainAsync(id);

        Assert.Equal(FrameType.Error, end.Type);
        var error = ProtocolJsonContext.Decode<AgentError>(end.Payload);
        Assert.Equal("connection_refused", error.Code);
        Assert.Contains($"127.0.0.1:{port}", error.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(65536)]
    public async Task APortOutOfRangeIsABadRequest(int port)
    {
        var id = await OpenAsync(port);
        var (_, _, end) = await DrainAsync(id);

        Assert.Equal(FrameType.Error, end.Type);
        Assert.Equal("bad_request", ProtocolJsonContext.Decode<AgentError>(end.Payload).Code);
    }

    [Fact]
    public async Task TheAgentStaysWithinItsWindowUntilTheHostAcknowledges()
    {
        var data = RandomNumberGenerator.GetBytes(4 * 1024 * 1024);
        using var listener = Listen();
        var served = Task.Run(async () =>
        {
            using var peer = await listener.AcceptAsync();
            await peer.SendAsync(data);
            peer.Shutdown(SocketShutdown.Both);
        });

        var id = await OpenAsync(PortOf(listener));
        var held = new MemoryStream();
        long cost = 0;
        // Without acks the agent fills its window as far as a whole chunk fits, then waits.
        while (cost <= TcpConnectRequest.WindowBytes - (FrameCodec.HeaderLength + 64 * 1024))
        {
            var frame = await NextAsync(id);
            Assert.Equal(FrameType.Stdout, frame.Type);
            held.Write(frame.Payload.Span);
            cost += FrameCodec.HeaderLength + frame.Payload.Length;
        }

        // A full round trip of another stream gives a runaway sender time to show itself.
        var other = await OpenAsync(1);
        await DrainAsync(other);
        var unacknowledged = cost;
        while (_streams[id].Reader.TryRead(out var early))
        {
            unacknowledged += FrameCodec.HeaderLength + early.Payload.Length;
            held.Write(early.Payload.Span);
        }

        Assert.InRange(unacknowledged, 1, TcpConnectRequest.WindowBytes);
        await SendAsync(id, FrameType.Ack, BigEndian((uint)unacknowledged));
        await SendAsync(id, FrameType.StdinEnd);
        var (rest, eof, end) = await DrainAsync(id);
        await served.WaitAsync(Deadline);
        held.Write(rest);

        Assert.True(eof);
        Assert.Equal(FrameType.Result, end.Type);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(held.ToArray()));
        Figures.Record("tcp.connect window", $"{unacknowledged} bytes sent before the first ack (window {TcpConnectRequest.WindowBytes}), then {data.Length} bytes arrived intact");
    }

    [Fact]
    public async Task CancelClosesTheGuestSocket()
    {
        using var listener = Listen();
        var first = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var peerSaw = Task.Run(async () =>
        {
            using var peer = await listener.AcceptAsync();
            var buffer = new byte[64];
            var read = await peer.ReceiveAsync(buffer);
            first.TrySetResult(Encoding.ASCII.GetString(buffer, 0, read));
            return await ReadToEndAsync(peer);
        });

        var id = await OpenAsync(PortOf(listener));
        await SendAsync(id, FrameType.Stdin, "partial"u8.ToArray());
        // The guest server has the bytes, so the connection is up before the cancel.
        Assert.Equal("partial", await first.Task.WaitAsync(Deadline));
        await SendAsync(id, FrameType.Cancel);
        var (_, _, end) = await DrainAsync(id);
        var rest = await peerSaw.WaitAsync(Deadline);

        Assert.Equal(FrameType.Error, end.Type);
        Assert.Equal("cancelled", ProtocolJsonContext.Decode<AgentError>(end.Payload).Code);
        Assert.Empty(rest);
    }

    [Fact]
    public async Task AGuestServerThatResetsEndsTheStreamWithConnectionReset()
    {
        using var listener = Listen();
        var served = Task.Run(async () =>
        {
            using var peer = await listener.AcceptAsync();
            var buffer = new byte[16];
            await peer.ReceiveAsync(buffer);
            peer.LingerState = new LingerOption(true, 0);
            peer.Close();
        });

        var id = await OpenAsync(PortOf(listener));
        await SendAsync(id, FrameType.Stdin, "x"u8.ToArray());
        await served.WaitAsync(Deadline);
        var (_, _, end) = await DrainAsync(id);

        Assert.Equal(FrameType.Error, end.Type);
        Assert.Equal("connection_reset", ProtocolJsonContext.Decode<AgentError>(end.Payload).Code);
    }

    private static Socket Listen()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        return listener;
    }

    private static int PortOf(Socket socket) => ((IPEndPoint)socket.LocalEndPoint!).Port;

    private static byte[] BigEndian(uint value)
    {
        var bytes = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        return bytes;
    }

    private static async Task<byte[]> ReadToEndAsync(Socket socket)
    {
        var all = new MemoryStream();
        var buffer = new byte[64 * 1024];
        int read;
        while ((read = await socket.ReceiveAsync(buffer)) > 0)
        {
            all.Write(buffer, 0, read);
        }

        return all.ToArray();
    }

    private async Task<uint> OpenAsync(int port)
    {
        var id = Interlocked.Increment(ref _next);
        _streams[id] = Channel.CreateUnbounded<Frame>();
        await _host.SendAsync(new Frame(id, FrameType.Request,
            ProtocolJsonContext.Encode(new AgentRequest { Op = AgentOps.TcpConnect, Tcp = new TcpConnectRequest { Port = port } })));
        return id;
    }

    private Task SendAsync(uint id, FrameType type, byte[]? payload = null) => _host.SendAsync(new Frame(id, type, payload ?? [])).AsTask();

    private async Task<Frame> NextAsync(uint id) => await _streams[id].Reader.ReadAsync().AsTask().WaitAsync(Deadline);

    /// <summary>Stdout until the stream ends, acknowledged as it comes; whether the empty end-of-sending frame came; the closing frame.</summary>
    private async Task<(byte[] Output, bool Eof, Frame End)> DrainAsync(uint id)
    {
        var output = new MemoryStream();
        var eof = false;
        while (true)
        {
            var frame = await NextAsync(id);
            switch (frame.Type)
            {
                case FrameType.Stdout when frame.Payload.IsEmpty:
                    Assert.False(eof, "one end-of-sending frame per stream");
                    eof = true;
                    break;
                case FrameType.Stdout:
                    Assert.False(eof, "no bytes after the end of sending");
                    output.Write(frame.Payload.Span);
                    await SendAsync(id, FrameType.Ack, BigEndian((uint)(FrameCodec.HeaderLength + frame.Payload.Length)));
                    break;
                default:
                    return (output.ToArray(), eof, frame);
            }
        }
    }
}
