using System.Collections.Concurrent;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using PyroMcp.Networking;
using PyroMcp.Protocol;
using PyroMcp.Vmm;

namespace PyroMcp.Tests;

/// <summary>
/// Published ports end to end in one process: a TCP client, the <see cref="PortForwarder"/> on
/// 127.0.0.1, <see cref="GuestAgentClient"/>, an in-memory channel, the real guest agent's server,
/// and a TCP server on 127.0.0.1 standing in for the guest's service.
/// </summary>
public sealed class PortForwarderTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);
    private readonly InProcessAgent _guest;
    private readonly GuestAgentClient _agent;

    public PortForwarderTests()
    {
        _guest = new InProcessAgent("forward");
        _agent = _guest.Client;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _guest.DisposeAsync();

    [Fact]
    public async Task AnEchoRoundTripsThroughThePublishedPort()
    {
        await using var guest = GuestServer.Start(EchoAsync);
        await using var forwarder = PortForwarder.Open(_agent, null, guest.Port);
        using var client = await ConnectAsync(forwarder.Published.HostPort);

        await client.SendAsync("ping through the tunnel"u8.ToArray());
        var reply = await ReadExactlyAsync(client, "ping through the tunnel".Length);

        Assert.Equal("ping through the tunnel", Encoding.ASCII.GetString(reply));
        Assert.Equal($"127.0.0.1:{forwarder.Published.HostPort}->{guest.Port}/tcp", forwarder.Published.ToString());
        Assert.InRange(forwarder.Published.HostPort, PortPublication.MinHostPort, 65535);
    }

    [Fact]
    public async Task ThirtyTwoMiBEachWayArriveIntact()
    {
        const int size = 32 * 1024 * 1024;
        var down = RandomNumberGenerator.GetBytes(size);
        var up = RandomNumberGenerator.GetBytes(size);
        var guestGot = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var guest = GuestServer.Start(async peer =>
        {
            var reading = ReadToEndAsync(peer);
            await peer.SendAsync(down);
            peer.Shutdown(SocketShutdown.Send);
            guestGot.TrySetResult(SHA256.HashData((await reading).Data));
        });
        await using var forwarder = PortForwarder.Open(_agent, null, guest.Port);
        using var client = await ConnectAsync(forwarder.Published.HostPort);

        var clientReading = ReadToEndAsync(client);
        await client.SendAsync(up);
        client.Shutdown(SocketShutdown.Send);
        var received = await clientReading.WaitAsync(Deadline * 4);

        Assert.False(received.Reset);
        Assert.Equal(SHA256.HashData(down), SHA256.HashData(received.Data));
        Assert.Equal(SHA256.HashData(up), await guestGot.Task.WaitAsync(Deadline));
        Figures.Record("published port bulk", $"{size >> 20} MiB each way at once, sha256 equal both ways, host reply buffer high-water {_agent.BufferedBytesHighWater / 1024} KiB (window {TcpConnectRequest.WindowBytes / 1024} KiB)");
    }

    [Fact]
    public async Task AHalfClosedClientStillReadsTheReply()
    {
        await using var guest = GuestServer.Start(async peer =>
        {
            var request = await ReadToEndAsync(peer);
            await peer.SendAsync(Encoding.ASCII.GetBytes($"read {request.Data.Length} bytes after your EOF"));
            peer.Shutdown(SocketShutdown.Both);
        });
        await using var forwarder = PortForwarder.Open(_agent, null, guest.Port);
        using var client = await ConnectAsync(forwarder.Published.HostPort);

        await client.SendAsync(new byte[100_000]);
        client.Shutdown(SocketShutdown.Send);
        var reply = await ReadToEndAsync(client).WaitAsync(Deadline);

        Assert.False(reply.Reset);
        Assert.Equal("read 100000 bytes after your EOF", Encoding.ASCII.GetString(reply.Data));
    }

    [Fact]
    public async Task NoServerInTheGuestClosesTheClientAndTheForwarderKeepsServing()
    {
        // Bound, not listening: connections to it are refused until Listen.
        using var later = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        later.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var guestPort = ((IPEndPoint)later.LocalEndPoint!).Port;
        await using var forwarder = PortForwarder.Open(_agent, null, guestPort);

        var result = await ConnectAndReadToEndAsync(forwarder.Published.HostPort);
        Assert.Empty(result.Data);

        later.Listen(4);
        var serving = Task.Run(async () =>
        {
            using var peer = await later.AcceptAsync();
            await EchoAsync(peer);
        });
        using var client = await ConnectAsync(forwarder.Published.HostPort);
        await client.SendAsync("still here"u8.ToArray());

        Assert.Equal("still here", Encoding.ASCII.GetString(await ReadExactlyAsync(client, 10)));
        Assert.Equal(1, forwarder.FailedConnections);
        Assert.False(_agent.Closed.IsCompleted);
    }

    [Fact]
    public async Task AHundredConnectionsAtOnceCarrySixtyFourAndResetTheRest()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var guest = GuestServer.Start(async peer =>
        {
            await release.Task;
            await peer.SendAsync("ok"u8.ToArray());
            peer.Shutdown(SocketShutdown.Send);
            await ReadToEndAsync(peer);
        });
        await using var forwarder = PortForwarder.Open(_agent, null, guest.Port);

        var clients = Enumerable.Range(0, 100).Select(_ => Task.Run(async () =>
        {
            Socket client;
            try
            {
                client = await ConnectAsync(forwarder.Published.HostPort);
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
            {
                // Reset so soon that the connect itself reports it.
                return (Data: Array.Empty<byte>(), Reset: true);
            }

            using (client)
            {
                return await ReadToEndAsync(client);
            }
        })).ToArray();
        await Until(() => guest.Accepted == PortForwarder.MaxConnections && forwarder.RefusedConnections == 100 - PortForwarder.MaxConnections,
            () => $"guest accepted {guest.Accepted}, forwarder refused {forwarder.RefusedConnections}");
        var activeAtPeak = forwarder.ActiveConnections;
        release.SetResult();
        var results = await Task.WhenAll(clients).WaitAsync(Deadline);
        await Until(() => forwarder.ActiveConnections == 0, () => $"{forwarder.ActiveConnections} still active");

        var carried = results.Count(r => Encoding.ASCII.GetString(r.Data) == "ok");
        var closed = results.Count(r => r.Data.Length == 0);
        Assert.Equal(PortForwarder.MaxConnections, activeAtPeak);
        Assert.Equal(PortForwarder.MaxConnections, guest.PeakOpen);
        Assert.Equal((64, 36), (carried, closed));
        Assert.False(_agent.Closed.IsCompleted);
        Figures.Record("published port connection limit",
            $"100 connections at once: {carried} carried (peak {guest.PeakOpen} open in the guest, limit {PortForwarder.MaxConnections}), {closed} reset at once ({forwarder.RefusedConnections} counted), forwarder and channel up");
    }

    [Fact]
    public async Task AStalledClientHoldsTheGuestBackInsteadOfFillingTheHost()
    {
        const int size = 64 * 1024 * 1024;
        var data = RandomNumberGenerator.GetBytes(size);
        long written = 0;
        await using var bulk = GuestServer.Start(async peer =>
        {
            for (var offset = 0; offset < size; offset += 64 * 1024)
            {
                await peer.SendAsync(data.AsMemory(offset, 64 * 1024));
                Interlocked.Add(ref written, 64 * 1024);
            }

            peer.Shutdown(SocketShutdown.Both);
        });
        await using var echo = GuestServer.Start(EchoAsync);
        await using var stalledPort = PortForwarder.Open(_agent, null, bulk.Port);
        await using var echoPort = PortForwarder.Open(_agent, null, echo.Port);
        using var stalled = await ConnectAsync(stalledPort.Published.HostPort);

        // Reading nothing: the kernel buffers fill, then the forwarder's queue.
        await Until(() => _agent.BufferedBytesHighWater >= TcpConnectRequest.WindowBytes / 2, () => $"host holds {_agent.BufferedBytesHighWater}, guest wrote {Interlocked.Read(ref written)}");
        using (var other = await ConnectAsync(echoPort.Published.HostPort))
        {
            for (var i = 0; i < 3; i++)
            {
                var message = Encoding.ASCII.GetBytes($"round trip {i} while another client stalls");
                await other.SendAsync(message);
                Assert.Equal(message, await ReadExactlyAsync(other, message.Length));
            }
        }

        var heldWhileStalled = _agent.BufferedBytesHighWater;
        var writtenWhileStalled = Interlocked.Read(ref written);
        var received = await ReadToEndAsync(stalled).WaitAsync(Deadline * 2);

        Assert.InRange(writtenWhileStalled, 1, size - 1);
        Assert.InRange(heldWhileStalled, 1, TcpConnectRequest.WindowBytes + 64 * 1024);
        Assert.InRange(_agent.BufferedBytesHighWater, 1, TcpConnectRequest.WindowBytes + 64 * 1024);
        Assert.False(received.Reset);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(received.Data));
        Figures.Record("published port stalled client",
            $"guest sending {size >> 20} MiB to a client reading nothing: it got {writtenWhileStalled >> 20} MiB out, then waited; the host held at most {_agent.BufferedBytesHighWater / 1024} KiB (window {TcpConnectRequest.WindowBytes / 1024} KiB, per-stream cap {_agent.StreamBufferBytes >> 20} MiB), receive buffer high-water {_agent.Connection.ReceiveBufferHighWater / 1024} KiB; 3 round trips on another connection meanwhile; after the client read, {size >> 20} MiB arrived intact");
    }

    [Theory]
    [InlineData("0")]
    [InlineData("65536")]
    [InlineData("80:8080")]
    [InlineData("1023:8080")]
    [InlineData("-1")]
    [InlineData("8080:")]
    [InlineData(":8080")]
    [InlineData("a:b")]
    [InlineData("1e3")]
    [InlineData("8080/udp")]
    [InlineData("127.0.0.1:18080:8080")]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("18080:0")]
    [InlineData("+8080")]
    [InlineData("8080 : 80")]
    [InlineData("0x1f90")]
    [InlineData("99999999999")]
    [InlineData("８０８０")]
    public void APublicationThatIsNotAPortPairIsPortInvalid(string spec)
    {
        var error = Assert.Throws<PyroInputException>(() => PortPublication.Parse(spec));

        Assert.Equal("port_invalid", error.Code);
        Assert.Contains("1024 to 65535", error.Message);
    }

    [Theory]
    [InlineData("8080", null, 8080)]
    [InlineData(" 8080 ", null, 8080)]
    [InlineData("18080:8080", 18080, 8080)]
    [InlineData("\t1024:1\n", 1024, 1)]
    [InlineData("65535:65535", 65535, 65535)]
    public void APortOrAPortPairIsAccepted(string spec, int? host, int guest)
        => Assert.Equal((host, guest), PortPublication.Parse(spec));

    [Theory]
    [InlineData(80, 8080)]
    [InlineData(70000, 8080)]
    [InlineData(null, 0)]
    [InlineData(null, 65536)]
    public void OpeningRefusesPortsOutOfRange(int? host, int guest)
        => Assert.Equal("port_invalid", Assert.Throws<PyroInputException>(() => PortForwarder.Open(_agent, host, guest)).Code);

    [Fact]
    public void AHostPortTakenByAnotherListenerIsPortInUse()
    {
        using var squatter = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        squatter.Bind(new IPEndPoint(IPAddress.Any, 0));
        squatter.Listen(1);
        var port = ((IPEndPoint)squatter.LocalEndPoint!).Port;

        var error = Assert.Throws<PyroInputException>(() => PortForwarder.Open(_agent, port, 8080));

        Assert.Equal("port_in_use", error.Code);
        Assert.Contains($"host port {port} is already in use on 127.0.0.1", error.Message);
    }

    [Fact]
    public async Task TheListenerIsOnTheIpv4LoopbackOnly()
    {
        await using var guest = GuestServer.Start(EchoAsync);
        await using var forwarder = PortForwarder.Open(_agent, null, guest.Port);
        var port = forwarder.Published.HostPort;
        var elsewhere = new List<IPAddress> { IPAddress.Parse("127.0.0.2"), IPAddress.IPv6Loopback };
        elsewhere.AddRange(NetworkInterface.GetAllNetworkInterfaces()
            .Where(i => i.OperationalStatus == OperationalStatus.Up && i.NetworkInterfaceType != NetworkInterfaceType.Loopback)
            .SelectMany(i => i.GetIPProperties().UnicastAddresses)
            .Select(a => a.Address)
            .Where(a => !IPAddress.IsLoopback(a) && !a.IsIPv6LinkLocal));

        var reached = new List<string>();
        foreach (var address in elsewhere)
        {
            using var probe = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await probe.ConnectAsync(new IPEndPoint(address, port)).WaitAsync(Deadline);
                reached.Add(address.ToString());
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionRefused)
            {
            }
        }

        // Nor can another socket take the port over while it is published, even asking to share
        // (.NET's ReuseAddress sets SO_REUSEADDR and SO_REUSEPORT): the exact address is refused,
        // and a wildcard listener (if the kernel lets one bind) never receives what is sent to 127.0.0.1.
        using var exact = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        exact.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        var taken = Assert.Throws<SocketException>(() => exact.Bind(new IPEndPoint(IPAddress.Loopback, port)));
        using var wildcard = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        wildcard.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        string wildcardOutcome;
        try
        {
            wildcard.Bind(new IPEndPoint(IPAddress.Any, port));
            wildcard.Listen(1);
            wildcardOutcome = "a wildcard listener bound beside it";
        }
        catch (SocketException ex)
        {
            wildcardOutcome = "a wildcard listener was refused (" + ex.SocketErrorCode + ")";
        }

        using (var client = await ConnectAsync(port))
        {
            await client.SendAsync("mine"u8.ToArray());
            Assert.Equal("mine", Encoding.ASCII.GetString(await ReadExactlyAsync(client, 4)));
        }

        Assert.Equal(new IPEndPoint(IPAddress.Loopback, port), forwarder.ListenerEndPoint);
        Assert.Equal((1, 0), forwarder.ReuseOptions);
        Assert.Empty(reached);
        Assert.Equal(SocketError.AddressAlreadyInUse, taken.SocketErrorCode);
        Assert.Equal(1, forwarder.AcceptedConnections);
        Figures.Record("published port listener",
            $"bound to {forwarder.ListenerEndPoint}; {elsewhere.Count} other local addresses tried ({string.Join(", ", elsewhere)}), {reached.Count} reached it; " +
            $"a second bind of 127.0.0.1:{port} was refused; {wildcardOutcome}, and the forwarder still took the connection to 127.0.0.1");
    }

    [Fact]
    public async Task DisposingResetsConnectionsAndFreesThePort()
    {
        await using var guest = GuestServer.Start(EchoAsync);
        var forwarder = PortForwarder.Open(_agent, null, guest.Port);
        var port = forwarder.Published.HostPort;
        using var client = await ConnectAsync(port);
        await client.SendAsync("x"u8.ToArray());
        await ReadExactlyAsync(client, 1);

        await forwarder.DisposeAsync();
        var after = await ReadToEndAsync(client).WaitAsync(Deadline);
        using var again = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        again.Bind(new IPEndPoint(IPAddress.Loopback, port));
        again.Listen(1);

        Assert.Empty(after.Data);
        Assert.Equal(0, forwarder.ActiveConnections);
        await Until(() => guest.Open == 0, () => $"{guest.Open} connections still open in the guest");
    }

    [Fact]
    public async Task APortIsPublishedAgainRightAfterAConnectionTheGuestClosedFirst()
    {
        await using var guest = GuestServer.Start(async peer =>
        {
            await peer.SendAsync("bye"u8.ToArray());
            peer.Shutdown(SocketShutdown.Send);
            await ReadToEndAsync(peer);
        });
        // A port below the ephemeral range: between the two publications no other process's
        // outgoing connection can be given it as its source port (one was, under CI load, when
        // the kernel chose the port), so an "in use" here can only be this forwarder's own.
        var forwarder = OpenBelowEphemeralRange(guest.Port);
        var port = forwarder.Published.HostPort;
        using (var client = await ConnectAsync(port))
        {
            Assert.Equal("bye", Encoding.ASCII.GetString((await ReadToEndAsync(client).WaitAsync(Deadline)).Data));
        }

        // The forwarder sent the first FIN, so its side of that connection waits in TIME_WAIT.
        await Until(() => forwarder.ActiveConnections == 0, () => "the connection is still being carried");
        await forwarder.DisposeAsync();
        await using var again = PortForwarder.Open(_agent, port, guest.Port);
        using var second = await ConnectAsync(port);

        Assert.Equal("bye", Encoding.ASCII.GetString((await ReadToEndAsync(second).WaitAsync(Deadline)).Data));
    }

    private PortForwarder OpenBelowEphemeralRange(int guestPort)
    {
        var low = int.Parse(File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[0], System.Globalization.CultureInfo.InvariantCulture);
        for (var tries = 0; ; tries++)
        {
            try
            {
                return PortForwarder.Open(_agent, Random.Shared.Next(Math.Max(1024, low - 8000), low), guestPort);
            }
            catch (PyroInputException ex) when (ex.Code == "port_in_use" && tries < 50)
            {
            }
        }
    }

    [Fact]
    public async Task APortTableAllowsAGuestPortTwiceButAHostPortOnceAndSixteenInAll()
    {
        await using var guest = GuestServer.Start(EchoAsync);
        await using var table = new PortTable(_agent);
        var first = table.Publish(null, guest.Port);
        var second = table.Publish(null, guest.Port);
        var clash = Assert.Throws<PyroInputException>(() => table.Publish(first.HostPort, 9090));
        for (var i = table.List().Count; i < PortTable.MaxPorts; i++)
        {
            table.Publish(null, 9000 + i);
        }

        var limit = Assert.Throws<PyroInputException>(() => table.Publish(null, 9999));
        using (var client = await ConnectAsync(second.HostPort))
        {
            await client.SendAsync("via the second"u8.ToArray());
            Assert.Equal("via the second", Encoding.ASCII.GetString(await ReadExactlyAsync(client, 14)));
        }

        Assert.True(await table.UnpublishAsync(first.HostPort));
        Assert.False(await table.UnpublishAsync(first.HostPort));
        var republished = table.Publish(first.HostPort, guest.Port);

        Assert.NotEqual(first.HostPort, second.HostPort);
        Assert.Equal("port_in_use", clash.Code);
        Assert.Equal("port_limit", limit.Code);
        Assert.Equal(first, republished);
        Assert.Equal(PortTable.MaxPorts, table.List().Count);
    }

    [Fact]
    public async Task AHostileGuestCostsOnlyTheConnectionsItAnswersBadly()
    {
        var pipe = new DuplexPipe();
        await using var agent = GuestAgentClient.Over(pipe.Host);
        await using var guest = new HostileGuest(pipe.Guest);
        await using var forwarder = PortForwarder.Open(agent, null, 8080);
        var port = forwarder.Published.HostPort;

        // Behaviours go by the order requests arrive, so the clients connect one by one.
        using var echo = await guest.ConnectAsync(port, Behaviour.Echo) ?? throw new InvalidOperationException("the echo connection was reset");
        await echo.SendAsync("before"u8.ToArray());
        Assert.Equal("before", Encoding.ASCII.GetString(await ReadExactlyAsync(echo, 6)));
        var outcomes = new Dictionary<Behaviour, string>();
        foreach (var behaviour in new[] { Behaviour.GarbageResult, Behaviour.GarbageError, Behaviour.StrayFrames, Behaviour.Flood })
        {
            using var client = await guest.ConnectAsync(port, behaviour);
            // The flood's client reads nothing until the host has cut it off.
            if (behaviour == Behaviour.Flood)
            {
                await guest.CancelledAsync(guest.StreamOf(behaviour)).WaitAsync(Deadline);
            }

            var result = client is null ? (Data: Array.Empty<byte>(), Reset: true) : await ReadToEndAsync(client).WaitAsync(Deadline);
            outcomes[behaviour] = result.Reset ? "reset" : $"{result.Data.Length} bytes then closed";
        }

        await echo.SendAsync("after"u8.ToArray());
        var after = Encoding.ASCII.GetString(await ReadExactlyAsync(echo, 5));

        Assert.Equal("after", after);
        Assert.Equal("3 bytes then closed", outcomes[Behaviour.StrayFrames]);
        Assert.False(agent.Closed.IsCompleted);
        Assert.InRange(agent.BufferedBytesHighWater, 1, agent.StreamBufferBytes + FrameCodec.HeaderLength + 64 * 1024);
        Assert.True(guest.FloodSent >= agent.StreamBufferBytes, $"the flood sent only {guest.FloodSent} bytes, less than the cap it should have hit");
        Figures.Record("published port hostile guest",
            $"garbage result: {outcomes[Behaviour.GarbageResult]}; garbage error: {outcomes[Behaviour.GarbageError]}; stderr and other streams' frames: {outcomes[Behaviour.StrayFrames]}; " +
            $"{guest.FloodSent >> 20} MiB flood past the window to a client reading nothing: {outcomes[Behaviour.Flood]}, host held at most {agent.BufferedBytesHighWater >> 10} KiB (cap {agent.StreamBufferBytes >> 20} MiB); " +
            $"echo on another connection intact before and after, channel open, forwarder up ({forwarder.FailedConnections} connections failed, 0 crashes)");
    }

    private static async Task EchoAsync(Socket peer)
    {
        var buffer = new byte[64 * 1024];
        int read;
        while ((read = await peer.ReceiveAsync(buffer)) > 0)
        {
            await peer.SendAsync(buffer.AsMemory(0, read));
        }

        peer.Shutdown(SocketShutdown.Send);
    }

    private static async Task<Socket> ConnectAsync(int port)
    {
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port)).WaitAsync(Deadline);
        return client;
    }

    private static async Task<byte[]> ReadExactlyAsync(Socket socket, int count)
    {
        var buffer = new byte[count];
        for (var filled = 0; filled < count;)
        {
            var read = await socket.ReceiveAsync(buffer.AsMemory(filled)).AsTask().WaitAsync(Deadline);
            Assert.True(read > 0, $"the connection closed after {filled} of {count} bytes");
            filled += read;
        }

        return buffer;
    }

    /// <summary>
    /// A connection's whole life: connect, then everything until EOF or a reset. The forwarder
    /// resets a connection the guest refused at once; under load that reset can land before the
    /// connect's completion is seen, and the connect itself then fails with a reset: the same end.
    /// </summary>
    private static async Task<(byte[] Data, bool Reset)> ConnectAndReadToEndAsync(int port)
    {
        Socket socket;
        try
        {
            socket = await ConnectAsync(port);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            return ([], true);
        }

        using (socket)
        {
            return await ReadToEndAsync(socket).WaitAsync(Deadline);
        }
    }

    /// <summary>Everything until EOF; a reset ends it too, and says so.</summary>
    private static async Task<(byte[] Data, bool Reset)> ReadToEndAsync(Socket socket)
    {
        var all = new MemoryStream();
        var buffer = new byte[64 * 1024];
        try
        {
            int read;
            while ((read = await socket.ReceiveAsync(buffer)) > 0)
            {
                all.Write(buffer, 0, read);
            }

            return (all.ToArray(), false);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            return (all.ToArray(), true);
        }
    }

    private static async Task Until(Func<bool> condition, Func<string> state)
    {
        var deadline = DateTime.UtcNow + Deadline;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "gave up waiting: " + state());
            await Task.Delay(10);
        }
    }

    /// <summary>A TCP server on 127.0.0.1 standing in for a service in the guest; counts its connections.</summary>
    private sealed class GuestServer : IAsyncDisposable
    {
        private readonly Socket _listener;
        private readonly Func<Socket, Task> _handle;
        private readonly ConcurrentBag<Task> _handlers = [];
        private readonly Task _accepting;
        private int _accepted;
        private int _open;
        private int _peak;

        private GuestServer(Func<Socket, Task> handle)
        {
            _handle = handle;
            _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen(128);
            Port = ((IPEndPoint)_listener.LocalEndPoint!).Port;
            _accepting = Task.Run(AcceptAsync);
        }

        internal int Port { get; }

        internal int Accepted => Volatile.Read(ref _accepted);

        internal int Open => Volatile.Read(ref _open);

        internal int PeakOpen => Volatile.Read(ref _peak);

        internal static GuestServer Start(Func<Socket, Task> handle) => new(handle);

        private async Task AcceptAsync()
        {
            while (true)
            {
                Socket peer;
                try
                {
                    peer = await _listener.AcceptAsync();
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    return;
                }

                Interlocked.Increment(ref _accepted);
                var open = Interlocked.Increment(ref _open);
                int peak;
                while (open > (peak = Volatile.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, open, peak) != peak)
                {
                }

                _handlers.Add(Task.Run(async () =>
                {
                    try
                    {
                        await _handle(peer);
                    }
                    catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                    {
                        // The host side went away: part of some tests.
                    }
                    finally
                    {
                        peer.Dispose();
                        Interlocked.Decrement(ref _open);
                    }
                }));
            }
        }

        public async ValueTask DisposeAsync()
        {
            _listener.Dispose();
            await _accepting;
            await Task.WhenAll(_handlers).WaitAsync(Deadline);
        }
    }

    internal enum Behaviour
    {
        Echo,
        GarbageResult,
        GarbageError,
        StrayFrames,
        Flood,
    }

    /// <summary>A guest agent that answers each tcp.connect as the test says: well, garbled, or in a flood.</summary>
    private sealed class HostileGuest : IAsyncDisposable
    {
        private readonly FrameConnection _connection;
        private readonly ConcurrentQueue<Behaviour> _plan = new();
        private readonly ConcurrentDictionary<uint, Behaviour> _streams = new();
        private readonly ConcurrentDictionary<uint, TaskCompletionSource> _cancels = new();
        private int _requests;
        private long _floodSent;

        internal HostileGuest(Stream stream)
        {
            _connection = new FrameConnection(stream, OnFrameAsync);
            _connection.Start();
        }

        internal long FloodSent => Interlocked.Read(ref _floodSent);

        internal uint StreamOf(Behaviour behaviour) => _streams.First(s => s.Value == behaviour).Key;

        internal Task CancelledAsync(uint streamId) => Cancel(streamId).Task;

        /// <summary>Connects a client whose request the guest will answer with <paramref name="behaviour"/>, once the request has arrived.</summary>
        /// <returns>The client, or null when the forwarder reset it so soon that connect itself reported it.</returns>
        internal async Task<Socket?> ConnectAsync(int port, Behaviour behaviour)
        {
            var before = Volatile.Read(ref _requests);
            _plan.Enqueue(behaviour);
            Socket? client;
            try
            {
                client = await PortForwarderTests.ConnectAsync(port);
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
            {
                client = null;
            }

            await Until(() => Volatile.Read(ref _requests) > before, () => $"no request for {behaviour}");
            return client;
        }

        private TaskCompletionSource Cancel(uint streamId)
            => _cancels.GetOrAdd(streamId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

        private ValueTask OnFrameAsync(Frame frame, CancellationToken cancellationToken)
        {
            switch (frame.Type)
            {
                case FrameType.Request:
                    var behaviour = _plan.TryDequeue(out var next) ? next : Behaviour.Echo;
                    _streams[frame.StreamId] = behaviour;
                    Interlocked.Increment(ref _requests);
                    _ = Task.Run(() => AnswerAsync(frame.StreamId, behaviour), CancellationToken.None);
                    break;
                case FrameType.Stdin when _streams.TryGetValue(frame.StreamId, out var b) && b == Behaviour.Echo:
                    return _connection.SendAsync(new Frame(frame.StreamId, FrameType.Stdout, frame.Payload), cancellationToken);
                case FrameType.StdinEnd when _streams.TryGetValue(frame.StreamId, out var b) && b == Behaviour.Echo:
                    return EndAsync(frame.StreamId);
                case FrameType.Cancel:
                    Cancel(frame.StreamId).TrySetResult();
                    break;
            }

            return ValueTask.CompletedTask;
        }

        private async ValueTask EndAsync(uint id)
        {
            await _connection.SendAsync(new Frame(id, FrameType.Stdout, ReadOnlyMemory<byte>.Empty));
            await _connection.SendAsync(new Frame(id, FrameType.Result, ProtocolJsonContext.Encode(new AgentResponse { Tcp = new TcpSummary() })));
        }

        private async Task AnswerAsync(uint id, Behaviour behaviour)
        {
            switch (behaviour)
            {
                case Behaviour.GarbageResult:
                    await _connection.SendAsync(new Frame(id, FrameType.Result, "\u0001{not json"u8.ToArray()));
                    break;
                case Behaviour.GarbageError:
                    await _connection.SendAsync(new Frame(id, FrameType.Error, "[[[[\u001b]2;pwned\u0007"u8.ToArray()));
                    break;
                case Behaviour.StrayFrames:
                    await _connection.SendAsync(new Frame(id, FrameType.Stderr, new byte[1000]));
                    await _connection.SendAsync(new Frame(id + 1000, FrameType.Stdout, new byte[1000]));
                    await _connection.SendAsync(new Frame(id + 1000, FrameType.Result, "garbage"u8.ToArray()));
                    await _connection.SendAsync(new Frame(id, FrameType.Stdout, "abc"u8.ToArray()));
                    await EndAsync(id);
                    break;
                case Behaviour.Flood:
                    var chunk = new byte[64 * 1024];
                    while (!Cancel(id).Task.IsCompleted && Interlocked.Read(ref _floodSent) < 256L * 1024 * 1024)
                    {
                        await _connection.SendAsync(new Frame(id, FrameType.Stdout, chunk));
                        Interlocked.Add(ref _floodSent, chunk.Length);
                    }

                    break;
            }
        }

        public async ValueTask DisposeAsync() => await _connection.DisposeAsync();
    }
}
