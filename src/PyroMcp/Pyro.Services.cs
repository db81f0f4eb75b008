using PyroMcp.Workspaces;

namespace PyroMcp;

public sealed partial class Pyro
{
    /// <summary>
    /// Starts a long-running process in a workspace and waits until its readiness probe passes.
    /// A service that is not ready in time, or exits first, is stopped (its whole process group)
    /// and the call fails with the probe's last result and the end of its logs. Ports in
    /// <see cref="ServiceStartRequest.Publish"/> follow the service: released when it stops, exits or fails.
    /// </summary>
    /// <exception cref="PyroInputException"><c>service_name_invalid</c>, <c>service_exists</c>, <c>service_limit</c>, <c>readiness_invalid</c>, <c>cwd_not_found</c>, <c>port_*</c>, <c>publish_not_allowed</c>.</exception>
    /// <exception cref="GuestOperationException"><c>service_not_ready</c>, <c>service_exited</c>.</exception>
    public Task<WorkspaceService> StartServiceAsync(string workspace, ServiceStartRequest request, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.StartServiceAsync(workspace, request, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>The workspace's services, running or not.</summary>
    public Task<WorkspaceServiceList> ListServicesAsync(string workspace, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ListServicesAsync(workspace, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>One service.</summary>
    /// <exception cref="PyroInputException"><c>service_not_found</c>.</exception>
    public Task<WorkspaceService> GetServiceAsync(string workspace, string name, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.GetServiceAsync(workspace, name, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>The last <paramref name="tailLines"/> lines (1 to 5,000) of a service's stdout and stderr.</summary>
    public Task<WorkspaceServiceLogs> GetServiceLogsAsync(string workspace, string name, int tailLines = 200, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.GetServiceLogsAsync(workspace, name, tailLines, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>Stops a service: TERM to its process group, KILL after a grace period; its published ports are released.</summary>
    public Task<WorkspaceService> StopServiceAsync(string workspace, string name, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.StopServiceAsync(workspace, name, cancellationToken), WorkspaceManager.Redacted);
}
