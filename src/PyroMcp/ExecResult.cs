namespace PyroMcp;

/// <summary>
/// What one command returns, wherever it ran (a one-shot VM, a workspace, a VM made by
/// <see cref="Pyro.CreateVmAsync"/>): how it ended, what it wrote, how long it took. A non-zero exit
/// code is a result, not an exception; call <see cref="ExecResultExtensions.ThrowOnFailure{T}"/>
/// when it should be one.
/// </summary>
/// <remarks>
/// The derived records add where the command ran. In JSON the fields shared here keep one name
/// each (<c>exit_code</c>, <c>stdout</c>, <c>duration_ms</c>, ...) in every result.
/// </remarks>
public abstract record ExecResult
{
    /// <summary>Only pyro's own results derive from this record.</summary>
    private protected ExecResult()
    {
    }

    /// <summary>The command as given (argv joined with shell quoting, or the one shell string).</summary>
    public abstract string Command { get; init; }

    /// <summary>How it ran: in a guest, or on the host under host compatibility.</summary>
    public abstract ExecutionMode ExecutionMode { get; init; }

    /// <summary>Exit status: 124 on timeout, 127 when the program does not exist, 128+N after signal N.</summary>
    public int ExitCode { get; init; }

    /// <summary>Signal that ended the command, when one did (<c>SIGKILL</c> on timeout).</summary>
    public string? Signal { get; init; }

    /// <summary>The timeout ran out and the command's whole process group was killed.</summary>
    public bool TimedOut { get; init; }

    /// <summary>Captured stdout (UTF-8, invalid bytes replaced), up to <see cref="PyroOptions.MaxOutputBytes"/>.</summary>
    public string Stdout { get; init; } = "";

    /// <summary>Captured stderr, up to <see cref="PyroOptions.MaxOutputBytes"/>.</summary>
    public string Stderr { get; init; } = "";

    /// <summary>stdout was longer than the cap and was cut.</summary>
    public bool StdoutTruncated { get; init; }

    /// <summary>stderr was longer than the cap and was cut.</summary>
    public bool StderrTruncated { get; init; }

    /// <summary>Wall time of the call. For a one-shot run it includes the VM's boot and teardown.</summary>
    public long DurationMs { get; init; }
}

/// <summary>Helpers for every <see cref="ExecResult"/>.</summary>
public static class ExecResultExtensions
{
    /// <summary>Returns <paramref name="result"/> when the command exited 0; throws <see cref="CommandFailedException"/> otherwise.</summary>
    /// <typeparam name="T">The kind of result, kept so the call can be chained.</typeparam>
    /// <exception cref="CommandFailedException">The command exited non-zero, timed out or was killed.</exception>
    public static T ThrowOnFailure<T>(this T result)
        where T : ExecResult
    {
        ArgumentNullException.ThrowIfNull(result);
        return result.ExitCode == 0 ? result : throw new CommandFailedException(result);
    }
}
