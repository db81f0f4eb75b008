using PyroMcp.Protocol;
using PyroMcp.Protocol.Secrets;
using PyroMcp.Shells;
using PyroMcp.Vmm;

namespace PyroMcp.Workspaces;

/// <summary>
/// Shells: interactive shells on PTYs the guest agent holds between calls. Each call is a short
/// request; the shell and its output ring live in the agent until it is closed or the VM stops.
/// </summary>
internal sealed partial class WorkspaceManager
{
    internal async Task<WorkspaceShell> OpenShellAsync(string idOrName, ShellOpenRequest request, CancellationToken cancellationToken)
    {
        if (request.Cols is < 10 or > 1000 || request.Rows is < 5 or > 1000)
        {
            throw new PyroInputException("shell_size_invalid", $"a shell is 10 to 1000 columns and 5 to 1000 rows (got {request.Cols}x{request.Rows})", "cols");
        }

        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var body = new ShellRequest
        {
            Cwd = GuestPath(request.Cwd),
            Cols = request.Cols,
            Rows = request.Rows,
            Env = request.Env,
            SecretEnv = SecretEnvFor(record, request.SecretEnv, request.Env, nameof(ShellOpenRequest.SecretEnv)),
        };
        var response = await SessionCallAsync(record, new AgentRequest { Op = AgentOps.ShellOpen, Shell = body }, cancellationToken).ConfigureAwait(false);
        return ToShell(record.Id, response.Shell);
    }

    internal async Task<WorkspaceShell> WriteShellAsync(string idOrName, string shellId, string input, bool appendNewline, CancellationToken cancellationToken)
    {
        CheckShellId(shellId);
        ArgumentNullException.ThrowIfNull(input);
        if (System.Text.Encoding.UTF8.GetByteCount(input) > ShellRequest.MaxInputBytes)
        {
            throw new PyroInputException("shell_input_too_large", $"shell input is limited to {ShellRequest.MaxInputBytes / 1024} KiB a call; write a longer text to a file with workspace file write and run it", "input");
        }

        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var response = await SessionCallAsync(record, new AgentRequest { Op = AgentOps.ShellWrite, Shell = new ShellRequest { Id = shellId, Input = input, AppendNewline = appendNewline } }, cancellationToken).ConfigureAwait(false);
        return ToShell(record.Id, response.Shell);
    }

    internal async Task<ShellReadResult> ReadShellAsync(string idOrName, string shellId, long cursor, int maxChars, bool plain, CancellationToken cancellationToken)
    {
        CheckShellId(shellId);
        if (cursor < 0)
        {
            throw new PyroInputException("invalid_cursor", $"the cursor is 0 or a next_cursor a read returned (got {cursor})", "cursor");
        }

        if (maxChars is < 1 or > ShellRequest.MaxReadChars)
        {
            throw new PyroInputException("invalid_max_chars", $"max_chars must be 1 to {ShellRequest.MaxReadChars} (got {maxChars})", "max_chars");
        }

        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var response = await SessionCallAsync(record, new AgentRequest { Op = AgentOps.ShellRead, Shell = new ShellRequest { Id = shellId, Cursor = cursor, MaxChars = maxChars } }, cancellationToken).ConfigureAwait(false);
        var output = response.ShellOutput ?? throw new GuestChannelException("guest_protocol", "the guest agent answered shell.read without output");
        return ToRead(record.Id, output, cursor, maxChars, plain, RedactorFor(record.Id));
    }

    /// <summary>The guest's answer to a read, held to what was asked: its numbers are claims, so the text is cut to <paramref name="maxChars"/> and the cursors only move forward.</summary>
    internal static ShellReadResult ToRead(string workspaceId, ShellOutput output, long cursor, int maxChars, bool plain, SecretRedactor? redactor = null)
    {
        redactor ??= SecretRedactor.None;
        var raw = output.Output ?? "";
        var text = raw.Length > maxChars ? raw[..maxChars] : raw;
        if (!redactor.IsEmpty && (output.Shell?.State == "running" || raw.Length > maxChars || output.Truncated))
        {
            // The end may be the first part of a value whose rest is not written yet: it is left
            // for the next read (the cursor stops before it), so a value split across reads is
            // still seen whole.
            text = text[..^redactor.HoldBack(text)];
        }

        var start = Math.Max(cursor, output.Cursor);
        var shown = redactor.Redact(text);
        return new ShellReadResult
        {
            Shell = Redacted(redactor, ToShell(workspaceId, output.Shell)),
            // Redacted again once plain: escape sequences inside a value hide it until they are stripped.
            Output = plain ? redactor.Redact(TerminalText.Plain(shown)) : shown,
            Cursor = start,
            NextCursor = start + text.Length,
            DroppedChars = Math.Clamp(output.DroppedChars, 0, start - cursor),
            Truncated = output.Truncated || raw.Length > maxChars,
            Plain = plain,
        };
    }

    internal async Task<WorkspaceShell> SignalShellAsync(string idOrName, string shellId, string signal, CancellationToken cancellationToken)
    {
        CheckShellId(shellId);
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var response = await SessionCallAsync(record, new AgentRequest { Op = AgentOps.ShellSignal, Shell = new ShellRequest { Id = shellId, Signal = signal } }, cancellationToken).ConfigureAwait(false);
        return ToShell(record.Id, response.Shell);
    }

    internal async Task<WorkspaceShell> CloseShellAsync(string idOrName, string shellId, CancellationToken cancellationToken)
    {
        CheckShellId(shellId);
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var response = await SessionCallAsync(record, new AgentRequest { Op = AgentOps.ShellClose, Shell = new ShellRequest { Id = shellId } }, cancellationToken).ConfigureAwait(false);
        return ToShell(record.Id, response.Shell);
    }

    internal async Task<IReadOnlyList<WorkspaceShell>> ListShellsAsync(string idOrName, CancellationToken cancellationToken)
    {
        var record = await GetAsync(idOrName, cancellationToken).ConfigureAwait(false);
        var response = await SessionCallAsync(record, new AgentRequest { Op = AgentOps.ShellList }, cancellationToken).ConfigureAwait(false);
        return [.. (response.Shells ?? []).Take(256).Select(s => ToShell(record.Id, s))];
    }

    private static void CheckShellId(string? shellId)
    {
        if (string.IsNullOrEmpty(shellId) || shellId.Length > 64 || !shellId.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            throw new PyroInputException("shell_not_found", $"'{GuestAgentClient.Sanitize(shellId, 80)}' is not a shell id; shell open returns one, shell list shows the open ones", "shell_id");
        }
    }

    internal static WorkspaceShell ToShell(string workspaceId, ShellInfo? info)
    {
        if (info is null)
        {
            throw new GuestChannelException("guest_protocol", "the guest agent answered a shell call without the shell");
        }

        var state = info.State is "running" or "exited" or "closed" ? info.State : "unknown";
        return new WorkspaceShell
        {
            WorkspaceId = workspaceId,
            ShellId = OneLine(info.Id, 64),
            State = state,
            Cwd = OneLine(info.Cwd, 4096),
            Cols = info.Cols,
            Rows = info.Rows,
            Pid = state == "running" && info.Pid > 0 ? info.Pid : null,
            ExitCode = info.ExitCode,
            StartedAt = Time(info.StartedAtMs),
            OutputChars = Math.Max(0, info.OutputChars),
        };
    }
}
