using System.IO.Pipelines;
using System.Text.Json;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;
using PyroMcp.Server;

namespace PyroMcp.TestKit;

/// <summary>An MCP client connected to an in-process <see cref="PyroMcpServer"/> over pipes.</summary>
internal sealed class InProcessMcp : IAsyncDisposable
{
    private readonly Pipe _toServer = new();
    private readonly Pipe _toClient = new();
    private readonly CancellationTokenSource _stop = new();
    private Task _server = Task.CompletedTask;

    internal McpClient Client { get; private set; } = null!;

    /// <summary>A server on this run's scratch; by default its client may use host paths under the temp directory tests seed from.</summary>
    internal static async Task<InProcessMcp> StartAsync(string profile, McpServerPolicy? policy = null, PyroOptions? options = null)
    {
        var mcp = new InProcessMcp();
        policy ??= new McpServerPolicy { AllowedPaths = [Path.GetTempPath()] };
        mcp._server = PyroMcpServer.RunAsync(mcp._toServer.Reader.AsStream(), mcp._toClient.Writer.AsStream(), profile, options ?? PyroScratch.Options, policy, cancellationToken: mcp._stop.Token);
        mcp.Client = await McpClient.CreateAsync(new StreamClientTransport(mcp._toServer.Writer.AsStream(), mcp._toClient.Reader.AsStream()));
        return mcp;
    }

    internal async Task<CallToolResult> CallAsync(string tool, Dictionary<string, object?>? args = null, IProgress<ProgressNotificationValue>? progress = null)
    {
        if (progress is null)
        {
            return await Client.CallToolAsync(tool, args ?? []);
        }

        // The per-call progress sink of CallToolAsync is removed when the response arrives, and the
        // client dispatches notifications concurrently, so the last one (sent before the response)
        // can be dropped on our side. A session-level handler stays, and the test waits for it.
        var token = Guid.NewGuid().ToString("N");
        _ = Client.RegisterNotificationHandler(NotificationMethods.ProgressNotification, (notification, _) =>
        {
            if (notification.Params is { } p && p["progressToken"]?.GetValue<string>() == token)
            {
                progress.Report(new ProgressNotificationValue { Progress = p["progress"]!.GetValue<float>(), Message = p["message"]?.GetValue<string>() });
            }

            return ValueTask.CompletedTask;
        });
        return await Client.CallToolAsync(new CallToolRequestParams
        {
            Name = tool,
            Arguments = (args ?? []).ToDictionary(a => a.Key, a => JsonSerializer.SerializeToElement(a.Value)),
            Meta = new System.Text.Json.Nodes.JsonObject { ["progressToken"] = token },
        });
    }

    /// <summary>Calls a tool that must succeed; returns its structured content.</summary>
    internal async Task<JsonElement> OkAsync(string tool, Dictionary<string, object?>? args = null, IProgress<ProgressNotificationValue>? progress = null)
    {
        var result = await CallAsync(tool, args, progress);
        Assert.True(result.IsError != true, $"{tool} failed: {Text(result)}");
        Assert.NotNull(result.StructuredContent);
        Assert.Equal(JsonValueKind.Object, result.StructuredContent!.Value.ValueKind);
        Assert.False(string.IsNullOrWhiteSpace(Text(result)));
        return result.StructuredContent.Value;
    }

    /// <summary>Calls a tool that must fail with <paramref name="code"/>; returns the message.</summary>
    internal async Task<string> ErrorAsync(string tool, string code, Dictionary<string, object?> args)
    {
        var result = await CallAsync(tool, args);
        Assert.True(result.IsError == true, $"{tool} should have failed with {code}: {Text(result)}");
        var error = result.StructuredContent!.Value.GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.StartsWith($"error {code}: ", Text(result));
        return error.GetProperty("message").GetString()!;
    }

    internal static string Text(CallToolResult result) => string.Concat(result.Content.OfType<TextContentBlock>().Select(t => t.Text));

    public async ValueTask DisposeAsync()
    {
        await Client.DisposeAsync();
        await _toServer.Writer.CompleteAsync();
        _stop.Cancel();
        try
        {
            await _server;
        }
        catch (OperationCanceledException)
        {
        }
    }
}

/// <summary>Synchronous progress sink: <see cref="Progress{T}"/> would post and could lose the race with the assertion.</summary>
internal sealed class ProgressLog : IProgress<ProgressNotificationValue>
{
    private readonly List<ProgressNotificationValue> _values = [];

    internal IReadOnlyList<ProgressNotificationValue> Values
    {
        get
        {
            lock (_values)
            {
                return [.. _values];
            }
        }
    }

    public void Report(ProgressNotificationValue value)
    {
        lock (_values)
        {
            _values.Add(value);
        }
    }
}
