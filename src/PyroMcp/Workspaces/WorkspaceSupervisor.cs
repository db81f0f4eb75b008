using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Networking;
using PyroMcp.Protocol;
using PyroMcp.Runtime;
using PyroMcp.Templates;
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
    internal const string PublishOp = "supervisor.publish";
    internal const string UnpublishOp = "supervisor.unpublish";
    /// <summary>Releases every port that follows the service named in the port body.</summary>
    internal const string ReleaseServiceOp = "supervisor.release-service";
    /// <summary>
    /// Pauses the guest, saves it into the workspace's <see cref="ForkImageDir"/> (memory and a
    /// copy of the disk taken at that instant), and runs it again: the image forks start from.
    /// </summary>
    internal const string SaveOp = "supervisor.save";
    internal const string ForkImageDir = "fork-image";

    /// <summary>How often the supervisor looks whether services that own ports still run.</summary>
    private static readonly TimeSpan ServiceWatchInterval = TimeSpan.FromSeconds(1);
    internal const string SocketName = "supervisor.sock";

    private readonly WorkspaceStore _store;
    private readonly WorkspaceRecord _record;
    private readonly PyroOptions _options;
    private readonly TaskCompletionSource<string> _stop = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentDictionary<ClientSession, byte> _clients = new();
    // One port change at a time, so the list written to the store is always the latest.
    private readonly SemaphoreSlim _portChanges = new(1, 1);
    private readonly SemaphoreSlim _saves = new(1, 1);
    private readonly string _start;
    private PortTable? _ports;
    private QemuVm? _vm;

    private WorkspaceSupervisor(WorkspaceStore store, WorkspaceRecord record, PyroOptions options, string start)
    {
        _store = store;
        _record = record;
        _options = options;
        _start = start;
    }

    /// <summary>How a supervisor starts its VM: booted from its disk, restored from the environment's template, or restored from a fork image.</summary>
    internal const string StartCold = "cold";
    internal const string StartWarm = "warm";
    internal const string StartImagePrefix = "image:";

    /// <summary>The supervisor program's whole life. Returns its exit code: 0 after a clean end, 1 when the VM did not boot, 3 when the workspace is not this supervisor's to run.</summary>
    internal static async Task<int> RunAsync(string stateDir, string workspaceId, string start = StartCold)
    {
        var options = new PyroOptions { StateDir = stateDir };
        var store = new WorkspaceStore(stateDir);
        if (store.Find(workspaceId) is null)
        {
            await Console.Error.WriteLineAsync($"pyro-supervisor: no workspace {workspaceId}").ConfigureAwait(false);
            return 2;
        }

        // One supervisor per workspace: the lock is held for this process's whole life. Another
        // process may hold it for a moment to see whether a supervisor lives, hence the retries.
        PrivateDirectory.Ensure(WorkspaceLocks.Directory(stateDir));
        FileLock? held = null;
        for (var i = 0; i < 50 && held is null; i++)
        {
            held = FileLock.TryAcquire(WorkspaceLocks.SupervisorPath(stateDir, workspaceId));
            if (held is null)
            {
                await Task.Delay(100).ConfigureAwait(false);
            }
        }

        if (held is null)
        {
            Log($"another supervisor owns workspace {workspaceId}; leaving it alone");
            return 3;
        }

        using (held)
        {
            if (!store.RegisterSupervisor(workspaceId, Environment.ProcessId))
            {
                Log($"workspace {workspaceId} is not waiting for a supervisor (its state moved on); leaving");
                return 3;
            }

            FaultPoint.Hit("supervisor.after-register");
            return await new WorkspaceSupervisor(store, store.Get(workspaceId), options, start).ServeAsync().ConfigureAwait(false);
        }
    }

    private async Task<int> ServeAsync()
    {
        var id = _record.Id;
        var directory = _store.WorkspaceDir(id);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; _stop.TrySetResult("stopped by SIGTERM"); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; _stop.TrySetResult("stopped by SIGINT"); });
        var socketPath = Path.Combine(directory, SocketName);
        File.Delete(socketPath);

        QemuVm vm;
        VmStartInfo started;
        try
        {
            var spec = EnvironmentCatalog.Resolve(_record.Environment, _options);
            var environment = new EnvironmentStore(_options).Inspect(spec);
            if (!environment.Installed)
            {
                throw new EnvironmentException("environment_unavailable", $"environment {spec.Name} is {environment.State.Replace('_', ' ')} in the cache; pull it again");
            }

            var bundle = await RuntimeBundle.EnsureAsync(_options, null, CancellationToken.None).ConfigureAwait(false);
            var accelerator = KvmProbe.Detect().Choose(_options.Accelerator).Chosen;
            _store.SetAccelerator(id, accelerator.ToString().ToLowerInvariant());
            var vmSpec = new VmSpec(_record.VcpuCount, _record.MemMib, accelerator);
            if (_start.StartsWith(StartImagePrefix, StringComparison.Ordinal))
            {
                // A fork: the source's memory and disk, made this workspace's by the resume.
                var image = ForkImage(_start[StartImagePrefix.Length..]);
                vm = await QemuVm.StartAsync(id, vmSpec, environment.RootfsImage, bundle, _options, CancellationToken.None, directory, _record.NetworkPolicy, image).ConfigureAwait(false);
                started = new VmStartInfo(VmStartInfo.Fork, null, false);
            }
            else if (_start == StartWarm)
            {
                (vm, started) = await VmStarter.StartAsync(id, vmSpec, environment, bundle, _options, _record.NetworkPolicy, cold: false, null, "workspace-create", CancellationToken.None, directory).ConfigureAwait(false);
            }
            else
            {
                vm = await QemuVm.StartAsync(id, vmSpec, environment.RootfsImage, bundle, _options, CancellationToken.None, directory, _record.NetworkPolicy).ConfigureAwait(false);
                started = new VmStartInfo(VmStartInfo.Cold, null, false);
            }

            Log($"VM up ({started.Mode}{(started.ColdReason is { } why ? ": " + why : "")}) in {vm.ReadyMs} ms");
            await PutSecretsAsync(vm, directory).ConfigureAwait(false);
            _vm = vm;
        }
        catch (Exception ex)
        {
            // Whoever launched us reads this and moves the state; a supervisor never decides how a start ends.
            // The error may quote the guest's console: the row and the log get it with secrets redacted.
            var redactor = Secrets.SecretStore.Redactor(directory);
            _store.SetSupervisorError(id, Environment.ProcessId, $"the VM did not start: {redactor.Redact(ex.Message)}");
            await Console.Error.WriteLineAsync("pyro-supervisor: " + redactor.Redact(ex.ToString())).ConfigureAwait(false);
            return 1;
        }

        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        File.SetUnixFileMode(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        listener.Listen(64);
        // Published ports are this process's listeners: they close when it ends, however it ends.
        _ports = _record.NetworkPolicy.AllowsPublishing() ? new PortTable(vm.Agent) : null;
        _ = AcceptLoopAsync(listener, vm.Agent);
        using var watching = new CancellationTokenSource();
        var watcher = _ports is null ? Task.CompletedTask : WatchServicePortsAsync(vm.Agent, watching.Token);
        var hasNetwork = _record.NetworkPolicy.HasEgress();
        _store.MarkBooted(id, Environment.ProcessId, Networking.GuestLease.Read(vm.Guest.Network), Networking.GuestLease.Problem(vm.Guest.Network, hasNetwork),
            started.Mode, started.ColdReason);
        FaultPoint.Hit("supervisor.after-boot");

        var ttl = _record.ExpiresAt - DateTimeOffset.UtcNow;
        var expired = Task.Delay(ttl > TimeSpan.Zero ? ttl : TimeSpan.Zero);
        var exited = vm.Exited;
        Log($"running: qemu pid {vm.QemuPid}, accelerator {vm.Accelerator}, expires {_record.ExpiresAt:O}");
        var ended = await Task.WhenAny(_stop.Task, exited, expired).ConfigureAwait(false);
        FileLock? operation = null;
        if (ended == expired)
        {
            // The TTL deletes the workspace, which is an operation like any other: it waits for the
            // one under way (a create finishing, a snapshot), unless a stop comes first.
            var locked = WorkspaceLocks.OperationAsync(_store.StateDir, id, CancellationToken.None);
            if (await Task.WhenAny(locked, _stop.Task, exited).ConfigureAwait(false) == locked)
            {
                operation = await locked.ConfigureAwait(false);
            }
            else
            {
                ended = exited.IsCompleted ? exited : _stop.Task;
                _ = locked.ContinueWith(t => t.Result.Dispose(), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
            }
        }

        Log(ended == exited ? $"QEMU exited (code {vm.ExitCode})" : ended == expired ? "TTL ran out" : _stop.Task.Result);
        listener.Close();
        await watching.CancelAsync().ConfigureAwait(false);
        await watcher.ConfigureAwait(false);
        if (_ports is not null)
        {
            await _ports.DisposeAsync().ConfigureAwait(false);
        }

        foreach (var client in _clients.Keys)
        {
            await client.DisposeAsync().ConfigureAwait(false);
        }

        if (ended == exited)
        {
            // QEMU went away under us (killed, crashed): the disk stays; the user decides. An
            // operation under way (create, reset, stop) sees its VM gone and ends as it must.
            _store.TryMove(id, WorkspaceTransition.Crash, WorkspaceState.Running,
                $"QEMU exited unexpectedly (exit code {vm.ExitCode}); the disk is kept: start it to boot it again, or delete it");
            await vm.DisposeAsync().ConfigureAwait(false);
        }
        else if (ended == expired)
        {
            using (operation)
            {
                if (_store.Find(id) is { } record && (record.State == WorkspaceState.Deleting
                        || _store.TryMove(id, WorkspaceTransition.DeleteBegins, record.State, "its TTL ran out")))
                {
                    FaultPoint.Hit("ttl.after-begin");
                    vm.DiscardOnDispose = true;
                    await vm.DisposeAsync().ConfigureAwait(false);
                    Directory.Delete(directory, recursive: true);
                    _store.Delete(id);
                    WorkspaceLocks.Remove(_store.StateDir, id);
                    return 0;
                }
            }

            await vm.DisposeAsync().ConfigureAwait(false);
        }
        else
        {
            // A clean power-off that loses no write: flush, power off, and only then kill.
            var clean = await vm.PowerOffAsync(SupervisorLauncher.StopGrace - TimeSpan.FromSeconds(10)).ConfigureAwait(false);
            Log(clean ? "the guest flushed its file systems and powered off" : "the guest did not power off in time; QEMU is killed");
            await vm.DisposeAsync().ConfigureAwait(false);
            if (_stop.Task.Result != StoppedOnRequest)
            {
                // A signal (host shutdown), not a stop call: nobody else will record the stop.
                _store.TryMove(id, WorkspaceTransition.SupervisorStopped, WorkspaceState.Running, _stop.Task.Result);
            }
        }

        File.Delete(socketPath);
        return 0;
    }

    internal const string StoppedOnRequest = "stopped on request";

    /// <summary>
    /// Gives the guest its secrets after every boot (create, start, reset), before any client is
    /// let in: from the workspace's 0600 store over the agent's channel, never through arguments
    /// or the environment of a process. A guest that cannot take them does not count as started.
    /// </summary>
    private static async Task PutSecretsAsync(QemuVm vm, string directory)
    {
        var secrets = Secrets.SecretStore.Read(directory);
        if (secrets.Count == 0)
        {
            return;
        }

        try
        {
            await vm.Agent.CallAsync(new AgentRequest { Op = AgentOps.SecretsPut, Secrets = secrets }, null, null, CancellationToken.None).ConfigureAwait(false);
        }
        catch
        {
            await vm.DisposeAsync().ConfigureAwait(false);
            throw;
        }
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
                socket = await listener.AcceptAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return;
            }

            var session = new ClientSession(new NetworkStream(socket, ownsSocket: true), agent, reason => _stop.TrySetResult(reason), StallTimeout(), SupervisorOpAsync);
            _clients[session] = 0;
            session.Start(Forget);
        }
    }

    private void Forget(ClientSession session) => _clients.TryRemove(session, out _);

    private Task<AgentResponse> SupervisorOpAsync(AgentRequest request)
        => request.Op == SaveOp ? SaveForkImageAsync() : PortsAsync(request);

    /// <summary>
    /// The fork image of a fork in progress: only ever a directory in a workspace directory of
    /// this state directory, made by the SDK's fork (which holds the source's operation lock).
    /// </summary>
    private SavedVm ForkImage(string directory)
    {
        var full = Path.GetFullPath(directory);
        var workspaces = Path.GetFullPath(Path.Combine(_store.StateDir, "workspaces")) + "/";
        if (!full.StartsWith(workspaces, StringComparison.Ordinal) || Path.GetFileName(full) != ForkImageDir)
        {
            throw new PyroInputException("bad_fork_image", $"a fork image must be a workspace's {ForkImageDir} directory, not {directory}");
        }

        PrivateDirectory.Verify(full);
        return new SavedVm(Path.Combine(full, QemuVm.MemoryFileName), Path.Combine(full, QemuVm.DiskFileName), null, null);
    }

    /// <summary>Saves the running guest for forks (see <see cref="SaveOp"/>); the guest runs again whatever happens.</summary>
    private async Task<AgentResponse> SaveForkImageAsync()
    {
        var vm = _vm ?? throw new WorkspaceStateException("workspace_not_running", $"workspace {_record.Id} has no VM to save");
        await _saves.WaitAsync().ConfigureAwait(false);
        try
        {
            var directory = Path.Combine(_store.WorkspaceDir(_record.Id), ForkImageDir);
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }

            PrivateDirectory.Ensure(directory);
            using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(5));
            var clock = System.Diagnostics.Stopwatch.StartNew();
            try
            {
                await vm.SaveAsync(directory, limit.Token).ConfigureAwait(false);
            }
            finally
            {
                using var resume = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                await vm.ContinueAsync(resume.Token).ConfigureAwait(false);
            }

            Log($"saved a fork image in {clock.ElapsedMilliseconds} ms");
            return new AgentResponse();
        }
        finally
        {
            _saves.Release();
        }
    }

    /// <summary>Publishes or unpublishes a port, then records the ports this process now holds.</summary>
    private async Task<AgentResponse> PortsAsync(AgentRequest request)
    {
        if (_ports is null)
        {
            throw WorkspaceManager.PublishNotAllowed(_record);
        }

        var mapping = request.Port ?? throw new PyroInputException("bad_request", $"{request.Op} needs a port body");
        await _portChanges.WaitAsync().ConfigureAwait(false);
        try
        {
            PublishedPort? published = null;
            if (request.Op == PublishOp)
            {
                PortPublication.CheckGuestPort(mapping.GuestPort);
                var host = mapping.HostPort == 0 ? (int?)null : mapping.HostPort;
                PortPublication.CheckHostPort(host);
                published = _ports.Publish(host, mapping.GuestPort, mapping.Service);
                Log($"published {published}{(mapping.Service is null ? "" : $" for service {mapping.Service}")}");
            }
            else if (request.Op == ReleaseServiceOp)
            {
                foreach (var port in _ports.PortsOf(mapping.Service ?? ""))
                {
                    await _ports.UnpublishAsync(port).ConfigureAwait(false);
                    Log($"released host port {port} of service {mapping.Service}");
                }
            }
            else if (!await _ports.UnpublishAsync(mapping.HostPort).ConfigureAwait(false))
            {
                throw new PyroInputException("port_not_published", $"host port {mapping.HostPort} is not published by workspace {_record.Id}");
            }

            var ports = _ports.List();
            _store.SetPublishedPorts(_record.Id, Environment.ProcessId, ports);
            // A publish answers with the new port first, then the others.
            var ordered = published is null ? ports : [published, .. ports.Where(p => p.HostPort != published.HostPort)];
            return new AgentResponse { Ports = [.. ordered.Select(p => new PortMapping { HostPort = p.HostPort, GuestPort = p.GuestPort, Service = p.Service })] };
        }
        finally
        {
            _portChanges.Release();
        }
    }

    /// <summary>
    /// Ports follow their service: once a service that owns ports is no longer starting or running
    /// (it exited, failed, was stopped from inside the guest), its ports are released.
    /// </summary>
    private async Task WatchServicePortsAsync(GuestAgentClient agent, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(ServiceWatchInterval, cancellationToken).ConfigureAwait(false);
                if (_ports is null || _ports.Owners() is not { Count: > 0 } owners)
                {
                    continue;
                }

                using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                limit.CancelAfter(TimeSpan.FromSeconds(10));
                var response = await agent.CallAsync(new AgentRequest { Op = AgentOps.ServiceList }, null, null, limit.Token).ConfigureAwait(false);
                var live = (response.Services ?? []).Where(s => s.State is "running" or "starting").Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
                foreach (var owner in owners.Where(o => !live.Contains(o)))
                {
                    await PortsAsync(new AgentRequest { Op = ReleaseServiceOp, Port = new PortMapping { Service = owner } }).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is PyroException or IOException or OperationCanceledException or ObjectDisposedException or System.Net.Sockets.SocketException)
            {
                // A guest that does not answer keeps its ports until it does, or until the VM ends.
                // The message may quote the guest: the log gets it with the workspace's secrets redacted.
                Log($"service port watch: {Secrets.SecretStore.Redactor(_store.WorkspaceDir(_record.Id)).Redact(ex.Message)}");
            }
        }
    }
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
    private readonly Func<AgentRequest, Task<AgentResponse>>? _portOps;
    private readonly ConcurrentDictionary<uint, Channel<Frame>> _streams = new();
    private readonly CancellationTokenSource _gone = new();

    internal ClientSession(Stream stream, GuestAgentClient agent, Action<string> stop, TimeSpan? stallTimeout = null,
        Func<AgentRequest, Task<AgentResponse>>? portOps = null)
    {
        _agent = agent;
        _stop = stop;
        _portOps = portOps;
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
                    await _connection.SendAsync(new Frame(frame.StreamId, FrameType.Result, ProtocolJsonContext.Encode(new AgentResponse())), cancellationToken).ConfigureAwait(false);
                    if (request.Op == WorkspaceSupervisor.StopOp)
                    {
                        _stop(WorkspaceSupervisor.StoppedOnRequest);
                    }

                    return;
                }

                if (request.Op is WorkspaceSupervisor.PublishOp or WorkspaceSupervisor.UnpublishOp or WorkspaceSupervisor.ReleaseServiceOp or WorkspaceSupervisor.SaveOp)
                {
                    _ = AnswerPortsAsync(frame.StreamId, request);
                    return;
                }

                var upstream = Channel.CreateBounded<Frame>(16);
                if (!_streams.TryAdd(frame.StreamId, upstream))
                {
                    throw new ProtocolViolationException($"stream {frame.StreamId} is already open");
                }

                _ = RelayAsync(frame, request, upstream);
                return;
            case FrameType.Stdin or FrameType.StdinEnd or FrameType.Cancel or FrameType.Ack:
                // Acks pass through to the guest: the client's reading paces a windowed stream.
                if (_streams.TryGetValue(frame.StreamId, out var target))
                {
                    try
                    {
                        await target.Writer.WriteAsync(frame, cancellationToken).ConfigureAwait(false);
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
            await _connection.SendAsync(frame, stall.Token).ConfigureAwait(false);
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
                (reply, token) => ToClientAsync(reply with { StreamId = frame.StreamId }, token), _gone.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is PyroException or IOException or OperationCanceledException)
        {
            if (_connection.IsOpen)
            {
                try
                {
                    var error = new AgentError(ex is PyroException p ? p.Code : "relay_failed", ex.Message);
                    await ToClientAsync(new Frame(frame.StreamId, FrameType.Error, ProtocolJsonContext.Encode(error)), _gone.Token).ConfigureAwait(false);
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

    private async Task AnswerPortsAsync(uint streamId, AgentRequest request)
    {
        Frame reply;
        try
        {
            var response = _portOps is null
                ? throw new PyroInputException("publish_not_allowed", "this supervisor publishes no ports")
                : await _portOps(request).ConfigureAwait(false);
            reply = new Frame(streamId, FrameType.Result, ProtocolJsonContext.Encode(response));
        }
        catch (Exception ex) when (ex is PyroException or IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
        {
            var error = new AgentError(ex is PyroException p ? p.Code : "port_failed", ex.Message);
            reply = new Frame(streamId, FrameType.Error, ProtocolJsonContext.Encode(error));
        }

        try
        {
            await ToClientAsync(reply, _gone.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        _gone.Cancel();
        await _connection.DisposeAsync().ConfigureAwait(false);
    }
}
