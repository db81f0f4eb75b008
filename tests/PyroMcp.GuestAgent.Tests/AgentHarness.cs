using System.Collections.Concurrent;
using System.Formats.Tar;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent.Tests;

/// <summary>The reply to one request: the result or the error, and the Stdout bytes before it.</summary>
internal sealed record Reply(AgentResponse? Response, AgentError? Error, byte[] Stdout)
{
    internal AgentResponse Ok => Response ?? throw new Xunit.Sdk.XunitException($"expected a result, got error {Error?.Code}: {Error?.Message}");

    internal string FailureCode => Error?.Code ?? throw new Xunit.Sdk.XunitException("expected an error, got a result");
}

/// <summary>
/// A real <see cref="AgentServer"/> over an in-memory channel, serving a temp directory as its
/// workspace root. Next to the root are an <c>outside</c> directory and a separate temp
/// directory for absolute paths: both must stay empty whatever the requests do.
/// </summary>
internal sealed class AgentHarness : IAsyncDisposable
{
    private const int ChunkSize = 64 * 1024;
    private readonly DuplexPipe _pipe = new();
    private readonly AgentServer _server;
    private readonly Task _serving;
    private readonly FrameConnection _host;
    private readonly ConcurrentDictionary<uint, PendingCall> _calls = new();
    private uint _nextStream;

    /// <param name="busybox">The busybox the agent starts commands with (services and shells need a real one).</param>
    /// <param name="prepareStateDir">Fills the service state dir before the agent starts, as a previous boot would have.</param>
    internal AgentHarness(string busybox = "/bin/false", Action<string>? prepareStateDir = null)
    {
        Base = Directory.CreateTempSubdirectory("pyro-agent-test-").FullName;
        Root = Directory.CreateDirectory(Path.Combine(Base, "ws")).FullName;
        Outside = Directory.CreateDirectory(Path.Combine(Base, "outside")).FullName;
        Elsewhere = Directory.CreateTempSubdirectory("pyro-agent-elsewhere-").FullName;
        StateDir = Directory.CreateTempSubdirectory("pyro-agent-state-").FullName;
        SecretsDir = Path.Combine(Base, "secrets");
        prepareStateDir?.Invoke(StateDir);
        _server = new AgentServer(_pipe.Guest, new AgentOptions("test", busybox, Root, StateDir, SecretsDir));
        _serving = _server.RunAsync();
        _host = new FrameConnection(_pipe.Host, OnFrameAsync);
        _host.Start();
    }

    /// <summary>Holds <see cref="Root"/> and <see cref="Outside"/>.</summary>
    internal string Base { get; }

    /// <summary>The agent's service state dir, away from <see cref="Base"/>.</summary>
    internal string StateDir { get; }

    /// <summary>Where the agent materializes secrets (a plain directory here; a tmpfs in a guest).</summary>
    internal string SecretsDir { get; }

    /// <summary>The workspace root the agent serves.</summary>
    internal string Root { get; }

    /// <summary>A sibling of the root.</summary>
    internal string Outside { get; }

    /// <summary>A temp directory away from <see cref="Base"/>, the target of absolute names.</summary>
    internal string Elsewhere { get; }

    internal string InRoot(string relative) => Path.Combine(Root, relative);

    internal async Task<Reply> CallAsync(AgentRequest request, byte[]? stdin = null)
    {
        var (_, done) = await BeginAsync(request, stdin);
        return await done.WaitAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>Sends a request and returns its stream (to cancel it) and its reply to come.</summary>
    internal async Task<(uint StreamId, Task<Reply> Done)> BeginAsync(AgentRequest request, byte[]? stdin = null)
    {
        var streamId = Interlocked.Increment(ref _nextStream);
        var call = new PendingCall();
        _calls[streamId] = call;
        await _host.SendAsync(new Frame(streamId, FrameType.Request, ProtocolJsonContext.Encode(request)));
        if (stdin is not null)
        {
            for (var offset = 0; offset < stdin.Length; offset += ChunkSize)
            {
                var chunk = stdin.AsSpan(offset, Math.Min(ChunkSize, stdin.Length - offset)).ToArray();
                await _host.SendAsync(new Frame(streamId, FrameType.Stdin, chunk));
            }

            await _host.SendAsync(new Frame(streamId, FrameType.StdinEnd, ReadOnlyMemory<byte>.Empty));
        }

        return (streamId, call.Done.Task);
    }

    /// <summary>Cancels a request as a host whose caller went away does.</summary>
    internal async Task CancelAsync(uint streamId)
        => await _host.SendAsync(new Frame(streamId, FrameType.Cancel, ReadOnlyMemory<byte>.Empty));

    internal Task<Reply> FilesAsync(string op, FilesRequest files, byte[]? stdin = null)
        => CallAsync(new AgentRequest { Op = op, Files = files }, stdin);

    internal Task<Reply> ServiceAsync(string op, ServiceRequest service)
        => CallAsync(new AgentRequest { Op = op, Service = service });

    internal Task<Reply> ShellAsync(string op, ShellRequest shell)
        => CallAsync(new AgentRequest { Op = op, Shell = shell });

    internal Task<Reply> TarAsync(string op, TarRequest tar, byte[]? stdin = null)
        => CallAsync(new AgentRequest { Op = op, Tar = tar }, stdin);

    /// <summary>Every name under <see cref="Outside"/> and <see cref="Elsewhere"/>, and anything new next to them.</summary>
    internal IReadOnlyList<string> EscapedEntries()
    {
        var escaped = new List<string>();
        escaped.AddRange(Directory.GetFileSystemEntries(Outside, "*", SearchOption.AllDirectories));
        escaped.AddRange(Directory.GetFileSystemEntries(Elsewhere, "*", SearchOption.AllDirectories));
        escaped.AddRange(Directory.GetFileSystemEntries(Base).Where(p => p != Root && p != Outside));
        return escaped;
    }

    internal static byte[] Tar(params TarEntry[] entries)
    {
        var buffer = new MemoryStream();
        using (var writer = new TarWriter(buffer, TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach (var entry in entries)
            {
                writer.WriteEntry(entry);
            }
        }

        return buffer.ToArray();
    }

    internal static PaxTarEntry FileEntry(string name, string content, UnixFileMode mode = (UnixFileMode)0x1A4)
        => new(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(content)), Mode = mode };

    internal static PaxTarEntry LinkEntry(TarEntryType type, string name, string target)
        => new(type, name) { LinkName = target };

    internal static List<TarEntry> ReadTar(byte[] tar)
    {
        var entries = new List<TarEntry>();
        using var reader = new TarReader(new MemoryStream(tar));
        while (reader.GetNextEntry(copyData: true) is { } entry)
        {
            entries.Add(entry);
        }

        return entries;
    }

    private ValueTask OnFrameAsync(Frame frame, CancellationToken cancellationToken)
    {
        if (!_calls.TryGetValue(frame.StreamId, out var call))
        {
            return ValueTask.CompletedTask;
        }

        switch (frame.Type)
        {
            case FrameType.Stdout:
                call.Stdout.Write(frame.Payload.Span);
                break;
            case FrameType.Result:
                call.Done.TrySetResult(new Reply(ProtocolJsonContext.Decode<AgentResponse>(frame.Payload), null, call.Stdout.ToArray()));
                break;
            case FrameType.Error:
                call.Done.TrySetResult(new Reply(null, ProtocolJsonContext.Decode<AgentError>(frame.Payload), call.Stdout.ToArray()));
                break;
        }

        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await _host.DisposeAsync();
        await _serving.WaitAsync(TimeSpan.FromSeconds(10));
        await _server.DisposeAsync();
        foreach (var directory in new[] { Base, Elsewhere, StateDir })
        {
            MakeWritable(directory);
            Directory.Delete(directory, recursive: true);
        }
    }

    private static void MakeWritable(string directory)
    {
        foreach (var sub in Directory.GetDirectories(directory, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint }))
        {
            File.SetUnixFileMode(sub, (UnixFileMode)0x1ED);
        }
    }

    private sealed class PendingCall
    {
        internal MemoryStream Stdout { get; } = new();
        internal TaskCompletionSource<Reply> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
