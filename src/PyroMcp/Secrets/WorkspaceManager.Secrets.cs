using System.Text.RegularExpressions;
using PyroMcp.Protocol.Secrets;
using PyroMcp.Secrets;

namespace PyroMcp.Workspaces;

/// <summary>
/// Secrets on the host side: which ones a call may map into a guest process, and the redaction
/// of every result that carries text from the guest. The guest holds its secrets (and can print
/// them); what pyro hands back to a caller, a log or the database never holds a value.
/// </summary>
internal sealed partial class WorkspaceManager
{
    /// <summary>The workspace's redactor: cheap when it has no secrets (no store file).</summary>
    internal SecretRedactor RedactorFor(string id) => SecretStore.Redactor(Store.WorkspaceDir(id));

    /// <summary>
    /// Runs a call on a workspace; a <see cref="PyroException"/> it throws (its message may quote
    /// the guest: an error, a log tail, a console line) leaves with that workspace's secrets redacted.
    /// </summary>
    internal async Task<T> GuardAsync<T>(string idOrName, Func<Task<T>> call, Func<SecretRedactor, T, T>? redact = null)
    {
        T result;
        try
        {
            result = await call().ConfigureAwait(false);
        }
        catch (PyroException ex) when (Redact(idOrName, ex))
        {
            throw;
        }

        return redact is null || Store.Find(idOrName) is not { } record ? result : redact(RedactorFor(record.Id), result);
    }

    /// <summary>As the generic GuardAsync, for calls without a result.</summary>
    internal async Task GuardAsync(string idOrName, Func<Task> call)
    {
        try
        {
            await call().ConfigureAwait(false);
        }
        catch (PyroException ex) when (Redact(idOrName, ex))
        {
            throw;
        }
    }

    /// <summary>Redacts in place and returns false, so the filter rethrows the exception with its stack.</summary>
    private bool Redact(string idOrName, PyroException ex)
    {
        try
        {
            if (Store.Find(idOrName) is { } record && RedactorFor(record.Id) is { IsEmpty: false } redactor)
            {
                ex.RedactWith(redactor);
            }
        }
        catch (Exception inner) when (inner is IOException or UnauthorizedAccessException or PyroException)
        {
            // A workspace deleted under us has no secrets left to show.
        }

        return false;
    }

    /// <summary>
    /// The guest side of a <c>secret_env</c>: environment variable to secret name, checked against
    /// the workspace's secrets and the call's own variables.
    /// </summary>
    internal IReadOnlyDictionary<string, string>? SecretEnvFor(WorkspaceRecord record, IReadOnlyDictionary<string, string?>? secretEnv,
        IReadOnlyDictionary<string, string>? env, string field)
    {
        if (secretEnv is null || secretEnv.Count == 0)
        {
            return null;
        }

        var names = SecretStore.Names(Store.WorkspaceDir(record.Id));
        var mapped = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (secret, variable) in secretEnv)
        {
            if (!names.Contains(secret, StringComparer.Ordinal))
            {
                throw new PyroInputException("secret_not_found", names.Count == 0
                    ? $"workspace {record.Id} has no secrets: give them when creating the workspace (secrets are fixed at create)"
                    : $"workspace {record.Id} has no secret '{(SecretStore.IsValidName(secret) ? secret : "(invalid name)")}': its secrets are {string.Join(", ", names)}", field);
            }

            var name = string.IsNullOrEmpty(variable) ? secret : variable;
            if (!EnvNamePattern().IsMatch(name))
            {
                throw new PyroInputException("secret_env_invalid", $"secret {secret}: '{name}' is not an environment variable name (letters, digits and '_', not starting with a digit)", field);
            }

            if (env?.ContainsKey(name) == true || !mapped.TryAdd(name, secret))
            {
                throw new PyroInputException("secret_env_invalid", $"environment variable {name} is given twice (by secret_env and env, or by two secrets): give it once", field);
            }
        }

        return mapped;
    }

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
    private static partial Regex EnvNamePattern();

    // ---- what leaves: each result that carries guest text, redacted ----------------------------

    internal static WorkspaceInfo Redacted(SecretRedactor r, WorkspaceInfo x) => r.IsEmpty ? x : x with
    {
        StateReason = RedactOrNull(r, x.StateReason),
        NetworkError = RedactOrNull(r, x.NetworkError),
    };

    internal static WorkspaceExecResult Redacted(SecretRedactor r, WorkspaceExecResult x) => r.IsEmpty ? x : x with
    {
        Command = r.Redact(x.Command),
        Stdout = RedactCut(r, x.Stdout, x.StdoutTruncated),
        Stderr = RedactCut(r, x.Stderr, x.StderrTruncated),
    };

    /// <summary>Output the cap cut off may end in the first part of a value: that part goes too.</summary>
    private static string RedactCut(SecretRedactor r, string text, bool cut) => r.Redact(cut ? text[..^r.HoldBack(text)] : text);

    internal static CommandRecord Redacted(SecretRedactor r, CommandRecord x) => r.IsEmpty ? x : x with { Command = r.Redact(x.Command), Cwd = r.Redact(x.Cwd) };

    internal static TransferResult Redacted(SecretRedactor r, TransferResult x) => r.IsEmpty ? x : x with
    {
        Skipped = [.. x.Skipped.Select(s => new SkippedEntry(r.Redact(s.Name), r.Redact(s.Reason)))],
    };

    internal static CappedList<FileEntry> Redacted(SecretRedactor r, CappedList<FileEntry> x) => r.IsEmpty ? x : new([.. x.Select(e => Redacted(r, e))], x.TotalCount);

    internal static IReadOnlyList<WorkspaceShell> Redacted(SecretRedactor r, IReadOnlyList<WorkspaceShell> x) => r.IsEmpty ? x : [.. x.Select(e => Redacted(r, e))];

    internal static FileEntry Redacted(SecretRedactor r, FileEntry x) => r.IsEmpty ? x : x with { Path = r.Redact(x.Path), LinkTarget = RedactOrNull(r, x.LinkTarget) };

    internal static FileContent Redacted(SecretRedactor r, FileContent x) => r.IsEmpty ? x : x with { Path = r.Redact(x.Path), Content = r.Redact(x.Content) };

    internal static WorkspaceDiff Redacted(SecretRedactor r, WorkspaceDiff x) => r.IsEmpty ? x : x with
    {
        Changes = [.. x.Changes.Select(c => c with { Path = r.Redact(c.Path) })],
        Patch = r.Redact(x.Patch),
    };

    internal static PatchResult Redacted(SecretRedactor r, PatchResult x) => r.IsEmpty ? x : x with { Files = [.. x.Files.Select(r.Redact)] };

    internal static WorkspaceService Redacted(SecretRedactor r, WorkspaceService x) => r.IsEmpty ? x : x with
    {
        Command = r.Redact(x.Command),
        Cwd = r.Redact(x.Cwd),
        Reason = RedactOrNull(r, x.Reason),
        LastProbe = RedactOrNull(r, x.LastProbe),
        Readiness = x.Readiness is { } readiness ? readiness with { Target = r.Redact(readiness.Target) } : null,
    };

    internal static WorkspaceServiceList Redacted(SecretRedactor r, WorkspaceServiceList x) => r.IsEmpty ? x : x with { Services = [.. x.Services.Select(s => Redacted(r, s))] };

    internal static WorkspaceServiceLogs Redacted(SecretRedactor r, WorkspaceServiceLogs x) => r.IsEmpty ? x : x with
    {
        Service = Redacted(r, x.Service),
        Stdout = r.Redact(x.Stdout),
        Stderr = r.Redact(x.Stderr),
    };

    internal static WorkspaceShell Redacted(SecretRedactor r, WorkspaceShell x) => r.IsEmpty ? x : x with { Cwd = r.Redact(x.Cwd) };

    private static string? RedactOrNull(SecretRedactor r, string? text) => text is null ? null : r.Redact(text);

    /// <summary>A stdout/stderr callback that sees redacted bytes; the caller flushes the stream when the command ends.</summary>
    internal static (Func<ReadOnlyMemory<byte>, ValueTask>? Callback, Func<ValueTask> Flush) RedactedCallback(SecretRedactor r, Func<ReadOnlyMemory<byte>, ValueTask>? callback)
    {
        if (callback is null || r.IsEmpty)
        {
            return (callback, () => ValueTask.CompletedTask);
        }

        var stream = r.NewByteStream();
        return (async data =>
        {
            var safe = stream.Push(data.Span);
            if (safe.Length > 0)
            {
                await callback(safe).ConfigureAwait(false);
            }
        }, async () =>
        {
            var rest = stream.Flush();
            if (rest.Length > 0)
            {
                await callback(rest).ConfigureAwait(false);
            }
        });
    }
}
