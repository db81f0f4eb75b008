namespace PyroMcp.TestKit;

/// <summary>The SDK pointed at this run's scratch directories and the built agent and supervisor.</summary>
internal static class PyroScratch
{
    internal static PyroOptions Options => new()
    {
        AgentPath = Repo.AgentPath,
        RunDir = Repo.RunDir,
        StateDir = Repo.StateDir,
        SupervisorPath = Repo.SupervisorPath,
    };

    /// <summary>Deletes workspaces a test created, ignoring those already gone: cleanup after the test, not a check.</summary>
    internal static async Task DeleteWorkspacesAsync(IEnumerable<string> ids, PyroOptions? options = null)
    {
        var pyro = new Pyro(options ?? Options);
        foreach (var id in ids)
        {
            try
            {
                await pyro.DeleteWorkspaceAsync(id);
            }
            catch (PyroException)
            {
            }
        }
    }
}
