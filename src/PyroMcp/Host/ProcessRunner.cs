using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;

namespace PyroMcp.Host;

/// <summary>Starts and runs host programs (QEMU, mmdebstrap, mkfs...).</summary>
internal static class ProcessRunner
{
    private static readonly BlockingCollection<(ProcessStartInfo Start, TaskCompletionSource<Process> Done)> Spawns = new();
    private static readonly Lazy<Thread> Spawner = new(() =>
    {
        // PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the process.
        // Pool threads come and go, so every child that must die with us is forked from this one
        // thread, which lives as long as the process.
        var thread = new Thread(() =>
        {
            foreach (var (start, done) in Spawns.GetConsumingEnumerable())
            {
                try
                {
                    done.SetResult(Process.Start(start) ?? throw new InvalidOperationException("process did not start"));
                }
                catch (Exception ex)
                {
                    done.SetException(ex);
                }
            }
        })
        { IsBackground = true, Name = "pyro-spawner" };
        thread.Start();
        return thread;
    });

    /// <summary>
    /// Starts a process that the kernel kills (SIGKILL) if this process dies first.
    /// </summary>
    /// <remarks>
    /// The tie is PR_SET_PDEATHSIG (setpriv --pdeathsig), which the kernel clears when a process
    /// changes its uid or gid. A program that drops privileges itself (QEMU -runas) would lose it
    /// and outlive a kill -9'd owner. With <paramref name="ownPidNamespace"/> (needs root) the
    /// program runs in a new PID namespace instead: unshare's child, a shell that stays root and
    /// keeps its death signal (--kill-child), is the namespace's init and waits for the program;
    /// when the owner dies, unshare dies, the shell dies, and the kernel kills everything left in
    /// the namespace. The shell does not exec the program, or the program would be init itself
    /// and lose the tie at its drop. Killing the returned process (unshare) takes all down the
    /// same way, and its exit code is the program's (128 + signal when a signal ended it).
    /// </remarks>
    /// <param name="fileName">The program.</param>
    /// <param name="args">Its arguments.</param>
    /// <param name="workingDirectory">Where it starts; / by default.</param>
    /// <param name="ownPidNamespace">Run it in a PID namespace of its own (see remarks).</param>
    /// <param name="inheritedFile">
    /// With <paramref name="ownPidNamespace"/> only: a file the root shell opens for the program
    /// as descriptor 3 (read-write) and 4 (read-only) before it starts, for a program that must
    /// reopen the file after dropping to a user who cannot open it by name (QEMU's fdsets).
    /// </param>
    internal static Task<Process> StartTiedToOwnerAsync(string fileName, IEnumerable<string> args, string? workingDirectory = null, bool ownPidNamespace = false, string? inheritedFile = null)
    {
        if (inheritedFile is not null && !ownPidNamespace)
        {
            throw new ArgumentException("an inherited file needs the namespace's shell", nameof(inheritedFile));
        }

        var start = new ProcessStartInfo(HostTools.Setpriv.Require())
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? "/",
        };
        start.ArgumentList.Add("--pdeathsig");
        start.ArgumentList.Add("KILL");
        start.ArgumentList.Add("--");
        if (ownPidNamespace)
        {
            // The file is the shell's first argument, never part of the script: no quoting to get wrong.
            var script = inheritedFile is null ? "\"$@\"; exit $?" : "exec 3<>\"$1\" 4<\"$1\" || exit 126; shift; \"$@\"; exit $?";
            foreach (var arg in new[] { HostTools.Unshare.Require(), "--pid", "--fork", "--kill-child=SIGKILL", "--", "/bin/sh", "-c", script, "sh" })
            {
                start.ArgumentList.Add(arg);
            }

            if (inheritedFile is not null)
            {
                start.ArgumentList.Add(inheritedFile);
            }
        }

        start.ArgumentList.Add(fileName);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        _ = Spawner.Value;
        var done = new TaskCompletionSource<Process>(TaskCreationOptions.RunContinuationsAsynchronously);
        Spawns.Add((start, done));
        return done.Task;
    }

    /// <summary>
    /// The deepest first descendant of a process (unshare, then its shell, then the program): the
    /// pid that really runs the program. The process itself when it has no children (yet).
    /// </summary>
    internal static int Innermost(int pid)
    {
        for (var depth = 0; depth < 4; depth++)
        {
            try
            {
                var children = File.ReadAllText($"/proc/{pid}/task/{pid}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (children.Length == 0 || !int.TryParse(children[0], out var child))
                {
                    break;
                }

                pid = child;
            }
            catch (IOException)
            {
                break;
            }
        }

        return pid;
    }

    /// <summary>The outcome of a finished host program.</summary>
    internal sealed record Outcome(int ExitCode, string Stdout, string StderrTail);

    /// <summary>
    /// Runs a program to the end. Each stderr and stdout line goes to <paramref name="onLine"/>;
    /// stdout is returned whole (these are our own tools, not the guest), stderr's tail only.
    /// Cancellation kills the program and everything it started.
    /// </summary>
    internal static async Task<Outcome> RunAsync(string fileName, IEnumerable<string> args, Action<string>? onLine = null,
        string? workingDirectory = null, IDictionary<string, string>? environment = null, CancellationToken cancellationToken = default)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? "/",
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{fileName} did not start");
        process.StandardInput.Close();
        var stdout = new StringBuilder();
        var stderr = new Vmm.BoundedTail(16 * 1024);
        var readOut = Task.Run(async () =>
        {
            while (await process.StandardOutput.ReadLineAsync(CancellationToken.None).ConfigureAwait(false) is { } line)
            {
                stdout.AppendLine(line);
                onLine?.Invoke(line);
            }
        }, CancellationToken.None);
        var readErr = Task.Run(async () =>
        {
            while (await process.StandardError.ReadLineAsync(CancellationToken.None).ConfigureAwait(false) is { } line)
            {
                stderr.Append(Encoding.UTF8.GetBytes(line + "\n"));
                onLine?.Invoke(line);
            }
        }, CancellationToken.None);
        try
        {
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            throw;
        }

        await Task.WhenAll(readOut, readErr).ConfigureAwait(false);
        return new Outcome(process.ExitCode, stdout.ToString(), stderr.Text(40));
    }
}
