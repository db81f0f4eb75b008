using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Protocol;
using PyroMcp.Runtime;
using PyroMcp.Vmm;

namespace PyroMcp.Workspaces;

/// <summary>
/// The host-side owner of one workspace, in a process of its own that outlives the CLI call that
/// started it. It boots QEMU (which dies with it), holds the only connection to the guest agent,
/// serves any number of clients on a unix socket by relaying their frames, and enforces the TTL.
/// Every state change goes to the database before anything else is told.
/// </summary>
internal sealed class WorkspaceSupervisor
{
    /// <summary>Ops the supervisor answers itself instead of relaying.</summary>
    internal const string StopOp = "supervisor.stop";
    internal const string PingOp = "supervisor.ping";
    internal const string SocketName = "supervisor.sock";

    private readonly WorkspaceStore _store;
    private readonly WorkspaceRecord _record;
    private readonly PyroOptions _options;
    private readonly TaskCompletionSource<string> _stop = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentDictionary<ClientSession, byte> _clients = new();

    private WorkspaceSupervisor(WorkspaceStore store, WorkspaceRecord record, PyroOptions options)
    {
        _store = store;
        _record = record;
        _options = options;
    }

    /// <summary>The supervisor program's whole life. Returns its exit code.</summary>
    internal static async Task<int> RunAsync(string stateDir, string workspaceId)
    {
        var options = new PyroOptions { StateDir = stateDir };
        var store = new WorkspaceStore(stateDir);
        var record = store.Find(workspaceId);
        if (record is null)
        {
            await Console.Error.WriteLineAsync($"pyro-supervisor: no workspace {workspaceId}");
            return 2;
        }

        return await new WorkspaceSupervisor(store, record, options).ServeAsync();
    }

    private async Task<int> ServeAsync()
    {
        var id = _record.Id;
        var directory = _store.WorkspaceDir(id);
        var startingState = _record.State;
        _store.SetState(id, startingState, null, Environment.ProcessId);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; _stop.TrySetResult("stopped by SIGTERM"); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; _stop.TrySetResult("stopped by SIGINT"); });

        QemuVm vm;
        try
        {
            var spec = EnvironmentCatalog.Resolve(_record.Environment);
            var environment = new EnvironmentStore(_options).Inspect(spec);
            if (!environment.Installed)
            {
                throw new EnvironmentException("environment_unavailable", $"environment {spec.Name} is {environment.State.Replace('_', ' ')} in the cache; run 'pyro env pull {spec.Name}'");
            }

            var bundle = await RuntimeBundle.EnsureAsync(_options, null, CancellationToken.None);
            var accelerator = KvmProbe.Detect().Choose(_options.Accelerator).Chosen;
            _store.SetAccelerator(id, accelerator.ToString().ToLowerInvariant());
            vm = await QemuVm.StartAsync(id, new VmSpec(_record.VcpuCount, _record.MemMib, accelerator), environment.RootfsImage, bundle, _options,
                CancellationToken.None, directory);
        }
        catch (Exception ex)
        {
            _store.SetState(id, WorkspaceStates.Failed, $"the VM did not start: {ex.Message}");
            await Console.Error.WriteLineAsync("pyro-supervisor: " + ex);
            return 1;
        }

        var socketPath = Path.Combine(directory, SocketName);
        File.Delete(socketPath);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        File.SetUnixFileMode(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        listener.Listen(64);
        _store.SetState(id, startingState == WorkspaceStates.Resetting ? WorkspaceStates.Resetting : WorkspaceStates.Running, null, Environment.ProcessId);
        _ = AcceptLoopAsync(listener, vm.Agent);

        var ttl = _record.ExpiresAt - DateTimeOffset.UtcNow;
        var expired = Task.Delay(ttl > TimeSpan.Zero ? ttl : TimeSpan.Zero);
        var exited = vm.Exited;
        Log($"running: qemu pid {vm.QemuPid}, accelerator {vm.Accelerator}, expires {_record.ExpiresAt:O}");
        var ended = await Task.WhenAny(_stop.Task, exited, expired);
        Log(ended == exited ? $"QEMU exited (code {vm.ExitCode})" : ended == expired ? "TTL ran out" : _stop.Task.Result);
        listener.Close();
        foreach (var client in _clients.Keys)
        {
            await client.DisposeAsync();
        }

        if (ended == exited)
        {
            // QEMU went away under us (killed, crashed): the disk stays; the user decides.
            var reason = $"QEMU exited unexpectedly (exit code {vm.ExitCode}); the disk is kept: 'pyro workspace start {id}' boots it again, 'pyro workspace delete {id}' removes it";
            _store.SetState(id, WorkspaceStates.Crashed, reason);
            await vm.DisposeAsync();
        }
        else
        {
            // A clean power-off flushes the guest's file systems to the disk we keep.
            await vm.DisposeAsync();
            if (ended == expired)
            {
                Directory.Delete(directory, recursive: true);
                _store.Delete(id);
            }
            else
            {
                _store.SetState(id, WorkspaceStates.Stopped, _stop.Task.Result);
            }
        }

        File.Delete(socketPath);
        return 0;
    }

    /// <summary>PYRO_CLIENT_STALL_SECONDS overrides how long a client may leave its output unread.</summary>
    private static TimeSpan? StallTimeout()
        => int.TryParse(Environment.GetEnvironmentVariable("PYRO_CLIENT_STALL_SECONDS"), System.Globalization.CultureInfo.InvariantCulture, out var seconds) && seconds > 0
            ? TimeSpan.FromSeconds(seconds)
            : null;

    internal static void Log(string message) => Console.Error.WriteLine($"{DateTimeOffset.UtcNow:O} pyro-supervisor: {message}");

    private async Task AcceptLoopAsync(Socket listener, GuestAgentClient agent)
    {
        while (true)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync();
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return;
            }

            var session = new ClientSession(new NetworkStream(socket, ownsSocket: true), agent, reason => _stop.TrySetResult(reason), StallTimeout());
            _clients[session] = 0;
            session.Start(Forget);
        }
    }

    private void Forget(ClientSession session) => _clients.TryRemove(session, out _);
}

/// <summary>
/// One connected client of a supervisor: its requests are relayed to the agent under fresh
/// stream ids. What the guest sends it waits in bounded buffers, never in the channel's reader;
/// a client that stops reading for <see cref="StallTimeout"/> is cut off and its operations are
/// cancelled in the guest, so it can delay nobody else.
/// </summary>
internal sealed class ClientSession : IAsyncDisposable
{
    /// <summary>How long a client may leave a frame unread before it is cut off.</summary>
    internal static readonly TimeSpan DefaultStallTimeout = TimeSpan.FromSeconds(20);

    private readonly FrameConnection _connection;
    private readonly GuestAgentClient _agent;
    private readonly Action<string> _stop;
    private readonly ConcurrentDictionary<uint, Channel<Frame>> _streams = new();
    private readonly CancellationTokenSource _gone = new();

    internal ClientSession(Stream stream, GuestAgentClient agent, Action<string> stop, TimeSpan? stallTimeout = null)
    {
        _agent = agent;
        _stop = stop;
        StallTimeout = stallTimeout ?? DefaultStallTimeout;
        _connection = new FrameConnection(stream, OnFrameAsync);
    }

    internal TimeSpan StallTimeout { get; }

    /// <summary>Completes with the reason the client connection ended (cut off included).</summary>
    internal Task<Exception> Closed => _connection.Closed;

    internal FrameConnection Connection => _connection;

    internal void Start(Action<ClientSession>? onClosed = null)
    {
        _connection.Start();
        _ = _connection.Closed.ContinueWith(_ =>
        {
            // A client that disconnects (or is cut off) cancels what it left running.
            _gone.Cancel();
            onClosed?.Invoke(this);
        }, TaskScheduler.Default);
    }

    private async ValueTask OnFrameAsync(Frame frame, CancellationToken cancellationToken)
    {
        switch (frame.Type)
        {
            case FrameType.Request:
                var request = ProtocolJsonContext.Decode<AgentRequest>(frame.Payload);
                if (request.Op is WorkspaceSupervisor.StopOp or WorkspaceSupervisor.PingOp)
                {
                    await _connection.SendAsync(new Frame(frame.StreamId, FrameType.Result, ProtocolJsonContext.Encode(new AgentResponse())), cancellationToken);
                    if (request.Op == WorkspaceSupervisor.StopOp)
                    {
                        _stop("stopped on request");
                    }

                    return;
                }

                var upstream = Channel.CreateBounded<Frame>(16);
                if (!_streams.TryAdd(frame.StreamId, upstream))
                {
                    throw new ProtocolViolationException($"stream {frame.StreamId} is already open");
                }

                _ = RelayAsync(frame, request, upstream);
                return;
            case FrameType.Stdin or FrameType.StdinEnd or FrameType.Cancel:
                if (_streams.TryGetValue(frame.StreamId, out var target))
                {
                    try
                    {
                        await target.Writer.WriteAsync(frame, cancellationToken);
                    }
                    catch (ChannelClosedException)
                    {
                    }
                }

                return;
            default:
                throw new ProtocolViolationException($"client sent a {frame.Type} frame");
        }
    }

    /// <summary>Hands one frame to the client's writer; a client that takes no frame for <see cref="StallTimeout"/> is cut off.</summary>
    private async ValueTask ToClientAsync(Frame frame, CancellationToken cancellationToken)
    {
        using var stall = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        stall.CancelAfter(StallTimeout);
        try
        {
            await _connection.SendAsync(frame, stall.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            var reason = new TimeoutException($"the client read nothing for {StallTimeout.TotalSeconds:0.#} s and was cut off; its operations were cancelled");
            if (_connection.IsOpen)
            {
                WorkspaceSupervisor.Log(reason.Message);
            }

            _connection.Abort(reason);
            throw;
        }
    }

    private async Task RelayAsync(Frame frame, AgentRequest request, Channel<Frame> upstream)
    {
        try
        {
            await _agent.RelayAsync(request, frame.Payload, upstream.Reader,
                (reply, token) => ToClientAsync(reply with { StreamId = frame.StreamId }, token), _gone.Token);
        }
        catch (Exception ex) when (ex is PyroException or IOException or OperationCanceledException)
        {
            if (_connection.IsOpen)
            {
                try
                {
                    var error = new AgentError(ex is PyroException p ? p.Code : "relay_failed", ex.Message);
                    await ToClientAsync(new Frame(frame.StreamId, FrameType.Error, ProtocolJsonContext.Encode(error)), _gone.Token);
                }
                catch (Exception late) when (late is IOException or OperationCanceledException)
                {
                }
            }
        }
        finally
        {
            _streams.TryRemove(frame.StreamId, out _);
            upstream.Writer.TryComplete();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _gone.Cancel();
        await _connection.DisposeAsync();
    }
}
