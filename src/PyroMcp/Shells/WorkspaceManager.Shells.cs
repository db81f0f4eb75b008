namespace PyroMcp.Workspaces;

internal sealed partial class WorkspaceManager
{
    internal Task<WorkspaceShell> OpenShellAsync(string idOrName, ShellOpenRequest request, CancellationToken cancellationToken) => throw new NotImplementedException();
    internal Task<WorkspaceShell> WriteShellAsync(string idOrName, string shellId, string input, bool appendNewline, CancellationToken cancellationToken) => throw new NotImplementedException();
    internal Task<ShellReadResult> ReadShellAsync(string idOrName, string shellId, long cursor, int maxChars, bool plain, CancellationToken cancellationToken) => throw new NotImplementedException();
    internal Task<WorkspaceShell> SignalShellAsync(string idOrName, string shellId, string signal, CancellationToken cancellationToken) => throw new NotImplementedException();
    internal Task<WorkspaceShell> CloseShellAsync(string idOrName, string shellId, CancellationToken cancellationToken) => throw new NotImplementedException();
    internal Task<IReadOnlyList<WorkspaceShell>> ListShellsAsync(string idOrName, CancellationToken cancellationToken) => throw new NotImplementedException();
}
