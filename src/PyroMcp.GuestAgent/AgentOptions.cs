namespace PyroMcp.GuestAgent;

internal sealed record AgentOptions(
    string PortName,
    string SetsidPath,
    string WorkspaceRoot = AgentOptions.DefaultWorkspaceRoot,
    string ServiceStateDir = AgentOptions.DefaultServiceStateDir,
    string? SecretsDir = null)
{
    internal const string DefaultPortName = "org.pyro.agent.0";
    internal const string DefaultWorkspaceRoot = "/workspace";

    /// <summary>Service metadata and logs: outside the workspace, so neither fills nor leaks into it.</summary>
    internal const string DefaultServiceStateDir = "/var/lib/pyro/services";

    /// <summary>Where secrets are materialized when <see cref="SecretsDir"/> is null; a tmpfs is mounted there.</summary>
    internal const string DefaultSecretsDir = "/run/pyro-secrets";

    internal static AgentOptions Parse(string[] args)
    {
        var port = DefaultPortName;
        var setsid = "/run/pyro/busybox";
        var workspace = DefaultWorkspaceRoot;
        var serviceState = DefaultServiceStateDir;
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--port": port = args[i + 1]; break;
                case "--busybox": setsid = args[i + 1]; break;
                case "--workspace-root": workspace = args[i + 1]; break;
                case "--service-state-dir": serviceState = args[i + 1]; break;
                default: throw new ArgumentException($"unknown option {args[i]}");
            }
        }

        return new AgentOptions(port, setsid, workspace, serviceState);
    }
}
