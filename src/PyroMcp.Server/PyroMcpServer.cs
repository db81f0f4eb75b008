using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using ModelContextProtocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace PyroMcp.Server;

/// <summary>
/// pyro as an MCP server: the SDK's operations as tools, grouped in profiles. stdout carries
/// nothing but the protocol; diagnostics go to stderr.
/// </summary>
public static class PyroMcpServer
{
    /// <summary>Only <c>vm_run</c> and <c>vm_list_environments</c>: one-shot commands in throwaway VMs.</summary>
    public const string VmRunProfile = "vm-run";

    /// <summary>The default: <c>vm_run</c> plus the workspace tools a coding agent uses every day.</summary>
    public const string WorkspaceCoreProfile = "workspace-core";

    /// <summary>Every tool: workspaces, snapshots, stop/start, and VM lifecycle tools.</summary>
    public const string WorkspaceFullProfile = "workspace-full";

    /// <summary>The profiles <c>pyro mcp serve --profile</c> accepts, default first.</summary>
    public static IReadOnlyList<string> Profiles { get; } = [WorkspaceCoreProfile, VmRunProfile, WorkspaceFullProfile];

    private static readonly string[] VmRunTools = ["vm_run", "vm_list_environments"];

    private static readonly string[] WorkspaceCoreTools =
    [
        "vm_run", "workspace_create", "workspace_list", "workspace_status", "workspace_exec", "workspace_logs",
        "workspace_sync_push", "workspace_file_list", "workspace_file_read", "workspace_file_write",
        "workspace_patch_apply", "workspace_diff", "workspace_export", "workspace_reset", "workspace_delete",
    ];

    /// <summary>The tool names a profile offers. Throws <see cref="ArgumentException"/> for an unknown profile.</summary>
    public static IReadOnlyList<string> ToolNames(string profile) => profile switch
    {
        VmRunProfile => VmRunTools,
        WorkspaceCoreProfile => WorkspaceCoreTools,
        WorkspaceFullProfile => AllTools().Select(t => t.Name).ToList(),
        _ => throw new ArgumentException($"unknown MCP profile '{profile}': use {string.Join(", ", Profiles)}", nameof(profile)),
    };

    /// <summary>Serves MCP on this process's stdin and stdout until the client disconnects or <paramref name="cancellationToken"/> fires.</summary>
    /// <param name="profile">One of <see cref="Profiles"/>.</param>
    /// <param name="options">Where pyro keeps its files; defaults and environment variables otherwise.</param>
    /// <param name="policy">What the client may do on the host; by default no host execution and host paths only under the working directory.</param>
    /// <param name="cancellationToken">Ends the server.</param>
    public static async Task RunStdioAsync(string profile, PyroOptions? options = null, McpServerPolicy? policy = null, CancellationToken cancellationToken = default)
    {
        using var logging = StderrLoggerFactory();
        var mcpOptions = CreateOptions(profile, new Pyro(options), policy ?? new McpServerPolicy());
        var transport = new StdioServerTransport(mcpOptions, logging);
        await using var transportScope = transport.ConfigureAwait(false);
        var server = McpServer.Create(transport, mcpOptions, logging);
        await using var serverScope = server.ConfigureAwait(false);
        await server.RunAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Serves MCP over arbitrary streams (for example pipes to an in-process client) until the input ends or <paramref name="cancellationToken"/> fires.</summary>
    /// <param name="input">Where client messages arrive.</param>
    /// <param name="output">Where server messages go.</param>
    /// <param name="profile">One of <see cref="Profiles"/>.</param>
    /// <param name="options">Where pyro keeps its files.</param>
    /// <param name="policy">What the client may do on the host; by default no host execution and host paths only under the working directory.</param>
    /// <param name="loggerFactory">Diagnostics; none by default.</param>
    /// <param name="cancellationToken">Ends the server.</param>
    public static async Task RunAsync(Stream input, Stream output, string profile, PyroOptions? options = null, McpServerPolicy? policy = null, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        var mcpOptions = CreateOptions(profile, new Pyro(options), policy ?? new McpServerPolicy());
        var transport = new StreamServerTransport(input, output, mcpOptions.ServerInfo?.Name, loggerFactory);
        await using var transportScope = transport.ConfigureAwait(false);
        var server = McpServer.Create(transport, mcpOptions, loggerFactory ?? NullLoggerFactory.Instance);
        await using var serverScope = server.ConfigureAwait(false);
        await server.RunAsync(cancellationToken).ConfigureAwait(false);
    }

    internal static McpServerOptions CreateOptions(string profile, Pyro pyro, McpServerPolicy policy)
    {
        var names = ToolNames(profile).ToHashSet(StringComparer.Ordinal);
        var target = new PyroTools(pyro, policy);
        var tools = new McpServerPrimitiveCollection<McpServerTool>();
        foreach (var (name, method) in AllTools().Where(t => names.Contains(t.Name)))
        {
            tools.Add(McpServerTool.Create(method, target, new McpServerToolCreateOptions { SerializerOptions = ToolSerializerOptions }));
        }

        return new McpServerOptions
        {
            ServerInfo = new Implementation { Name = "pyro", Version = Pyro.CatalogVersion },
            ServerInstructions = Instructions,
            ToolCollection = tools,
        };
    }

    private const string Instructions = """
        pyro runs commands in disposable microVMs: each VM is a real virtual machine with its own Linux
        kernel, not a container and not the host. For one command use vm_run. For work that spans
        many calls create a workspace (workspace_create, optionally seeded from a host directory),
        then exec, read, write and patch files inside /workspace, look at workspace_diff, and delete
        the workspace when done. Guests have no network. Host paths (seed_path, source_path,
        output_path) must lie inside the directories the operator allowed (by default the project
        directory the server was started in); anything else is refused with path_not_allowed.
        """;

    /// <summary>Source-generated JSON for the tools' parameters and results, then the MCP SDK's own types.</summary>
    internal static readonly JsonSerializerOptions ToolSerializerOptions = new(McpJsonUtilities.DefaultOptions)
    {
        TypeInfoResolver = JsonTypeInfoResolver.Combine(JsonContext.Default, McpJsonUtilities.DefaultOptions.TypeInfoResolver),
    };

    internal static IEnumerable<(string Name, MethodInfo Method)> AllTools()
        => typeof(PyroTools).GetMethods(BindingFlags.Public | BindingFlags.Instance)
            .Select(m => (Attribute: m.GetCustomAttribute<McpServerToolAttribute>(), Method: m))
            .Where(t => t.Attribute?.Name is not null)
            .Select(t => (t.Attribute!.Name!, t.Method));

    private static ILoggerFactory StderrLoggerFactory() => new StderrLoggerFactory();
}

/// <summary>Writes warnings and errors to stderr, the only place an MCP stdio server may talk freely.</summary>
internal sealed class StderrLoggerFactory : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => new StderrLogger(categoryName);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    private sealed class StderrLogger(string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                Console.Error.WriteLine($"pyro mcp: {logLevel.ToString().ToLowerInvariant()}: {category}: {formatter(state, exception)}{(exception is null ? "" : " " + exception.Message)}");
            }
        }
    }
}
