using PyroMcp.Host;
using PyroMcp.Protocol;
using PyroMcp.Vmm;

namespace PyroMcp.Execution;

/// <summary>
/// The one path a command takes into a guest and back out as an <see cref="ExecResult"/>:
/// <list type="number">
/// <item><see cref="Plan"/> validates the request (command, timeout, and the VM sizes against the host when one is to boot);</item>
/// <item><see cref="ExecuteAsync"/> asks the guest agent to run it, keeping each stream up to
/// <see cref="PyroOptions.MaxOutputBytes"/> and passing every byte on to the caller's
/// <c>OnStdout</c>/<c>OnStderr</c> as it arrives;</item>
/// <item><see cref="ExecOutput.Complete"/> fills the fields every result shares.</item>
/// </list>
/// One-shot runs (<see cref="Pyro.RunAsync"/>), workspace commands (<see cref="Pyro.ExecWorkspaceAsync"/>)
/// and VM commands (<see cref="Pyro.ExecVmAsync"/>) all come through here, and shells and services
/// are to come through here too: a rule about what a command may ask for, how its output is capped
/// or what its result says belongs in this class, once.
/// </summary>
internal static class ExecPipeline
{
    /// <summary>
    /// Checks <paramref name="request"/>; <paramref name="host"/> is the capacity its VM sizes must
    /// fit, or null when the command runs in a VM that already exists (its sizes were checked then).
    /// </summary>
    /// <exception cref="PyroInputException">The request is wrong; nothing ran.</exception>
    internal static ExecPlan Plan(RunRequest request, HostCapacity? host)
    {
        request.Validate(host);
        return new ExecPlan(request);
    }

    /// <summary>Runs a planned command through <paramref name="agent"/> in <paramref name="cwd"/> (null: the agent's default, <c>/</c>).</summary>
    /// <exception cref="PyroInputException"><paramref name="cwd"/> does not exist in the guest (<c>cwd_not_found</c>); the guest is fine.</exception>
    internal static async Task<ExecOutput> ExecuteAsync(GuestAgentClient agent, ExecPlan plan, string? cwd, long maxOutputBytes, CancellationToken cancellationToken,
        IReadOnlyDictionary<string, string>? secretEnv = null)
    {
        var stdout = new CappedBuffer(maxOutputBytes);
        var stderr = new CappedBuffer(maxOutputBytes);
        ExecExit exit;
        try
        {
            exit = await agent.ExecAsync(plan.Request.ToExecRequest(cwd) with { SecretEnv = secretEnv }, stdout.Tee(plan.Request.OnStdout), stderr.Tee(plan.Request.OnStderr), maxOutputBytes, cancellationToken).ConfigureAwait(false);
        }
        catch (GuestOperationException ex) when (ex.Code == "cwd_not_found")
        {
            // The caller named a directory the guest lacks: wrong input, not a broken guest.
            throw new PyroInputException("cwd_not_found", ex.Message + "; create it first or pick another working directory");
        }

        return new ExecOutput(exit, stdout.Text, stderr.Text);
    }
}

/// <summary>A request that passed <see cref="ExecPipeline.Plan"/>: the only thing <see cref="ExecPipeline.ExecuteAsync"/> runs.</summary>
internal sealed class ExecPlan
{
    internal ExecPlan(RunRequest request)
    {
        Request = request;
    }

    internal RunRequest Request { get; }

    /// <summary>The command as results and histories show it.</summary>
    internal string CommandText => Request.CommandText;
}

/// <summary>How a command ended and what it wrote, before the caller says where it ran.</summary>
internal sealed record ExecOutput(ExecExit Exit, string Stdout, string Stderr)
{
    /// <summary>
    /// <paramref name="result"/> (the fields of where it ran) with the shared fields filled in:
    /// exit status, signal, timeout, captured output and its truncation, and <paramref name="durationMs"/>.
    /// </summary>
    internal T Complete<T>(T result, long durationMs)
        where T : ExecResult
        => (T)((ExecResult)result with
        {
            ExitCode = Exit.ExitCode,
            Signal = Exit.Signal,
            TimedOut = Exit.TimedOut,
            Stdout = Stdout,
            Stderr = Stderr,
            StdoutTruncated = Exit.StdoutTruncated,
            StderrTruncated = Exit.StderrTruncated,
            DurationMs = durationMs,
        });
}
