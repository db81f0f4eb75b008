using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Text.Json;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace PyroMcp.Server;

/// <summary>The shell tools (workspace-full): interactive shells on a real PTY in the guest.</summary>
public sealed partial class PyroTools
{
    private const string ShellIdParameter = "Shell id, as returned by shell_open.";

    /// <summary>Largest shell_read answer: the agent's own bound (<c>ShellRequest.MaxReadChars</c>).</summary>
    internal const int MaxReadChars = 262144;

    /// <summary>shell_open.</summary>
    [McpServerTool(Name = "shell_open", OpenWorld = false)]
    [Description("""
        Opens an interactive shell on a real terminal (PTY) in a workspace. It keeps its state between calls (current
        directory, variables, a program left running such as a REPL or a debugger) until shell_close or the workspace
        stops. Type with shell_write, then read the output with shell_read from a cursor. Returns shell_id.
        """ + "\n" + WhichTool)]
    public Task<CallToolResult> ShellOpen(
        [Description(WorkspaceId)] string workspace_id,
        [Description("Working directory; relative paths are under /workspace.")] string cwd = "/workspace",
        [Description("Terminal width, 10 to 1000."), Range(10, 1000)] int cols = 120,
        [Description("Terminal height, 5 to 1000."), Range(5, 1000)] int rows = 30,
        [Description(SecretEnvParameter)] JsonElement? secret_env = null,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var request = new ShellOpenRequest
            {
                Cwd = cwd,
                Cols = CheckRange(cols, 10, 1000, "cols", "shell_size_invalid"),
                Rows = CheckRange(rows, 5, 1000, "rows", "shell_size_invalid"),
                SecretEnv = ParseSecretEnv(secret_env),
            };
            var shell = await _pyro.OpenShellAsync(workspace_id, request, cancellationToken).ConfigureAwait(false);
            return Ok(Json(shell, PyroJsonContext.Default.WorkspaceShell), $"shell {shell.ShellId} is {shell.State} in {shell.Cwd} ({shell.Cols}x{shell.Rows}); read from cursor 0");
        });

    /// <summary>shell_write.</summary>
    [McpServerTool(Name = "shell_write", OpenWorld = false)]
    [Description("""
        Types text into a shell, as a user at its terminal would, and presses Enter unless append_newline is false. It
        does not wait for the command: call shell_read (with the cursor from the last read) to see what it printed.
        Returns the shell and output_chars, the cursor its next output will have.
        """)]
    public Task<CallToolResult> ShellWrite(
        [Description(WorkspaceId)] string workspace_id,
        [Description(ShellIdParameter)] string shell_id,
        [Description("The text to type, at most 64 KiB. To interrupt a program use shell_signal rather than typing control characters.")] string input,
        [Description("Press Enter after the text.")] bool append_newline = true,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var shell = await _pyro.WriteShellAsync(workspace_id, shell_id, input, append_newline, cancellationToken).ConfigureAwait(false);
            return Ok(Json(shell, PyroJsonContext.Default.WorkspaceShell), $"typed into shell {shell.ShellId} ({shell.State}); output_chars={shell.OutputChars}");
        });

    /// <summary>shell_read.</summary>
    [McpServerTool(Name = "shell_read", ReadOnly = true, Idempotent = true, OpenWorld = false)]
    [Description("""
        Reads a shell's output from cursor (0 = the start), at most max_chars characters. Pass the returned next_cursor
        to the next read to get only what is new; truncated true means more is already waiting. dropped_chars counts
        output that had left the shell's buffer before it was read. With plain (default) terminal escape sequences are
        removed. Output of a program still running keeps coming: read again after a moment.
        """)]
    public Task<CallToolResult> ShellRead(
        [Description(WorkspaceId)] string workspace_id,
        [Description(ShellIdParameter)] string shell_id,
        [Description("Where to read from: 0, or next_cursor of the last read."), Range(0, long.MaxValue)] long cursor = 0,
        [Description("Characters to return at most, 1 to 262144."), Range(1, MaxReadChars)] int max_chars = 65536,
        [Description("Remove terminal escape sequences (colors, cursor moves).")] bool plain = true,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            if (cursor < 0)
            {
                throw new ToolError("invalid_cursor", $"cursor must be 0 or a next_cursor returned by shell_read (got {cursor})");
            }

            CheckRange(max_chars, 1, MaxReadChars, "max_chars", "invalid_max_chars");
            var read = await _pyro.ReadShellAsync(workspace_id, shell_id, cursor, max_chars, plain, cancellationToken).ConfigureAwait(false);
            var summary = $"shell {read.Shell.ShellId} is {read.Shell.State}; {read.Output.Length} chars from cursor {read.Cursor}, next_cursor={read.NextCursor}"
                + (read.Truncated ? "; truncated: more output is waiting, read again from next_cursor" : "")
                + (read.DroppedChars > 0 ? $"; {read.DroppedChars} older chars were dropped before this read" : "");
            return Ok(Json(read, PyroJsonContext.Default.ShellReadResult), summary, detail: read.Output.Length == 0 ? null : "---\n" + read.Output);
        });

    /// <summary>shell_signal.</summary>
    [McpServerTool(Name = "shell_signal", OpenWorld = false)]
    [Description("Sends a signal to the shell's foreground job, as a terminal does: INT is Ctrl-C (stops a command that hangs), TSTP is Ctrl-Z. The shell itself stays open.")]
    public Task<CallToolResult> ShellSignal(
        [Description(WorkspaceId)] string workspace_id,
        [Description(ShellIdParameter)] string shell_id,
        [Description("INT, TERM, HUP, KILL, QUIT, TSTP, CONT, USR1 or USR2.")] string signal_name = "INT",
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var shell = await _pyro.SignalShellAsync(workspace_id, shell_id, signal_name, cancellationToken).ConfigureAwait(false);
            return Ok(Json(shell, PyroJsonContext.Default.WorkspaceShell), $"sent {Shown(signal_name)} to shell {shell.ShellId} ({shell.State})");
        });

    /// <summary>shell_close.</summary>
    [McpServerTool(Name = "shell_close", Destructive = true, Idempotent = true, OpenWorld = false)]
    [Description("Closes a shell and ends everything running in it. Close shells you no longer need: a workspace holds only a few.")]
    public Task<CallToolResult> ShellClose(
        [Description(WorkspaceId)] string workspace_id,
        [Description(ShellIdParameter)] string shell_id,
        CancellationToken cancellationToken = default)
        => Guard(async () =>
        {
            var shell = await _pyro.CloseShellAsync(workspace_id, shell_id, cancellationToken).ConfigureAwait(false);
            return Ok(Json(shell, PyroJsonContext.Default.WorkspaceShell), $"shell {shell.ShellId} is {shell.State}");
        });
}
