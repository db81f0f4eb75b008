using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using PyroMcp.GuestAgent.Services;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent.Shells;

/// <summary>The open shells of this guest; they live until closed, whatever stream opened them.</summary>
internal sealed class ShellManager
{
    internal const int MaxShells = 8;
    internal const int DefaultCols = 120;
    internal const int DefaultRows = 30;

    private readonly AgentOptions _options;
    private readonly WorkspacePaths _workspace;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, ShellSession> _shells = new(StringComparer.Ordinal);

    private readonly Secrets.GuestSecrets? _secrets;

    internal ShellManager(AgentOptions options, WorkspacePaths workspace, Secrets.GuestSecrets? secrets = null)
    {
        _options = options;
        _workspace = workspace;
        _secrets = secrets;
        if (PtyInterop.EnsureDevPts() is { } note)
        {
            Console.Error.WriteLine("pyro-agent: " + note);
        }
    }

    internal ShellInfo Open(ShellRequest request)
    {
        var cols = request.Cols == 0 ? DefaultCols : request.Cols;
        var rows = request.Rows == 0 ? DefaultRows : request.Rows;
        if (cols is < 10 or > 1000 || rows is < 5 or > 1000)
        {
            throw new AgentFailure("shell_size_invalid", string.Create(CultureInfo.InvariantCulture,
                $"a shell is 10 to 1000 columns by 5 to 1000 rows (0 for {DefaultCols}x{DefaultRows}), not {cols}x{rows}"));
        }

        var cwd = ServiceManager.ResolveCwd(_workspace, request.Cwd);
        var env = ExecRunner.BuildEnvironment(request.Env, request.SecretEnv, _secrets);
        if (request.Env?.ContainsKey("TERM") != true)
        {
            env["TERM"] = "xterm-256color";
        }

        lock (_gate)
        {
            if (_shells.Count >= MaxShells)
            {
                throw new AgentFailure("shell_limit", $"{MaxShells} shells are open, the most a guest keeps; close one with shell.close first");
            }

            string id;
            do
            {
                id = "sh-" + RandomNumberGenerator.GetHexString(8, lowercase: true);
            }
            while (_shells.ContainsKey(id));

            ShellSession shell;
            try
            {
                shell = ShellSession.Open(id, cwd, cols, rows, env, _options.SetsidPath);
            }
            catch (IOException ex)
            {
                throw new AgentFailure("shell_failed", "could not open a shell: " + ex.Message);
            }

            _shells[id] = shell;
            return shell.Info();
        }
    }

    internal Task<ShellInfo> WriteAsync(ShellRequest request, CancellationToken cancellationToken)
    {
        var shell = Find(request.Id);
        var input = request.Input ?? "";
        if (Encoding.UTF8.GetByteCount(input) > ShellRequest.MaxInputBytes)
        {
            throw new AgentFailure("shell_input_too_large", $"shell input is at most {ShellRequest.MaxInputBytes} bytes a write; send it in parts, or write it to a file and run that");
        }

        return shell.WriteAsync(input, request.AppendNewline, cancellationToken);
    }

    internal ShellOutput Read(ShellRequest request)
    {
        var shell = Find(request.Id);
        var max = request.MaxChars == 0 ? ShellSession.DefaultReadChars : request.MaxChars;
        if (max < 1 || max > ShellRequest.MaxReadChars)
        {
            throw new AgentFailure("bad_request", string.Create(CultureInfo.InvariantCulture, $"max_chars must be between 1 and {ShellRequest.MaxReadChars} (0 for {ShellSession.DefaultReadChars}), not {max}"));
        }

        return shell.Read(request.Cursor, max);
    }

    internal ShellInfo Signal(ShellRequest request)
    {
        var shell = Find(request.Id);
        return shell.Signal(ParseSignal(request.Signal));
    }

    internal async Task<ShellInfo> CloseAsync(ShellRequest request)
    {
        var shell = Find(request.Id);
        lock (_gate)
        {
            if (!_shells.Remove(shell.Id))
            {
                throw NotFound(shell.Id);
            }
        }

        return await shell.CloseAsync().ConfigureAwait(false);
    }

    internal IReadOnlyList<ShellInfo> List()
    {
        lock (_gate)
        {
            return [.. _shells.Values.Select(s => s.Info()).OrderBy(s => s.StartedAtMs).ThenBy(s => s.Id, StringComparer.Ordinal)];
        }
    }

    internal async Task CloseAllAsync()
    {
        ShellSession[] shells;
        lock (_gate)
        {
            shells = [.. _shells.Values];
            _shells.Clear();
        }

        await Task.WhenAll(shells.Select(s => s.CloseAsync())).ConfigureAwait(false);
    }

    internal static int ParseSignal(string? name)
    {
        var upper = (name ?? "").Trim().ToUpperInvariant();
        if (upper.StartsWith("SIG", StringComparison.Ordinal))
        {
            upper = upper[3..];
        }

        return upper switch
        {
            "INT" => ProcessTree.SIGINT,
            "TERM" => ProcessTree.SIGTERM,
            "HUP" => ProcessTree.SIGHUP,
            "KILL" => ProcessTree.SIGKILL,
            "QUIT" => ProcessTree.SIGQUIT,
            "TSTP" => ProcessTree.SIGTSTP,
            "CONT" => ProcessTree.SIGCONT,
            "USR1" => ProcessTree.SIGUSR1,
            "USR2" => ProcessTree.SIGUSR2,
            _ => throw new AgentFailure("signal_invalid", $"unknown signal '{ServiceManager.Clip(name ?? "", 40)}': use INT, TERM, HUP, KILL, QUIT, TSTP, CONT, USR1 or USR2"),
        };
    }

    private ShellSession Find(string? id)
    {
        lock (_gate)
        {
            return id is not null && _shells.TryGetValue(id, out var shell) ? shell : throw NotFound(id);
        }
    }

    private static AgentFailure NotFound(string? id)
        => new("shell_not_found", $"no open shell '{ServiceManager.Clip(id ?? "", 40)}'; shell.list shows the open ones");
}
