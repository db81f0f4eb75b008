using PyroMcp.Workspaces;

// pyro-supervisor --state-dir DIR --workspace ID [--start cold|warm|image:DIR]
// Started detached by the SDK (never by hand); see docs/architecture.md.
var (stateDir, workspaceId, start) = args switch
{
    ["--state-dir", var d, "--workspace", var w] => (d, w, WorkspaceSupervisor.StartCold),
    ["--state-dir", var d, "--workspace", var w, "--start", var s] => (d, w, s),
    _ => (null, null, null),
};
if (stateDir is null || workspaceId is null || start is null
    || !(start is WorkspaceSupervisor.StartCold or WorkspaceSupervisor.StartWarm || start.StartsWith(WorkspaceSupervisor.StartImagePrefix, StringComparison.Ordinal)))
{
    Console.Error.WriteLine("usage: pyro-supervisor --state-dir DIR --workspace ID [--start cold|warm|image:DIR]");
    return 2;
}

return await WorkspaceSupervisor.RunAsync(stateDir, workspaceId, start);
