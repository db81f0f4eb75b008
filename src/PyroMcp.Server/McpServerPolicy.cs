namespace PyroMcp.Server;

/// <summary>
/// What the operator who started the server lets its client do. The model calling the tools is
/// untrusted, so nothing a tool argument says can widen this: host execution and host paths are
/// the operator's choice, made on the <c>pyro mcp serve</c> command line.
/// </summary>
public sealed record McpServerPolicy
{
    /// <summary>
    /// Whether a tool call may ask for host compatibility mode (<c>allow_host_compat</c>): running
    /// a command on the host, without isolation, when this host cannot boot any guest. Off by
    /// default; a call that asks for it gets the tool error <c>host_compat_disabled</c>.
    /// </summary>
    public bool AllowHostCompat { get; init; }

    /// <summary>
    /// Host directories that <c>seed_path</c>, <c>source_path</c> and <c>output_path</c> may name.
    /// Default: the server's working directory (the project the chat host opened).
    /// </summary>
    public IReadOnlyList<string> AllowedPaths { get; init; } = [Environment.CurrentDirectory];

    /// <summary>
    /// The most network a tool call may give a guest (<c>network</c>, <c>network_policy</c>). Default
    /// <see cref="NetworkPolicy.EgressPublishedPorts"/>: everything, since no policy lets a guest reach
    /// the host; an operator who wants sandboxes without egress sets <see cref="NetworkPolicy.Off"/>.
    /// A call that asks for more gets the tool error <c>network_policy_not_allowed</c>.
    /// </summary>
    public NetworkPolicy MaxNetworkPolicy { get; init; } = NetworkPolicy.EgressPublishedPorts;
}
