using System.Text;
using System.Text.RegularExpressions;

namespace PyroMcp.GuestTests;

/// <summary>
/// docs/first-run.md is a transcript of a real run: this test runs its commands again, in order, in
/// one shell (a copy of examples/ as the working directory, an empty environment cache so the pull
/// really builds, stdout and stderr together as a terminal shows them), normalises what differs
/// from run to run, and compares the result with the transcript. <c>PYRO_APPROVE=1</c> writes the
/// normalised run into the doc instead, for a change of output that is meant. The commands come
/// from the doc (its <c>$ </c> lines); DocsTests does not run them a second time (the block is
/// <c>console</c>, not <c>bash</c>).
/// </summary>
public sealed partial class FirstRunTests : GuestTest
{
    private const string Doc = "docs/first-run.md";
    private const string Begin = "<!-- transcript: begin (FirstRunTests runs it; PYRO_APPROVE=1 rewrites it) -->\n```console\n";
    private const string End = "```\n<!-- transcript: end -->";

    /// <summary>Marks where one command's output starts in the shell's combined output.</summary>
    private const char Separator = '\u001e';

    [Fact]
    public async Task TheFirstRunTranscriptMatchesARealRun()
    {
        var path = Path.Combine(Repo.Root, Doc);
        var text = File.ReadAllText(path);
        var start = text.IndexOf(Begin, StringComparison.Ordinal);
        var end = text.IndexOf(End, StringComparison.Ordinal);
        Assert.True(start >= 0 && end > start, $"{Doc} has no transcript between its markers");
        var transcript = text[(start + Begin.Length)..end];
        var commands = transcript.Split('\n').Where(l => l.StartsWith("$ ", StringComparison.Ordinal)).Select(l => l[2..]).ToList();
        Assert.True(commands.Count >= 10, $"{Doc}: only {commands.Count} commands in the transcript");

        var work = Path.Combine(HostDir, "examples");
        CopyDirectory(Path.Combine(Repo.Root, "examples", "repo"), Path.Combine(work, "repo"));
        CopyDirectory(Path.Combine(Repo.Root, "examples", "changes"), Path.Combine(work, "changes"));
        var cache = Path.Combine(HostDir, "environments");
        var env = new Dictionary<string, string>(Repo.ScratchEnvironment) { ["PYRO_ENVIRONMENT_CACHE_DIR"] = cache };

        var script = new StringBuilder("set -euo pipefail\nexec 2>&1\n");
        script.Append($"pyro() {{ '{Repo.Cli}' \"$@\"; }}\n");
        foreach (var command in commands)
        {
            script.Append($"printf '\\036%s\\n' {Quote(command)}\n{command}\n");
        }

        var result = await Processes.RunAsync("bash", ["-c", script.ToString()], work, env, TimeSpan.FromMinutes(20));
        foreach (var id in Regex.Matches(result.Stdout, @"workspace_id=([0-9a-f]{12})\b").Select(m => m.Groups[1].Value).Distinct())
        {
            DeleteAfterwards(id);
        }

        var run = Normalize(result.Stdout, [work, cache, Path.Combine(Repo.Root, "artifacts", "pyro")], Environment.GetEnvironmentVariable("HOME"));
        Assert.True(result.ExitCode == 0, $"the first-run commands failed (exit {result.ExitCode}):\n{run}\n{result.Stderr}");

        var actual = string.Concat(run.Split(Separator, StringSplitOptions.RemoveEmptyEntries).Select(part => "$ " + part));
        if (Environment.GetEnvironmentVariable("PYRO_APPROVE") == "1")
        {
            File.WriteAllText(path, text[..(start + Begin.Length)] + actual + text[end..]);
            return;
        }

        Assert.True(transcript == actual, $"{Doc} no longer matches a real run. If the change is meant, rewrite it with\n" +
            "  PYRO_APPROVE=1 dotnet test tests/PyroMcp.GuestTests -c Release --no-build --filter FullyQualifiedName~FirstRunTests\n" +
            $"--- {Doc} ---\n{transcript}\n--- this run ---\n{actual}");
    }

    /// <summary>
    /// What differs between two runs on the same host becomes <c>...</c>: the given paths (the
    /// working directory, the environment cache, the CLI's directory; the home directory becomes
    /// <c>~</c>), ids and digests (12 or more hex digits), times and dates, and the values of keys
    /// that measure time or memory (<c>duration_ms=</c> and every other <c>_ms=</c>, <c>memory_mib=</c>).
    /// Progress lines of the runtime bundle are dropped: they show only when the shared runtime
    /// cache is built, which the run before this one may have done.
    /// </summary>
    internal static string Normalize(string output, IEnumerable<string> paths, string? home)
    {
        foreach (var path in paths.OrderByDescending(p => p.Length))
        {
            output = output.Replace(path, "...", StringComparison.Ordinal);
        }

        if (!string.IsNullOrEmpty(home))
        {
            // Only where a path starts: /root must not turn .../rootfs.ext4 into ...~fs.ext4.
            output = Regex.Replace(output, @"(?<=^|[\s=:(])" + Regex.Escape(home.TrimEnd('/')) + "(?=/)", "~", RegexOptions.Multiline);
        }

        output = string.Join('\n', output.Split('\n').Where(l => !l.StartsWith("[runtime] ", StringComparison.Ordinal)));
        output = Timestamp().Replace(output, "...");
        output = HexId().Replace(output, "...");
        return Measured().Replace(output, "$1=...");
    }

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''") + "'";

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }

    [GeneratedRegex(@"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z?")]
    private static partial Regex Timestamp();

    [GeneratedRegex(@"\b[0-9a-f]{12,64}\b")]
    private static partial Regex HexId();

    [GeneratedRegex(@"\b(\w+_ms|memory_mib)=[0-9.]+")]
    private static partial Regex Measured();
}
