using System.Diagnostics;

namespace PyroMcp.Tests;

/// <summary>
/// Another process holding an flock, the way a supervisor or an operation in flight does:
/// flock --no-fork execs tail, which keeps the locked descriptor and whose command line carries
/// <paramref name="label"/> words (a supervisor's name and workspace, for identity checks).
/// </summary>
internal static class FlockHolder
{
    internal static Process Start(string lockPath, params string[] label)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(lockPath)!);
        var start = new ProcessStartInfo("flock") { UseShellExecute = false };
        foreach (var arg in new[] { "--no-fork", "--exclusive", lockPath, "tail", "-qf", "--", "/dev/null" }.Concat(label))
        {
            start.ArgumentList.Add(arg);
        }

        var process = Process.Start(start)!;
        // Held once tail runs (flock took the lock before it exec'd).
        for (var i = 0; i < 200 && !File.ReadAllText($"/proc/{process.Id}/cmdline").StartsWith("tail", StringComparison.Ordinal); i++)
        {
            Thread.Sleep(10);
        }

        return process;
    }

    internal static void Stop(Process process)
    {
        if (!process.HasExited)
        {
            process.Kill();
            process.WaitForExit();
        }

        process.Dispose();
    }
}
