using PyroMcp.Workspaces;

// pyro-supervisor --state-dir DIR --workspace ID
// Started detached by the SDK (never by hand); see docs/architecture.md.
if (args is not ["--state-dir", var stateDir, "--workspace", var workspaceId])
{
    Console.Error.WriteLine("usage: pyro-supervisor --state-dir DIR --workspace ID");
    return 2;
}

return await WorkspaceSupervisor.RunAsync(stateDir, workspaceId);
