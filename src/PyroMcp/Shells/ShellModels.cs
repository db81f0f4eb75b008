namespace PyroMcp;

/// <summary>A shell to open in a workspace: an interactive shell on a real PTY in the guest.</summary>
public sealed record ShellOpenRequest
{
    /// <summary>Working directory in the guest; relative paths are under <c>/workspace</c>.</summary>
    public string Cwd { get; init; } = "/workspace";
    /// <summary>Terminal width, 10 to 1,000.</summary>
    public int Cols { get; init; } = 120;
    /// <summary>Terminal height, 5 to 1,000.</summary>
    public int Rows { get; init; } = 30;
    /// <summary>Environment variables for the shell, added to the guest's base environment.</summary>
    public IReadOnlyDictionary<string, string>? Env { get; init; }
    /// <summary>
    /// Workspace secrets to put in this shell's environment: secret name to environment variable
    /// name (the same name when the value is empty or null). Only this shell sees them; nothing
    /// of the mapping is stored.
    /// </summary>
    public IReadOnlyDictionary<string, string?>? SecretEnv { get; init; }
}

/// <summary>A shell of a workspace.</summary>
public sealed record WorkspaceShell
{
    /// <summary>The workspace.</summary>
    public required string WorkspaceId { get; init; }
    /// <summary>The shell's id.</summary>
    public required string ShellId { get; init; }
    /// <summary><c>running</c>; <c>exited</c> (the shell ended, e.g. after <c>exit</c>; its output stays readable until it is closed); <c>closed</c>.</summary>
    public required string State { get; init; }
    /// <summary>The directory it was opened in.</summary>
    public required string Cwd { get; init; }
    /// <summary>Terminal width.</summary>
    public int Cols { get; init; }
    /// <summary>Terminal height.</summary>
    public int Rows { get; init; }
    /// <summary>The shell's process id in the guest.</summary>
    public int? Pid { get; init; }
    /// <summary>Exit status once the shell ended.</summary>
    public int? ExitCode { get; init; }
    /// <summary>When it was opened.</summary>
    public DateTimeOffset? StartedAt { get; init; }
    /// <summary>Characters of output so far: the cursor the next character will have.</summary>
    public long OutputChars { get; init; }
}

/// <summary>Output of a shell from a cursor.</summary>
public sealed record ShellReadResult
{
    /// <summary>The shell.</summary>
    public required WorkspaceShell Shell { get; init; }
    /// <summary>The output: raw terminal output, or with escape sequences removed when <see cref="Plain"/>.</summary>
    public required string Output { get; init; }
    /// <summary>The cursor <see cref="Output"/> starts at (later than asked when older output had left the ring).</summary>
    public long Cursor { get; init; }
    /// <summary>The cursor to pass to the next read.</summary>
    public long NextCursor { get; init; }
    /// <summary>Characters that had already left the shell's output ring and are lost to this reader.</summary>
    public long DroppedChars { get; init; }
    /// <summary>More output is waiting past <see cref="NextCursor"/>.</summary>
    public bool Truncated { get; init; }
    /// <summary>Escape sequences were removed.</summary>
    public bool Plain { get; init; }
}
