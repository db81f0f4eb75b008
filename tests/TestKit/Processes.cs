using System.Diagnostics;
using System.Text.Json;

namespace PyroMcp.TestKit;

/// <summary>What a finished child process left: its exit code and everything it printed.</summary>
internal sealed record ProcessResult(int ExitCode, string Stdout, string Stderr)
{
    internal JsonElement Json => JsonDocument.Parse(Stdout).RootElement;

    public override string ToString() => $"exit {ExitCode}\n--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";
}

/// <summary>Runs programs for tests: arguments as a list, output captured, a deadline that kills the whole tree.</summary>
internal static class Processes
{
    /// <summary>Starts <paramref name="file"/> with stdin, stdout and stderr redirected.</summary>
    internal static Process Start(string file, IEnumerable<string> args, string? workingDirectory = null, IDictionary<string, string>? env = null)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (workingDirectory is not null)
        {
            start.WorkingDirectory = workingDirectory;
        }

        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in env ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        return Process.Start(start)!;
    }

    /// <summary>Runs to the end with no input; past <paramref name="timeout"/> (default 5 minutes) the tree is killed and a <see cref="TimeoutException"/> carries stderr so far.</summary>
    internal static async Task<ProcessResult> RunAsync(string file, IEnumerable<string> args, string? workingDirectory = null, IDictionary<string, string>? env = null, TimeSpan? timeout = null)
    {
        var list = args.ToList();
        using var process = Start(file, list, workingDirectory, env);
        return await WaitAsync(process, $"{file} {string.Join(' ', list)}", timeout);
    }

    /// <summary>Closes the input of a started process and collects its output until it exits (see <see cref="RunAsync"/>).</summary>
    internal static async Task<ProcessResult> WaitAsync(Process process, string what, TimeSpan? timeout = null)
    {
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var limit = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(5));
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{what} did not finish; stderr so far:\n{await stderr}");
        }

        return new ProcessResult(process.ExitCode, await stdout, await stderr);
    }

    /// <summary>Runs a short host tool synchronously and fails the test if it exits non-zero; <paramref name="why"/> is added to the failure.</summary>
    internal static void Check(string program, string[] args, string? why = null)
    {
        using var process = Process.Start(new ProcessStartInfo(program, args) { RedirectStandardError = true })!;
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{program} {string.Join(' ', args)} failed{(why is null ? "" : $" ({why})")}: {error}");
    }
}

/// <summary>Runs the built CLI as a user would, in a child process, on this run's scratch directories.</summary>
internal static class PyroCli
{
    internal static Process Start(IEnumerable<string> args, IDictionary<string, string>? env = null)
        => Processes.Start(Repo.Cli, args, env: WithScratch(env));

    internal static async Task<ProcessResult> RunAsync(IEnumerable<string> args, IDictionary<string, string>? env = null, TimeSpan? timeout = null)
    {
        var list = args.ToList();
        using var process = Start(list, env);
        return await Processes.WaitAsync(process, $"pyro {string.Join(' ', list)}", timeout);
    }

    internal static Task<ProcessResult> RunAsync(params string[] args) => RunAsync((IEnumerable<string>)args);

    /// <summary>Runs a command that must succeed (exit 0).</summary>
    internal static async Task<ProcessResult> OkAsync(IDictionary<string, string>? env, params string[] args)
    {
        var result = await RunAsync(args, env);
        Assert.True(result.ExitCode == 0, $"pyro {string.Join(' ', args)}\n{result}");
        return result;
    }

    internal static Task<ProcessResult> OkAsync(params string[] args) => OkAsync(null, args);

    /// <summary>This run's scratch directories, then <paramref name="env"/> on top.</summary>
    private static Dictionary<string, string> WithScratch(IDictionary<string, string>? env)
    {
        var all = Repo.ScratchEnvironment;
        foreach (var (key, value) in env ?? new Dictionary<string, string>())
        {
            all[key] = value;
        }

        return all;
    }
}
