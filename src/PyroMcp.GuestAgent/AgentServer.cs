using System.Collections.Concurrent;
using System.Reflection;
using System.Threading.Channels;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent;

/// <summary>Serves host requests: each request frame opens a stream that runs on its own task.</summary>
internal sealed class AgentServer : IAsyncDisposable
{
    private readonly FrameConnection _connection;
    private readonly AgentOptions _options;
    private readonly ConcurrentDictionary<uint, Operation> _operations = new();
    private readonly TaskCompletionSource _shutdown = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal AgentServer(Stream port, AgentOptions options)
    {
        _options = options;
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
            case FrameType.Stdin or FrameType.StdinEnd or FrameType.Cancel:
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
                AgentOps.Hello => new AgentResponse { Hello = Hello(request.Hello ?? new HelloRequest()) },
                AgentOps.Exec => new AgentResponse
                {
                    Exec = await new ExecRunner(_connection, streamId, _options, operation).RunAsync(
                        request.Exec ?? throw new AgentFailure("bad_request", "exec needs an exec body")),
                },
                AgentOps.Shutdown => new AgentResponse(),
                _ => throw new AgentFailure("unknown_op", $"unknown operation '{request.Op}'"),
            };
            await _connection.SendAsync(new Frame(streamId, FrameType.Result, ProtocolJsonContext.Encode(response)));
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
            operation.Cancel.Dispose();
        }
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

    private static HelloReply Hello(HelloRequest hello)
    {
        var clockError = hello.UnixTimeMs > 0 ? Interop.SetClock(hello.UnixTimeMs) : null;
        return new HelloReply
        {
            AgentVersion = typeof(AgentServer).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown",
            KernelRelease = ReadOrEmpty("/proc/sys/kernel/osrelease").Trim(),
            OsPrettyName = ReadOsPrettyName(),
            ClockError = clockError,
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

    public ValueTask DisposeAsync() => _connection.DisposeAsync();
}

/// <summary>The agent's bookkeeping for one open stream.</summary>
internal sealed class Operation
{
    internal Channel<ReadOnlyMemory<byte>> Stdin { get; } = Channel.CreateBounded<ReadOnlyMemory<byte>>(16);
    internal CancellationTokenSource Cancel { get; } = new();
}

/// <summary>A request that failed in a way the host should be told about by code.</summary>
internal sealed class AgentFailure(string code, string message) : Exception(message)
{
    internal string Code { get; } = code;
}
