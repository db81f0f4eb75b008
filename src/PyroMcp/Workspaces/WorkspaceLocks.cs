using PyroMcp.Host;

namespace PyroMcp.Workspaces;

/// <summary>
/// The two advisory locks of a workspace, files under <c>STATE/locks/</c> (outside the workspace
/// directory, so they exist before it and outlive its removal). flock locks die with their
/// process, so a lock nobody holds means its holder is gone, kill -9 included.
/// <list type="bullet">
/// <item><b>operation</b> (<c>ID.op</c>): held by whoever drives a state in progress (creating,
/// starting, stopping, resetting, deleting) or takes a snapshot. Operations on one workspace take
/// turns on it; a state in progress whose lock is free was abandoned, and the next call repairs it.</item>
/// <item><b>supervisor</b> (<c>ID.supervisor</c>): held by the workspace's supervisor for its whole
/// life. A second supervisor cannot take it and exits, so there is never more than one; whether
/// it is held is how everyone else tells that the supervisor lives.</item>
/// </list>
/// </summary>
internal static class WorkspaceLocks
{
    internal static string Directory(string stateDir) => Path.Combine(stateDir, "locks");

    internal static string OperationPath(string stateDir, string id) => Path.Combine(Directory(stateDir), id + ".op");

    internal static string SupervisorPath(string stateDir, string id) => Path.Combine(Directory(stateDir), id + ".supervisor");

    /// <summary>Waits for the workspace's operation lock: operations on one workspace take turns.</summary>
    internal static async Task<FileLock> OperationAsync(string stateDir, string id, CancellationToken cancellationToken)
    {
        PrivateDirectory.Ensure(Directory(stateDir));
        return await FileLock.AcquireAsync(OperationPath(stateDir, id), cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The operation lock if nobody holds it now, else null.</summary>
    internal static FileLock? TryOperation(string stateDir, string id)
    {
        PrivateDirectory.Ensure(Directory(stateDir));
        return FileLock.TryAcquire(OperationPath(stateDir, id));
    }

    /// <summary>Whether a live process holds the supervisor lock of the workspace.</summary>
    internal static bool SupervisorHeld(string stateDir, string id)
        => FileLock.IsHeld(SupervisorPath(stateDir, id));

    /// <summary>Removes both lock files of a workspace that is gone (its row deleted).</summary>
    internal static void Remove(string stateDir, string id)
    {
        File.Delete(OperationPath(stateDir, id));
        File.Delete(SupervisorPath(stateDir, id));
    }
}
