using PyroMcp.Patching;
using System.Text;
using PyroMcp.Workspaces;
using static PyroMcp.Tests.PatchCorpus;

namespace PyroMcp.Tests;

/// <summary>
/// The property that ties diff and patch together, checked against git itself on a corpus:
/// what <c>workspace diff</c> prints turns the baseline into the current tree under
/// <c>git apply</c>, and what <c>git diff -M --binary</c> prints turns it there under pyro's
/// applier; byte for byte and mode for mode.
/// </summary>
public sealed class PatchRoundTripTests : IDisposable
{
    private const int Seed = 20261201;
    private const int GeneratedCases = 300;

    private static readonly string[] Names =
    [
        "a.txt", ".envrc", "envrc", ".github/ci.yml", ".github/workflows/test.yml", "src/main.c", "src/.hidden/x",
        "with space.txt", "quo\"te.txt", "tab\there.txt", "ünï cödé.md", "dir with space/f", "-dash", "b", "back\\slash", "c.bin",
    ];

    private static readonly string[] Words = ["alpha", "beta", "gamma", "", "    indented", "{", "}", "return 0;", "héllo wörld", "x = 1", "// comment", "\t\ttabbed"];

    private readonly string _root = Directory.CreateTempSubdirectory("pyro-roundtrip-").FullName;

    private int _dirs;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string NewDir(string kind) => Directory.CreateDirectory(Path.Combine(_root, $"{kind}-{++_dirs}")).FullName;

    [Fact]
    public async Task WorkspaceDiffAndPatchApplyAgreeWithGitOnACorpus()
    {
        var cases = Crafted().Concat(Generated()).ToList();
        var toGit = Mismatches(cases, DiffThenGitApply);
        var fromGit = await MismatchesAsync(cases, GitDiffThenPatchApplyAsync);
        var mismatches = toGit.Union(fromGit.Keys).Count();
        Figures.Record("diff/patch round trip vs git apply",
            $"{cases.Count} cases, {mismatches} mismatches (workspace diff -> git apply: {toGit.Count}, git diff -M --binary -> patch apply: {fromGit.Count})");
        Assert.True(toGit.Count == 0, "workspace diff -> git apply failed for: " + string.Join("; ", toGit.Take(5)));
        Assert.True(fromGit.Count == 0, "git diff -> patch apply failed for: " + string.Join("; ", fromGit.Take(5).Select(p => $"{p.Key}: {p.Value}")));
    }

    internal sealed record Case(string Name, Dictionary<string, PatchFileState> Before, Dictionary<string, PatchFileState> After);

    /// <summary>(a) for one batch of cases: TreeDiff's patch, applied by git apply to the baseline.</summary>
    private string? DiffThenGitApply(List<Case> batch, string dir)
    {
        var (before, after) = Combine(batch);
        var work = Path.Combine(dir, "work");
        Write(work, before);
        var patch = TreeDiff.Compare("t", Entries(before), Entries(after)).Patch;
        var patchFile = Path.Combine(dir, "diff.patch");
        System.IO.File.WriteAllText(patchFile, patch, new UTF8Encoding(false));
        var (exit, _, stderr) = RunGit(work, dir, "apply", "--whitespace=nowarn", patchFile);
        if (exit != 0)
        {
            return "git apply: " + stderr.Trim();
        }

        return Difference(after, Read(work));
    }

    /// <summary>(b) for one batch of cases: git diff -M --binary between the trees, applied by pyro to the baseline.</summary>
    private async Task<string?> GitDiffThenPatchApplyAsync(List<Case> batch, string dir)
    {
        var (before, after) = Combine(batch);
        var repo = Path.Combine(dir, "repo");
        Write(repo, before);
        Check(RunGit(repo, dir, "init", "-q"));
        Check(RunGit(repo, dir, "add", "-A"));
        var tree = Encoding.ASCII.GetString(Check(RunGit(repo, dir, "write-tree"))).Trim();
        foreach (var entry in Directory.GetFileSystemEntries(repo).Where(e => Path.GetFileName(e) != ".git"))
        {
            if (Directory.Exists(entry) && new FileInfo(entry).LinkTarget is null) Directory.Delete(entry, true); else System.IO.File.Delete(entry);
        }

        Write(repo, after);
        Check(RunGit(repo, dir, "add", "-A"));
        var patch = Check(RunGit(repo, dir, "-c", "core.quotePath=true", "diff", "--cached", "-M", "--binary", "--full-index", tree));
        var work = Path.Combine(dir, "work");
        Write(work, before);
        try
        {
            await ApplyAsync(work, patch);
        }
        catch (Exception ex) when (ex is PatchFormatException or PatchConflictException or PyroException)
        {
            return $"{ex.GetType().Name}: {ex.Message}";
        }

        return Difference(after, Read(work));

        static byte[] Check((int Exit, byte[] Stdout, string Stderr) run) =>
            run.Exit == 0 ? run.Stdout : throw new InvalidOperationException("git failed: " + run.Stderr);
    }

    /// <summary>Runs all cases as one batch (one git run); when that fails, each case alone, to name and count the ones that fail.</summary>
    private List<string> Mismatches(List<Case> cases, Func<List<Case>, string, string?> check)
    {
        var dir = NewDir("batch");
        if (check(cases, dir) is not { } batchFailure)
        {
            return [];
        }

        var failed = new List<string>();
        foreach (var one in cases)
        {
            var single = NewDir("case");
            if (check([one], single) is { } why)
            {
                failed.Add($"{one.Name}: {why}");
            }
        }

        // Every case passes alone but not together: still a mismatch, never a pass.
        return failed.Count > 0 ? failed : [$"all cases together: {batchFailure}"];
    }

    private async Task<Dictionary<string, string>> MismatchesAsync(List<Case> cases, Func<List<Case>, string, Task<string?>> check)
    {
        var dir = NewDir("batch");
        if (await check(cases, dir) is not { } batchFailure)
        {
            return [];
        }

        var failed = new Dictionary<string, string>();
        foreach (var one in cases)
        {
            var single = NewDir("case");
            if (await check([one], single) is { } why)
            {
                failed[one.Name] = why;
            }
        }

        return failed.Count > 0 ? failed : new() { ["all cases together"] = batchFailure };
    }

    /// <summary>Each case in its own directory of one tree, so one git run covers them all (renames may then cross cases, which is fine).</summary>
    private static (Dictionary<string, PatchFileState> Before, Dictionary<string, PatchFileState> After) Combine(List<Case> batch)
    {
        var before = new Dictionary<string, PatchFileState>(StringComparer.Ordinal);
        var after = new Dictionary<string, PatchFileState>(StringComparer.Ordinal);
        for (var i = 0; i < batch.Count; i++)
        {
            var prefix = batch.Count == 1 ? "" : $"c{i:D3}/";
            foreach (var (path, node) in batch[i].Before) before[prefix + path] = node;
            foreach (var (path, node) in batch[i].After) after[prefix + path] = node;
        }

        return (before, after);
    }

    private static Dictionary<string, PatchFileState> Tree(params (string Path, PatchFileState Node)[] nodes) =>
        nodes.ToDictionary(n => n.Path, n => n.Node, StringComparer.Ordinal);

    private static byte[] Latin1(string text) => Encoding.Latin1.GetBytes(text);

    internal static IEnumerable<Case> Crafted()
    {
        yield return new("crlf", Tree(("w.bat", Blob("one\r\ntwo\r\nthree\r\n"))), Tree(("w.bat", Blob("one\r\n2\r\nthree\r\n"))));
        yield return new("mixed endings", Tree(("m", Blob("a\r\nb\nc\r\nd"))), Tree(("m", Blob("a\nb\r\nc\r\nd\r\n"))));
        yield return new("latin-1", Tree(("l.txt", Blob(Latin1("caf\u00e9\nna\u00efve\n")))), Tree(("l.txt", Blob(Latin1("caf\u00e9\nna\u00efve!\n\u00ff\n")))));
        yield return new("latin-1 to utf-8", Tree(("l.txt", Blob(Latin1("caf\u00e9\n")))), Tree(("l.txt", Blob("café\n"))));
        yield return new("nul bytes", Tree(("n.bin", Blob([1, 0, 2, 0, 10, 3]))), Tree(("n.bin", Blob([1, 0, 2, 0, 10, 4, 0]))));
        yield return new("no newline either side", Tree(("e", Blob("x\ny"))), Tree(("e", Blob("x\nz"))));
        yield return new("newline added", Tree(("e", Blob("x\ny"))), Tree(("e", Blob("x\ny\n"))));
        yield return new("newline removed", Tree(("e", Blob("x\ny\n"))), Tree(("e", Blob("x\ny"))));
        yield return new("empty files", Tree(("e1", Blob("")), ("e2", Blob("x\n"))), Tree(("e1", Blob("x\n")), ("e2", Blob("")), ("e3", Blob(""))));
        yield return new("mode only", Tree(("run.sh", Blob("#!/bin/sh\n"))), Tree(("run.sh", Blob("#!/bin/sh\n", executable: true))));
        yield return new("mode and content", Tree(("run.sh", Blob("#!/bin/sh\n", executable: true))), Tree(("run.sh", Blob("#!/bin/sh\necho\n"))));
        yield return new("new executable", Tree(), Tree(("bin/tool", Blob("#!/bin/sh\n", executable: true))));
        yield return new("dotfiles", Tree((".envrc", Blob("A=1\n")), ("envrc", Blob("A=1\n")), (".github/ci.yml", Blob("on: push\n"))),
            Tree((".envrc", Blob("A=2\n")), ("envrc", Blob("A=1\n")), (".github/ci.yml", Blob("on: pull_request\n")), (".git-keep/.x", Blob(""))));
        yield return new("odd names", Tree(("with space.txt", Blob("a\n")), ("tab\there", Blob("b\n")), ("quo\"te", Blob("c\n")), ("ünï", Blob("d\n")), ("back\\slash", Blob("e\n"))),
            Tree(("with space.txt", Blob("A\n")), ("tab\there", Blob("B\n")), ("quo\"te", Blob("C\n")), ("ünï", Blob("D\n")), ("back\\slash", Blob("E\n"))));
        var body = string.Concat(Enumerable.Range(0, 40).Select(i => $"line {i}\n"));
        yield return new("rename", Tree(("old name.txt", Blob(body))), Tree(("new dir/new name.txt", Blob(body))));
        yield return new("rename with edit", Tree(("r/a.py", Blob(body))), Tree(("r/b.py", Blob(body.Replace("line 7\n", "line seven\n", StringComparison.Ordinal)))));
        yield return new("rename and mode", Tree(("s", Blob(body))), Tree(("t", Blob(body, executable: true))));
        yield return new("file to symlink", Tree(("l", Blob("x\n")), ("t", Blob("t\n"))), Tree(("l", Link("t")), ("t", Blob("t\n"))));
        yield return new("symlink to file", Tree(("l", Link("t"))), Tree(("l", Blob("now a file\n"))));
        yield return new("symlink target", Tree(("l", Link("a")), ("m", Link("../outside"))), Tree(("l", Link("b/c")), ("m", Link("no/such"))));
        yield return new("file to directory", Tree(("x", Blob("x\n"))), Tree(("x/inner", Blob("x\n"))));
        yield return new("directory to file", Tree(("d/a", Blob("a\n")), ("d/b", Blob("b\n"))), Tree(("d", Blob("d\n"))));
        yield return new("deletions", Tree(("gone", Blob("bye\n")), ("gone.bin", Blob([0, 1, 2])), ("gone link", Link("x"))), Tree());
        var longLine = new string('x', 200_000);
        yield return new("long lines", Tree(("long", Blob(longLine + "\nend\n"))), Tree(("long", Blob(longLine + "y\nend\n"))));
        var big = new byte[60_000];
        new Random(Seed).NextBytes(big);
        var bigAfter = (byte[])big.Clone();
        bigAfter[30_000] ^= 0xff;
        yield return new("binary delta", Tree(("big.bin", Blob(big))), Tree(("big.bin", Blob(bigAfter))));
        yield return new("bom", Tree(("bom", Blob([0xEF, 0xBB, 0xBF, (byte)'a', (byte)'\n']))), Tree(("bom", Blob([0xEF, 0xBB, 0xBF, (byte)'b', (byte)'\n']))));
    }

    internal static IEnumerable<Case> Generated()
    {
        var random = new Random(Seed);
        for (var i = 0; i < GeneratedCases; i++)
        {
            var before = new Dictionary<string, PatchFileState>(StringComparer.Ordinal);
            foreach (var name in Names.OrderBy(_ => random.Next()).Take(random.Next(1, 6)))
            {
                before[name] = random.Next(10) == 0 ? Link(Names[random.Next(Names.Length)]) : Blob(Content(random), random.Next(5) == 0);
            }

            var after = new Dictionary<string, PatchFileState>(before, StringComparer.Ordinal);
            var edits = random.Next(1, 4);
            for (var e = 0; e < edits; e++)
            {
                var path = after.Keys.Order(StringComparer.Ordinal).ElementAtOrDefault(random.Next(Math.Max(1, after.Count)));
                var free = Names.Where(n => !after.Keys.Any(k => k == n || k.StartsWith(n + "/", StringComparison.Ordinal) || n.StartsWith(k + "/", StringComparison.Ordinal))).ToList();
                switch (random.Next(9))
                {
                    case 0 or 1 or 2 when path is not null && !after[path].IsSymlink:
                        after[path] = after[path] with { Content = Mutate(random, after[path].Content) };
                        break;
                    case 3 when path is not null:
                        after.Remove(path);
                        break;
                    case 4 when free.Count > 0:
                        after[free[random.Next(free.Count)]] = Blob(Content(random), random.Next(4) == 0);
                        break;
                    case 5 when path is not null && free.Count > 0:
                        var node = after[path];
                        after.Remove(path);
                        after[free[random.Next(free.Count)]] = node.IsSymlink || random.Next(2) == 0 ? node : node with { Content = Mutate(random, node.Content) };
                        break;
                    case 6 when path is not null && !after[path].IsSymlink:
                        after[path] = after[path] with { Mode = after[path].Mode == PatchFileState.ExecutableMode ? PatchFileState.RegularMode : PatchFileState.ExecutableMode };
                        break;
                    case 7 when path is not null:
                        after[path] = after[path].IsSymlink ? Blob(Content(random)) : Link(Names[random.Next(Names.Length)]);
                        break;
                    case 8 when path is not null && !after.Keys.Any(k => k.StartsWith(path + "/", StringComparison.Ordinal)):
                        var moved = after[path];
                        after.Remove(path);
                        after[path + "/inner"] = moved;
                        break;
                }
            }

            yield return new($"generated {i}", before, after);
        }
    }

    private static byte[] Content(Random random)
    {
        switch (random.Next(12))
        {
            case 0:
                return [];
            case 1:
                var bytes = new byte[random.Next(1, 3000)];
                random.NextBytes(bytes);
                return bytes;
        }

        var ending = random.Next(4) switch { 0 => "\r\n", 1 => "mixed", _ => "\n" };
        var text = new List<byte>();
        var lines = random.Next(1, 30);
        for (var l = 0; l < lines; l++)
        {
            var word = Words[random.Next(Words.Length)];
            text.AddRange(random.Next(15) == 0 ? Latin1("na\u00efve caf\u00e9") : Encoding.UTF8.GetBytes(word));
            if (random.Next(40) == 0) text.Add(0);
            if (random.Next(60) == 0) text.AddRange(Encoding.ASCII.GetBytes(new string('y', 5000)));
            if (l < lines - 1 || random.Next(4) != 0)
            {
                text.AddRange(Encoding.ASCII.GetBytes(ending == "mixed" ? (random.Next(2) == 0 ? "\r\n" : "\n") : ending));
            }
        }

        return [.. text];
    }

    private static byte[] Mutate(Random random, byte[] content)
    {
        var lines = PatchApplier.SplitLines(content).Select(l => l.ToArray()).ToList();
        var edits = random.Next(1, 4);
        for (var e = 0; e < edits; e++)
        {
            var at = random.Next(lines.Count + 1);
            switch (random.Next(5))
            {
                case 0 when at < lines.Count:
                    lines.RemoveAt(at);
                    break;
                case 1 when at < lines.Count:
                    lines[at] = [.. Encoding.UTF8.GetBytes(Words[random.Next(Words.Length)]), .. (random.Next(3) == 0 ? "\r\n"u8.ToArray() : "\n"u8.ToArray())];
                    break;
                case 2 when lines.Count > 0:
                    // Toggle the final newline.
                    var last = lines[^1];
                    lines[^1] = last.Length > 0 && last[^1] == '\n' ? last[..^1] : [.. last, (byte)'\n'];
                    break;
                default:
                    var inserted = Encoding.UTF8.GetBytes(Words[random.Next(Words.Length)] + "\n");
                    if (at == lines.Count && at > 0 && lines[^1] is { Length: > 0 } end && end[^1] != '\n')
                    {
                        lines[^1] = [.. end, (byte)'\n'];
                    }

                    lines.Insert(at, inserted);
                    break;
            }
        }

        return lines.SelectMany(l => l).ToArray();
    }
}
