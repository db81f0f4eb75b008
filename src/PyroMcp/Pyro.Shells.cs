using PyroMcp.Workspaces;

namespace PyroMcp;

public sealed partial class Pyro
{
    /// <summary>
    /// Opens an interactive shell on a real PTY in the guest. It keeps its state (directory,
    /// variables, a running program) between calls until it is closed or the workspace stops.
    /// </summary>
    /// <exception cref="PyroInputException"><c>shell_limit</c>, <c>cwd_not_found</c>, <c>shell_size_invalid</c>.</exception>
    public Task<WorkspaceShell> OpenShellAsync(string workspace, ShellOpenRequest? request = null, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.OpenShellAsync(workspace, request ?? new ShellOpenRequest(), cancellationToken), WorkspaceManager.Redacted);

    /// <summary>Types <paramref name="input"/> into a shell (at most 64 KiB), with a newline after it unless <paramref name="appendNewline"/> is false.</summary>
    /// <exception cref="PyroInputException"><c>shell_not_found</c>, <c>shell_closed</c>, <c>shell_input_too_large</c>.</exception>
    public Task<WorkspaceShell> WriteShellAsync(string workspace, string shellId, string input, bool appendNewline = true, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.WriteShellAsync(workspace, shellId, input, appendNewline, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>
    /// Reads a shell's output from <paramref name="cursor"/>, at most <paramref name="maxChars"/>
    /// characters; pass the result's <see cref="ShellReadResult.NextCursor"/> next time. With
    /// <paramref name="plain"/>, terminal escape sequences are removed.
    /// </summary>
    public Task<ShellReadResult> ReadShellAsync(string workspace, string shellId, long cursor = 0, int maxChars = 65536, bool plain = false, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ReadShellAsync(workspace, shellId, cursor, maxChars, plain, cancellationToken));

    /// <summary>Sends a signal (INT, TERM, HUP, KILL, QUIT, TSTP, CONT, USR1, USR2) to the shell's foreground job, as a terminal's Ctrl-C does.</summary>
    /// <exception cref="PyroInputException"><c>signal_invalid</c>, <c>shell_not_found</c>.</exception>
    public Task<WorkspaceShell> SignalShellAsync(string workspace, string shellId, string signal = "INT", CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.SignalShellAsync(workspace, shellId, signal, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>Closes a shell and everything running in it.</summary>
    public Task<WorkspaceShell> CloseShellAsync(string workspace, string shellId, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.CloseShellAsync(workspace, shellId, cancellationToken), WorkspaceManager.Redacted);

    /// <summary>The workspace's open shells.</summary>
    public Task<IReadOnlyList<WorkspaceShell>> ListShellsAsync(string workspace, CancellationToken cancellationToken = default)
        => Workspaces.GuardAsync(workspace, () => Workspaces.ListShellsAsync(workspace, cancellationToken), WorkspaceManager.Redacted);
}
