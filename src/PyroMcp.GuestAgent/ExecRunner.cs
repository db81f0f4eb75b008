using System.Diagnostics;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent;

/// <summary>
/// Runs one command in its own session (so its whole process group can be killed), streams
/// stdout and stderr apart, and caps what it forwards.
/// </summary>
internal sealed class ExecRunner(FrameConnection connection, uint streamId, AgentOptions options, Operation operation, Secrets.GuestSecrets? secrets = null)
{
    private const string DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    private const int ChunkSize = 32 * 1024;

    /// <summary>How long output may keep flowing after the command exits, from children it left behind.</summary>
    private static readonly TimeSpan DrainGrace = TimeSpan.FromMilliseconds(300);

    internal async Task<ExecExit> RunAsync(ExecRequest request)
    {
        var env = BuildEnvironment(request.Env, request.SecretEnv, secrets);
        var user = ImageDefaults.ResolveUser(request.User);
        ImageDefaults.AddUserEnvironment(env, user, request.Env);
        var argv = ResolveArgv(request, env["PATH"]);
        var cwd = !string.IsNullOrEmpty(request.Cwd) ? request.Cwd : ImageDefaults.Current?.WorkingDir is { Length: > 0 } workingDir ? workingDir : "/";
        if (!Directory.Exists(cwd))
        {
            throw new AgentFailure("cwd_not_found", $"working directory {cwd} does not exist in the guest");
        }

        if (argv is null)
        {
            var name = request.Argv![0];
            var message = System.Text.Encoding.UTF8.GetBytes($"pyro: {name}: command not found\n");
            await connection.SendAsync(new Frame(streamId, FrameType.Stderr, message));
            return new ExecExit { ExitCode = 127, StderrBytes = message.Length };
        }

        var start = new ProcessStartInfo(options.SetsidPath)
        {
            WorkingDirectory = cwd,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // busybox setsid makes the child a session and group leader without forking (the child
        // of fork is never a group leader), so the pid we get is the group to kill.
        start.ArgumentList.Add("setsid");
        foreach (var arg in ImageDefaults.Wrap(argv, user))
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment.Clear();
        foreach (var (key, value) in env)
        {
            start.Environment[key] = value;
        }

        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start) ?? throw new AgentFailure("spawn_failed", "could not start the command");
        var pid = process.Id;
        var stdout = PumpAsync(process.StandardOutput.BaseStream, FrameType.Stdout, request.MaxOutputBytes);
        var stderr = PumpAsync(process.StandardError.BaseStream, FrameType.Stderr, request.MaxOutputBytes);
        var stdin = request.Stdin ? FeedStdinAsync(process.StandardInput.BaseStream) : CloseStdin(process);

        using var timeout = request.TimeoutMs > 0 ? new CancellationTokenSource(request.TimeoutMs) : new CancellationTokenSource();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, operation.Cancel.Token);
        var timedOut = false;
        try
        {
            await process.WaitForExitAsync(stop.Token);
        }
        catch (OperationCanceledException)
        {
            timedOut = timeout.IsCancellationRequested;
            Interop.KillGroup(pid, Interop.SIGKILL);
            await process.WaitForExitAsync();
        }

        // Children left in the group may hold the pipes open; give them a moment, then end them.
        var pumps = Task.WhenAll(stdout, stderr);
        if (await Task.WhenAny(pumps, Task.Delay(DrainGrace)) != pumps)
        {
            Interop.KillGroup(pid, Interop.SIGKILL);
            await Task.WhenAny(pumps, Task.Delay(DrainGrace));
        }

        _ = stdin;
        var exitCode = timedOut ? 124 : process.ExitCode;
        var (outBytes, outTruncated) = stdout.IsCompletedSuccessfully ? stdout.Result : (0, false);
        var (errBytes, errTruncated) = stderr.IsCompletedSuccessfully ? stderr.Result : (0, false);
        return new ExecExit
        {
            ExitCode = exitCode,
            Signal = timedOut || operation.Cancel.IsCancellationRequested ? "SIGKILL" : SignalName(process.ExitCode),
            TimedOut = timedOut,
            StdoutBytes = outBytes,
            StderrBytes = errBytes,
            StdoutTruncated = outTruncated,
            StderrTruncated = errTruncated,
            DurationMs = clock.ElapsedMilliseconds,
        };
    }

    private async Task<(long Bytes, bool Truncated)> PumpAsync(Stream source, FrameType type, long cap)
    {
        var buffer = new byte[ChunkSize];
        long total = 0;
        var limit = cap > 0 ? cap : long.MaxValue;
        while (true)
        {
            var read = await source.ReadAsync(buffer);
            if (read == 0)
            {
                return (total, total > limit);
            }

            // Keep draining past the cap so the command never blocks on a full pipe.
            var forward = (int)Math.Max(0, Math.Min(read, limit - total));
            total += read;
            if (forward > 0)
            {
                await connection.SendAsync(new Frame(streamId, type, buffer.AsSpan(0, forward).ToArray()));
            }
        }
    }

    private async Task FeedStdinAsync(Stream target)
    {
        try
        {
            await foreach (var chunk in operation.Stdin.Reader.ReadAllAsync(operation.Cancel.Token))
            {
                await target.WriteAsync(chunk);
                await target.FlushAsync();
            }
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException)
        {
            // The command closed its stdin or is being stopped.
        }
        finally
        {
            target.Dispose();
        }
    }

    private static Task CloseStdin(Process process)
    {
        process.StandardInput.Close();
        return Task.CompletedTask;
    }

    /// <summary>The base environment of every command the agent starts, plus the request's variables.</summary>
    internal static Dictionary<string, string> BuildEnvironment(IReadOnlyDictionary<string, string>? extra,
        IReadOnlyDictionary<string, string>? secretEnv = null, Secrets.GuestSecrets? secrets = null)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["PATH"] = DefaultPath,
            ["HOME"] = "/root",
            ["USER"] = "root",
            ["LOGNAME"] = "root",
            ["SHELL"] = "/bin/sh",
            ["LANG"] = "C.UTF-8",
            ["TERM"] = "dumb",
        };
        ImageDefaults.AddEnvironment(env);
        foreach (var (key, value) in extra ?? new Dictionary<string, string>())
        {
            if (key.Length == 0 || key.Contains('=') || key.Contains('\0'))
            {
                throw new AgentFailure("bad_env", $"invalid environment variable name '{key}'");
            }

            env[key] = value;
        }

        if (secretEnv is { Count: > 0 })
        {
            (secrets ?? throw new AgentFailure("secret_not_found", "this agent holds no secrets")).AddTo(env, secretEnv);
        }

        return env;
    }

    /// <summary>Returns the argv to exec, or null when the program does not exist (the shell's exit 127).</summary>
    private static List<string>? ResolveArgv(ExecRequest request, string path)
    {
        if (request.Shell is { } shell)
        {
            return ["/bin/sh", "-c", shell];
        }

        if (request.Argv is not { Count: > 0 } argv)
        {
            throw new AgentFailure("bad_request", "exec needs argv or shell");
        }

        var program = argv[0];
        string? resolved = null;
        if (program.Contains('/'))
        {
            resolved = File.Exists(program) ? program : null;
        }
        else
        {
            foreach (var dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries))
            {
                var candidate = Path.Combine(dir, program);
                if (File.Exists(candidate))
                {
                    resolved = candidate;
                    break;
                }
            }
        }

        return resolved is null ? null : [resolved, .. argv.Skip(1)];
    }

    private static string? SignalName(int exitCode) => exitCode switch
    {
        129 => "SIGHUP",
        130 => "SIGINT",
        131 => "SIGQUIT",
        134 => "SIGABRT",
        137 => "SIGKILL",
        139 => "SIGSEGV",
        141 => "SIGPIPE",
        143 => "SIGTERM",
        _ => null,
    };
}
