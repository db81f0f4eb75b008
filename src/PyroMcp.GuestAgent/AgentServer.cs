using System.Collections.Concurrent;
using System.Reflection;
using System.Threading.Channels;
using PyroMcp.GuestAgent.Services;
using PyroMcp.GuestAgent.Shells;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent;

/// <summary>Serves host requests: each request frame opens a stream that runs on its own task.</summary>
internal sealed class AgentServer : IAsyncDisposable
{
    private readonly FrameConnection _connection;
    private readonly AgentOptions _options;
    private readonly WorkspacePaths _workspace;
    private readonly ConcurrentDictionary<uint, Operation> _operations = new();
    private readonly TaskCompletionSource _shutdown = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ServiceManager _services;
    private readonly ShellManager _shells;
    private readonly Secrets.GuestSecrets _secrets;

    internal AgentServer(Stream port, AgentOptions options)
    {
        _options = options;
        _workspace = new WorkspacePaths(options.WorkspaceRoot);
        _secrets = new Secrets.GuestSecrets(options);
        _services = new ServiceManager(options, _workspace, _secrets);
        _shells = new ShellManager(options, _workspace, _secrets);
        _connection = new FrameConnection(port, OnFrameAsync);
    }

    internal async Task RunAsync()
    {
        _connection.Start();
        var closed = await Task.WhenAny(_connection.Closed, _shutdown.Task);
        if (closed == _shutdown.Task)
        {
            // Let the writer flush the shutdown reply before the power goes.
            await Task.Delay(100);
            Interop.Reboot();
        }
        else
        {
            await Console.Error.WriteLineAsync("pyro-agent: channel closed: " + _connection.Closed.Result.Message);
        }
    }

    private ValueTask OnFrameAsync(Frame frame, CancellationToken cancellationToken)
    {
        switch (frame.Type)
        {
            case FrameType.Request:
                var request = ProtocolJsonContext.Decode<AgentRequest>(frame.Payload);
                var operation = new Operation();
                if (!_operations.TryAdd(frame.StreamId, operation))
                {
                    throw new ProtocolViolationException($"stream {frame.StreamId} is already open");
                }

                _ = Task.Run(() => HandleAsync(frame.StreamId, request, operation), CancellationToken.None);
                return ValueTask.CompletedTask;
            case FrameType.Stdin when _operations.TryGetValue(frame.StreamId, out var target):
                return target.Stdin.Writer.WriteAsync(frame.Payload, cancellationToken);
            case FrameType.StdinEnd when _operations.TryGetValue(frame.StreamId, out var target):
                target.Stdin.Writer.TryComplete();
                return ValueTask.CompletedTask;
            case FrameType.Cancel when _operations.TryGetValue(frame.StreamId, out var target):
                target.Cancel.Cancel();
                return ValueTask.CompletedTask;
            case FrameType.Ack when _operations.TryGetValue(frame.StreamId, out var target):
                target.Window.Grant(frame.Payload.Length == sizeof(uint) ? System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(frame.Payload.Span) : 0);
                return ValueTask.CompletedTask;
            case FrameType.Stdin or FrameType.StdinEnd or FrameType.Cancel or FrameType.Ack:
                // The operation finished while the frame was in flight.
                return ValueTask.CompletedTask;
            default:
                throw new ProtocolViolationException($"host sent a {frame.Type} frame");
        }
    }

    private async Task HandleAsync(uint streamId, AgentRequest request, Operation operation)
    {
        try
        {
            AgentResponse response = request.Op switch
            {
                AgentOps.Hello => new AgentResponse { Hello = Hello(request.Hello ?? new HelloRequest(), _options.SetsidPath) },
                AgentOps.Exec => new AgentResponse
                {
                    Exec = await new ExecRunner(_connection, streamId, _options, operation, _secrets).RunAsync(
                        request.Exec ?? throw new AgentFailure("bad_request", "exec needs an exec body")),
                },
                AgentOps.Shutdown => await StopEverythingAsync(),
                AgentOps.FilesList => new AgentResponse { Listing = Files(streamId, operation).List(FilesBody(request)) },
                AgentOps.FilesRead => new AgentResponse { File = await Files(streamId, operation).ReadAsync(FilesBody(request), request.Windowed) },
                AgentOps.FilesWrite => new AgentResponse { File = await Files(streamId, operation).WriteAsync(FilesBody(request)) },
                AgentOps.FilesDelete => new AgentResponse { File = Files(streamId, operation).Delete(FilesBody(request)) },
                AgentOps.TarOut => new AgentResponse { Tar = await Tar(streamId, operation).PackAsync(TarBody(request), request.Windowed) },
                AgentOps.TarIn => new AgentResponse { Tar = await Tar(streamId, operation).ExtractAsync(TarBody(request)) },
                AgentOps.Sync => Sync(),
                AgentOps.TcpConnect => new AgentResponse { Tcp = await new TcpTunnel(_connection, streamId, operation).RunAsync(request.Tcp ?? throw new AgentFailure("bad_request", "tcp.connect needs a tcp body")) },
                AgentOps.ServiceStart => new AgentResponse { Service = await _services.StartAsync(ServiceBody(request), operation.Cancel.Token) },
                AgentOps.ServiceList => new AgentResponse { Services = _services.List() },
                AgentOps.ServiceStatus => new AgentResponse { Service = _services.Status(ServiceBody(request)) },
                AgentOps.ServiceLogs => new AgentResponse { ServiceLogs = _services.Logs(ServiceBody(request)) },
                AgentOps.ServiceStop => new AgentResponse { Service = await _services.StopAsync(ServiceBody(request)) },
                AgentOps.ShellOpen => new AgentResponse { Shell = _shells.Open(ShellBody(request)) },
                AgentOps.ShellWrite => new AgentResponse { Shell = await _shells.WriteAsync(ShellBody(request), operation.Cancel.Token) },
                AgentOps.ShellRead => new AgentResponse { ShellOutput = _shells.Read(ShellBody(request)) },
                AgentOps.ShellSignal => new AgentResponse { Shell = _shells.Signal(ShellBody(request)) },
                AgentOps.ShellClose => new AgentResponse { Shell = await _shells.CloseAsync(ShellBody(request)) },
                AgentOps.ShellList => new AgentResponse { Shells = _shells.List() },
                AgentOps.SecretsPut => SecretsPut(request),
                _ => throw new AgentFailure("unknown_op", $"unknown operation '{request.Op}'"),
            };
            var payload = ProtocolJsonContext.Encode(response);
            if (payload.Length > FrameCodec.MaxPayloadLength)
            {
                // Sending it would make the writer loop abort the whole channel.
                throw new AgentFailure("response_too_large", $"the reply to {request.Op} is {payload.Length} bytes, over the frame limit; ask for less (a subdirectory, or not recursive)");
            }

            await _connection.SendAsync(new Frame(streamId, FrameType.Result, payload));
            if (request.Op == AgentOps.Shutdown)
            {
                _shutdown.TrySetResult();
            }
        }
        catch (AgentFailure failure)
        {
            await TrySendErrorAsync(streamId, failure.Code, failure.Message);
        }
        catch (Exception ex) when (_connection.IsOpen)
        {
            await TrySendErrorAsync(streamId, "agent_error", ex.GetType().Name + ": " + ex.Message);
        }
        catch (Exception)
        {
            // The channel is gone; nobody is left to tell.
        }
        finally
        {
            _operations.TryRemove(streamId, out _);

            // The read loop may be parked writing into this operation's full stdin queue (an
            // operation that failed before reading its input); left there, it would stall every
            // stream. Once the operation is out of the table at most that one write is in flight,
            // and emptying the queue lets it finish. Completing the queue instead would fail that
            // write and abort the channel.
            while (operation.Stdin.Reader.TryRead(out _))
            {
            }

            operation.Cancel.Dispose();
        }
    }

    private FileOps Files(uint streamId, Operation operation) => new(_connection, streamId, _workspace, operation);

    private TarOps Tar(uint streamId, Operation operation) => new(_connection, streamId, _workspace, operation);

    private static FilesRequest FilesBody(AgentRequest request)
        => request.Files ?? throw new AgentFailure("bad_request", $"{request.Op} needs a files body");

    private static TarRequest TarBody(AgentRequest request)
        => request.Tar ?? throw new AgentFailure("bad_request", $"{request.Op} needs a tar body");

    private static ServiceRequest ServiceBody(AgentRequest request)
        => request.Service ?? throw new AgentFailure("bad_request", $"{request.Op} needs a service body");

    private static ShellRequest ShellBody(AgentRequest request)
        => request.Shell ?? throw new AgentFailure("bad_request", $"{request.Op} needs a shell body");

    /// <summary>Services and shells end before the guest powers off, so their ends are on record.</summary>
    private async Task<AgentResponse> StopEverythingAsync()
    {
        await Task.WhenAll(_services.StopAllAsync("the workspace was stopped"), _shells.CloseAllAsync());
        return new AgentResponse();
    }

    private AgentResponse SecretsPut(AgentRequest request)
    {
        try
        {
            _secrets.Put(request.Secrets);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The message names the file system problem, never a value.
            throw new AgentFailure("secret_store_failed", $"cannot write the secrets under {_secrets.Directory}: {ex.GetType().Name}");
        }

        return new AgentResponse();
    }

    private static AgentResponse Sync()
    {
        Interop.Sync();
        return new AgentResponse();
    }

    private async Task TrySendErrorAsync(uint streamId, string code, string message)
    {
        try
        {
            await _connection.SendAsync(new Frame(streamId, FrameType.Error, ProtocolJsonContext.Encode(new AgentError(code, message))));
        }
        catch (IOException)
        {
        }
    }

    private static HelloReply Hello(HelloRequest hello, string busybox)
    {
        // Read first: the uptime stands for the moment hello is answered, not after the clock set.
        var uptime = BootClock.UptimeMs();
        var clockError = hello.UnixTimeMs > 0 ? Interop.SetClock(hello.UnixTimeMs) : null;
        if (hello.Resume is { } resume)
        {
            Resume.Apply(resume, busybox);
        }

        return new HelloReply
        {
            AgentVersion = typeof(AgentServer).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown",
            KernelRelease = ReadOrEmpty("/proc/sys/kernel/osrelease").Trim(),
            OsPrettyName = ReadOsPrettyName(),
            ClockError = clockError,
            Network = ReadNetwork(),
            UptimeMs = uptime,
            InitStartMs = BootClock.ProcessStartMs("1"),
            AgentStartMs = BootClock.ProcessStartMs("self"),
            Resumed = hello.Resume is not null,
        };
    }

    /// <summary>
    /// The lease the initramfs recorded (src/PyroMcp/Runtime/init.sh writes /run/pyro/network as
    /// key=value lines); null when the guest was booted without a network device.
    /// </summary>
    private static GuestNetworkReply? ReadNetwork()
    {
        const string path = "/run/pyro/network";
        if (!File.Exists(path))
        {
            return null;
        }

        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in File.ReadAllText(path).Split('\n'))
        {
            var eq = line.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                values[line[..eq].Trim()] = line[(eq + 1)..].Trim().Trim('"');
            }
        }

        return new GuestNetworkReply
        {
            Address = values.GetValueOrDefault("address"),
            PrefixLength = int.TryParse(values.GetValueOrDefault("prefix"), out var prefix) ? prefix : 0,
            Gateway = values.GetValueOrDefault("gateway") is { Length: > 0 } gateway ? gateway : null,
            Dns = values.GetValueOrDefault("dns")?.Split(' ', StringSplitOptions.RemoveEmptyEntries),
            Error = values.GetValueOrDefault("error"),
        };
    }

    private static string? ReadOsPrettyName()
    {
        foreach (var line in ReadOrEmpty("/etc/os-release").Split('\n'))
        {
            if (line.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))
            {
                return line["PRETTY_NAME=".Length..].Trim('"');
            }
        }

        return null;
    }

    private static string ReadOrEmpty(string path) => File.Exists(path) ? File.ReadAllText(path) : "";

    public async ValueTask DisposeAsync()
    {
        // The processes would outlive the agent otherwise (in tests, the test host's run).
        await StopEverythingAsync();
        await _connection.DisposeAsync();
    }
}

/// <summary>The agent's bookkeeping for one open stream.</summary>
internal sealed class Operation
{
    internal Channel<ReadOnlyMemory<byte>> Stdin { get; } = Channel.CreateBounded<ReadOnlyMemory<byte>>(16);
    internal CancellationTokenSource Cancel { get; } = new();
    internal SendWindow Window { get; } = new(TcpConnectRequest.WindowBytes);
}

/// <summary>A request that failed in a way the host should be told about by code.</summary>
internal sealed class AgentFailure(string code, string message) : Exception(message)
{
    internal string Code { get; } = code;
}
