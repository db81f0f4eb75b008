using System.Globalization;

namespace PyroMcp.TestKit;

/// <summary>
/// The figure lines adversarial tests print ("N tried, 0 escapes"). Each line goes to
/// <c>artifacts/test-figures.txt</c> at the checkout root, which <c>test.sh</c> prints after the
/// run, so the figures are visible whatever the test logger shows.
/// </summary>
internal static class Figures
{
    private static readonly Lock Gate = new();

    /// <summary>Records one figure: <paramref name="suite"/> names the test, <paramref name="figure"/> the measured line.</summary>
    internal static void Record(string suite, string figure)
    {
        var line = string.Create(CultureInfo.InvariantCulture, $"[figure] {suite}: {figure}");
        lock (Gate)
        {
            var file = FiguresFile();
            if (file is not null)
            {
                File.AppendAllText(file, line + "\n");
            }
        }

        Console.Error.WriteLine(line);
    }

    /// <summary>Peak resident memory of this test process so far, in MiB (VmHWM).</summary>
    internal static double PeakRssMib()
    {
        foreach (var l in File.ReadLines("/proc/self/status"))
        {
            if (l.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                return long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
            }
        }

        return double.NaN;
    }

    private static string? FiguresFile()
    {
        if (Environment.GetEnvironmentVariable("PYRO_TEST_FIGURES") is { Length: > 0 } path)
        {
            return path;
        }

        if (Repo.RootOrNull is { } root)
        {
            Directory.CreateDirectory(Path.Combine(root, "artifacts"));
            return Path.Combine(root, "artifacts", "test-figures.txt");
        }

        return null;
    }
}
