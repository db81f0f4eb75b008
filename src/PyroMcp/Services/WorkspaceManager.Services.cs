namespace PyroMcp.Workspaces;

internal sealed partial class WorkspaceManager
{
    internal Task<WorkspaceService> StartServiceAsync(string idOrName, ServiceStartRequest request, CancellationToken cancellationToken) => throw new NotImplementedException();
    internal Task<WorkspaceServiceList> ListServicesAsync(string idOrName, CancellationToken cancellationToken) => throw new NotImplementedException();
    internal Task<WorkspaceService> GetServiceAsync(string idOrName, string name, CancellationToken cancellationToken) => throw new NotImplementedException();
    internal Task<WorkspaceServiceLogs> GetServiceLogsAsync(string idOrName, string name, int tailLines, CancellationToken cancellationToken) => throw new NotImplementedException();
    internal Task<WorkspaceService> StopServiceAsync(string idOrName, string name, CancellationToken cancellationToken) => throw new NotImplementedException();
}
