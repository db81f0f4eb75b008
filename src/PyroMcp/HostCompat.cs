using System.Diagnostics;

namespace PyroMcp;

/// <summary>Runs a command on the host. Only reached with an explicit opt-in; there is no isolation at all.</summary>
internal static class HostCompat
{
    internal static async Task<RunResult> RunAsync(RunRequest request, string environment, long cap, Stopwatch clock, CancellationToken cancellationToken)
    {
        var work = Directory.CreateTempSubdirectory("pyro-host-compat-");
        try
        {
            var start = new ProcessStartInfo(request.IsShellCommand ? "/bin/sh" : request.Command[0])
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = request.Cwd ?? work.FullName,
            };
            foreach (var arg in request.IsShellCommand ? ["-c", request.Command[0]] : request.Command.Skip(1))
            {
                start.ArgumentList.Add(arg);
            }

            foreach (var (key, value) in request.Env ?? new Dictionary<string, string>())
            {
                start.Environment[key] = value;
            }

            Process process;
            try
            {
                process = Process.Start(start)!;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                return new RunResult
                {
                    Environment = environment,
                    ExecutionMode = ExecutionMode.HostCompat,
                    Command = request.CommandText,
                    ExitCode = 127,
                    Stderr = $"pyro: {request.Command[0]}: command not found\n",
                    DurationMs = clock.ElapsedMilliseconds,
                };
            }

            using (process)
            {
                process.StandardInput.Close();
                var stdout = new CappedBuffer(cap);
                var stderr = new CappedBuffer(cap);
                var outLen = Copy(process.StandardOutput.BaseStream, stdout, request.OnStdout, cap);
                var errLen = Copy(process.StandardError.BaseStream, stderr, request.OnStderr, cap);
                var timedOut = false;
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(TimeSpan.FromSeconds(request.TimeoutSeconds));
                try
                {
                    await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    process.Kill(entireProcessTree: true);
                    await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
                    cancellationToken.ThrowIfCancellationRequested();
                    timedOut = true;
                }

                // The output is whole only once both copies have reached end of file: the process can
                // exit (and WaitForExitAsync return) before they have read what it wrote.
                var outBytes = await outLen.ConfigureAwait(false);
                var errBytes = await errLen.ConfigureAwait(false);
                return new RunResult
                {
                    Environment = environment,
                    ExecutionMode = ExecutionMode.HostCompat,
                    Command = request.CommandText,
                    ExitCode = timedOut ? 124 : process.ExitCode,
                    TimedOut = timedOut,
                    Signal = timedOut ? "SIGKILL" : null,
                    Stdout = stdout.Text,
                    Stderr = stderr.Text,
                    StdoutTruncated = outBytes > cap,
                    StderrTruncated = errBytes > cap,
                    DurationMs = clock.ElapsedMilliseconds,
                };
            }
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    private static async Task<long> Copy(Stream source, CappedBuffer buffer, Func<ReadOnlyMemory<byte>, ValueTask>? sink, long cap)
    {
        var chunk = new byte[32 * 1024];
        long total = 0;
        int read;
        while ((read = await source.ReadAsync(chunk).ConfigureAwait(false)) > 0)
        {
            var forward = (int)Math.Max(0, Math.Min(read, cap - total));
            total += read;
            buffer.Append(chunk.AsSpan(0, read));
            if (forward > 0 && sink is not null)
            {
                await sink(chunk.AsMemory(0, forward)).ConfigureAwait(false);
            }
        }

        return total;
    }
}
