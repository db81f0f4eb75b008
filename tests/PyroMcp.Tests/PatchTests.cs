using PyroMcp.Patching;
using System.Diagnostics;
using System.Text;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

public sealed class PatchTests
{
    // Output of `git diff --cached` (git 2.39) for a commit that edits app.py, adds an empty file,
    // changes two distant lines of letters.txt, creates new.txt without a final newline, gives
    // notes.txt one, and deletes old.txt.
    private const string GitSample = """
        diff --git a/app.py b/app.py
        index 6246969..2c432b9 100644
        --- a/app.py
        +++ b/app.py
        @@ -1,6 +1,8 @@
        +import sys
        +
         def greet(name):
        -    return "hi " + name
        +    return "hello " + name
         
         
         def main():
        -    print(greet("world"))
        +    print(greet(sys.argv[1]))
        diff --git a/empty.txt b/empty.txt
        new file mode 100644
        index 0000000..e69de29
        diff --git a/letters.txt b/letters.txt
        index b03757e..aae9eb9 100644
        --- a/letters.txt
        +++ b/letters.txt
        @@ -1,5 +1,5 @@
         a
        -b
        +B
         c
         d
         e
        @@ -11,6 +11,7 @@ j
         k
         l
         m
        -n
        +N
         o
         p
        +q
        diff --git a/new.txt b/new.txt
        new file mode 100644
        index 0000000..b9ae240
        --- /dev/null
        +++ b/new.txt
        @@ -0,0 +1,2 @@
        +fresh
        +file
        \ No newline at end of file
        diff --git a/notes.txt b/notes.txt
        index fa58e34..66d7f36 100644
        --- a/notes.txt
        +++ b/notes.txt
        @@ -1,3 +1,3 @@
         line one
        -line two
        -line three
        \ No newline at end of file
        +line 2
        +line three
        diff --git a/old.txt b/old.txt
        deleted file mode 100644
        index 6e263ab..0000000
        --- a/old.txt
        +++ /dev/null
        @@ -1 +0,0 @@
        -obsolete

        """;

    private const string AppBefore = "def greet(name):\n    return \"hi \" + name\n\n\ndef main():\n    print(greet(\"world\"))\n";
    private const string AppAfter = "import sys\n\ndef greet(name):\n    return \"hello \" + name\n\n\ndef main():\n    print(greet(sys.argv[1]))\n";
    private const string LettersBefore = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\no\np\n";
    private const string LettersAfter = "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nN\no\np\nq\n";

    private static string? RoundTrip(string path, string? before, string? after, int context = 3)
    {
        var diff = UnifiedDiff.Create(path, before, after, context);
        var patch = Assert.Single(PatchParser.Parse(diff));
        return PatchApplier.Apply(patch, before);
    }

    [Fact]
    public void IdenticalTextsGiveAnEmptyDiff()
    {
        Assert.Equal("", UnifiedDiff.Create("a.txt", "x\ny\n", "x\ny\n"));
        Assert.Equal("", UnifiedDiff.Create("a.txt", "", ""));
        Assert.Equal("", UnifiedDiff.Create("a.txt", null, null));
        Assert.Equal("", UnifiedDiff.Create("a.txt", "no newline", "no newline"));
    }

    [Fact]
    public void DiffsMatchGitOutput()
    {
        // The GitSample sections without their index lines, which carry blob hashes.
        Assert.Equal(GitSection("app.py"), UnifiedDiff.Create("app.py", AppBefore, AppAfter));
        Assert.Equal(
            GitSection("letters.txt"),
            // git appends the nearest "function" line to a hunk header; pyro leaves it out.
            UnifiedDiff.Create("letters.txt", LettersBefore, LettersAfter).Replace("@@ -11,6 +11,7 @@\n", "@@ -11,6 +11,7 @@ j\n", StringComparison.Ordinal));
        Assert.Equal(GitSection("new.txt"), UnifiedDiff.Create("new.txt", null, "fresh\nfile"));
        Assert.Equal(GitSection("notes.txt"), UnifiedDiff.Create("notes.txt", "line one\nline two\nline three", "line one\nline 2\nline three\n"));
        Assert.Equal(GitSection("old.txt"), UnifiedDiff.Create("old.txt", "obsolete\n", null));
        Assert.Equal(GitSection("empty.txt"), UnifiedDiff.Create("empty.txt", null, ""));
    }

    private static string GitSection(string path)
    {
        var start = GitSample.IndexOf($"diff --git a/{path} ", StringComparison.Ordinal);
        var end = GitSample.IndexOf("diff --git", start + 1, StringComparison.Ordinal);
        var section = end < 0 ? GitSample[start..] : GitSample[start..end];
        return string.Concat(section.Split('\n').Where(l => !l.StartsWith("index ", StringComparison.Ordinal)).Select(l => l + "\n")).TrimEnd('\n') + "\n";
    }

    [Fact]
    public void NewAndDeletedFilesHaveGitHeaders()
    {
        Assert.Equal(
            "diff --git a/src/x.py b/src/x.py\nnew file mode 100644\n--- /dev/null\n+++ b/src/x.py\n@@ -0,0 +1,3 @@\n+a\n+b\n+c\n",
            UnifiedDiff.Create("src/x.py", null, "a\nb\nc\n"));
        Assert.Equal(
            "diff --git a/src/x.py b/src/x.py\ndeleted file mode 100644\n--- a/src/x.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n",
            UnifiedDiff.Create("src/x.py", "a\nb\n", null));
        Assert.Equal(
            "diff --git a/e b/e\n--- a/e\n+++ b/e\n@@ -0,0 +1 @@\n+x\n",
            UnifiedDiff.Create("e", "", "x\n"));
        Assert.Equal(
            "diff --git a/e b/e\n--- a/e\n+++ b/e\n@@ -1 +0,0 @@\n-x\n",
            UnifiedDiff.Create("e", "x\n", ""));
    }

    [Fact]
    public void HunksCloserThanTwiceTheContextAreMerged()
    {
        // Expected outputs are git diff --no-index's (minus its function-context suffix).
        var before = Numbered(20);
        // Six unchanged lines between the changes, exactly 2*3: one hunk.
        Assert.Equal(
            "diff --git a/n b/n\n--- a/n\n+++ b/n\n@@ -1,13 +1,13 @@\n line 1\n line 2\n-line 3\n+line three\n line 4\n line 5\n line 6\n line 7\n line 8\n line 9\n-line 10\n+line ten\n line 11\n line 12\n line 13\n",
            UnifiedDiff.Create("n", before, Edit(before, (3, "line three"), (10, "line ten"))));
        // Seven: two hunks.
        Assert.Equal(
            "diff --git a/n b/n\n--- a/n\n+++ b/n\n@@ -1,6 +1,6 @@\n line 1\n line 2\n-line 3\n+line three\n line 4\n line 5\n line 6\n@@ -8,7 +8,7 @@\n line 8\n line 9\n line 10\n-line 11\n+line eleven\n line 12\n line 13\n line 14\n",
            UnifiedDiff.Create("n", before, Edit(before, (3, "line three"), (11, "line eleven"))));
        // No context; an empty side is numbered by the line before it.
        Assert.Equal(
            "diff --git a/n b/n\n--- a/n\n+++ b/n\n@@ -3 +3 @@\n-line 3\n+line three\n@@ -11 +10,0 @@\n-line 11\n",
            UnifiedDiff.Create("n", before, Edit(before, (3, "line three"), (11, null)), context: 0));
    }

    private static string Numbered(int count) => string.Concat(Enumerable.Range(1, count).Select(i => $"line {i}\n"));

    /// <summary>Replaces (or with null removes) 1-based lines.</summary>
    private static string Edit(string text, params (int Line, string? Text)[] edits)
    {
        var lines = UnifiedDiff.SplitLines(text);
        foreach (var (line, replacement) in edits.OrderByDescending(e => e.Line))
        {
            if (replacement is null) lines.RemoveAt(line - 1);
            else lines[line - 1] = replacement + "\n";
        }
        return string.Concat(lines);
    }

    [Fact]
    public void MissingFinalNewlinesAreMarked()
    {
        Assert.Equal(
            "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n",
            UnifiedDiff.Create("f", "a\nb", "a\nb\n"));
        Assert.Equal(
            "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1,2 +1,3 @@\n a\n b\n+c\n\\ No newline at end of file\n",
            UnifiedDiff.Create("f", "a\nb\n", "a\nb\nc"));
        Assert.Equal(
            "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n-x\n+y\n b\n\\ No newline at end of file\n",
            UnifiedDiff.Create("f", "x\nb", "y\nb"));
    }

    [Fact]
    public void PathsAreQuotedLikeGit()
    {
        var diff = UnifiedDiff.Create("dir/my file.txt", "a\n", "b\n");
        Assert.StartsWith("diff --git a/dir/my file.txt b/dir/my file.txt\n--- a/dir/my file.txt\t\n+++ b/dir/my file.txt\t\n", diff);
        Assert.Equal("dir/my file.txt", Assert.Single(PatchParser.Parse(diff)).Path);

        var unicode = UnifiedDiff.Create("tést\"q.txt", null, "a\n");
        Assert.StartsWith("diff --git \"a/t\\303\\251st\\\"q.txt\" \"b/t\\303\\251st\\\"q.txt\"\n", unicode);
        Assert.Equal("tést\"q.txt", Assert.Single(PatchParser.Parse(unicode)).Path);
    }

    [Theory]
    [InlineData("", "a\n")]
    [InlineData("a\n", "")]
    [InlineData("", "a")]
    [InlineData("a", "")]
    [InlineData("a", "b")]
    [InlineData("a", "a\n")]
    [InlineData("a\n", "a")]
    [InlineData("a\nb\nc\n", "x\na\nb\nc\n")]
    [InlineData("a\nb\nc\n", "a\nb\nc\nx\n")]
    [InlineData("a\nb\nc\n", "a\nx\nc\n")]
    [InlineData("a\nb\nc\n", "b\nc\n")]
    [InlineData("a\nb\nc\n", "a\nb\n")]
    [InlineData("a\nb\nc", "a\nb\nc\nd")]
    [InlineData("a\nb\nc", "a\nb")]
    [InlineData("\n\n\n", "\n\n")]
    [InlineData("a\r\nb\r\n", "a\r\nc\r\n")]
    [InlineData("a\r\nb\r\n", "a\nb\n")]
    public void EditsRoundTrip(string before, string after)
    {
        foreach (var context in new[] { 0, 1, 3 })
        {
            Assert.Equal(after, RoundTrip("f.txt", before, after, context));
        }
    }

    [Fact]
    public void RandomEditsRoundTripAndAreMinimal()
    {
        var random = new Random(20240611);
        for (var round = 0; round < 600; round++)
        {
            var before = RandomText(random, random.Next(0, 40));
            var after = Mutate(random, before);
            if (after == before)
            {
                Assert.Equal("", UnifiedDiff.Create("src/r.txt", before, after));
                continue;
            }
            foreach (var context in new[] { 0, 1, 3, 5 })
            {
                Assert.Equal(after, RoundTrip("src/r.txt", before, after, context));
            }

            // Myers is minimal: the lines marked changed are exactly those outside a longest common subsequence.
            var diff = UnifiedDiff.Create("src/r.txt", before, after);
            var changed = diff.Split('\n').Count(l => (l.StartsWith('+') && !l.StartsWith("+++ ", StringComparison.Ordinal))
                                                   || (l.StartsWith('-') && !l.StartsWith("--- ", StringComparison.Ordinal)));
            var a = UnifiedDiff.SplitLines(before);
            var b = UnifiedDiff.SplitLines(after);
            Assert.Equal(a.Count + b.Count - 2 * Lcs(a, b), changed);
        }
    }

    [Fact]
    public void CreationAndDeletionRoundTrip()
    {
        Assert.Equal("new\nfile\n", RoundTrip("n.txt", null, "new\nfile\n"));
        Assert.Equal("no newline", RoundTrip("n.txt", null, "no newline"));
        Assert.Equal("", RoundTrip("n.txt", null, ""));
        Assert.Null(RoundTrip("n.txt", "old\n", null));
        Assert.Null(RoundTrip("n.txt", "old", null));
        Assert.Null(RoundTrip("n.txt", "", null));

        var created = Assert.Single(PatchParser.Parse(UnifiedDiff.Create("n.txt", null, "x\n")));
        Assert.Null(created.OldPath);
        Assert.Equal("n.txt", created.NewPath);
        var deleted = Assert.Single(PatchParser.Parse(UnifiedDiff.Create("n.txt", "x\n", null)));
        Assert.Equal("n.txt", deleted.OldPath);
        Assert.Null(deleted.NewPath);
        Assert.Equal("n.txt", deleted.Path);
    }

    [Fact]
    public void CreatingAnExistingFileOrChangingAMissingOneConflicts()
    {
        var create = Assert.Single(PatchParser.Parse(UnifiedDiff.Create("n.txt", null, "x\n")));
        var exists = Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(create, ""));
        Assert.Equal("hunk 1 of n.txt (@@ -0,0 +1 @@) does not apply: the file already exists", exists.Message);

        var change = Assert.Single(PatchParser.Parse(UnifiedDiff.Create("src/app.py", "a\n", "b\n")));
        var missing = Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(change, null));
        Assert.Equal("hunk 1 of src/app.py (@@ -1 +1 @@) does not apply: the file does not exist", missing.Message);
        Assert.Equal(("src/app.py", 1, "@@ -1 +1 @@"), (missing.Path, missing.HunkNumber, missing.HunkHeader));

        var delete = Assert.Single(PatchParser.Parse(UnifiedDiff.Create("d.txt", "a\nb\n", null)));
        Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(delete, null));
        var changed = Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(delete, "a\nc\n"));
        Assert.Equal("hunk 1 of d.txt (@@ -1,2 +0,0 @@) does not apply: line 2 should be 'b' but is 'c'", changed.Message);
        var longer = Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(delete, "a\nb\nc\n"));
        Assert.Contains("does not remove all of it (1 of its 3 lines would remain)", longer.Message, StringComparison.Ordinal);

        var deleteEmpty = Assert.Single(PatchParser.Parse(UnifiedDiff.Create("e.txt", "", null)));
        Assert.Null(PatchApplier.Apply(deleteEmpty, ""));
        var notEmpty = Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(deleteEmpty, "x\n"));
        Assert.Equal(0, notEmpty.HunkNumber);
        Assert.StartsWith("the patch of e.txt does not apply:", notEmpty.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GitOutputParsesAndApplies()
    {
        var files = PatchParser.Parse(GitSample);
        Assert.Equal(["app.py", "empty.txt", "letters.txt", "new.txt", "notes.txt", "old.txt"], files.Select(f => f.Path));

        Assert.Equal(AppAfter, PatchApplier.Apply(files[0], AppBefore));
        Assert.Null(files[1].OldPath);
        Assert.Empty(files[1].Hunks);
        Assert.Equal("", PatchApplier.Apply(files[1], null));
        Assert.Equal(2, files[2].Hunks.Count);
        Assert.Equal("@@ -11,6 +11,7 @@", files[2].Hunks[1].Header);
        Assert.Equal((11, 6, 11, 7), (files[2].Hunks[1].OldStart, files[2].Hunks[1].OldCount, files[2].Hunks[1].NewStart, files[2].Hunks[1].NewCount));
        Assert.Equal(LettersAfter, PatchApplier.Apply(files[2], LettersBefore));
        Assert.True(files[3].Hunks[0].NewEndsWithoutNewline);
        Assert.Equal("fresh\nfile", PatchApplier.Apply(files[3], null));
        Assert.True(files[4].Hunks[0].OldEndsWithoutNewline);
        Assert.False(files[4].Hunks[0].NewEndsWithoutNewline);
        Assert.Equal([" line one", "-line two", "-line three", "+line 2", "+line three"], files[4].Hunks[0].Lines.Select(Encoding.UTF8.GetString));
        Assert.Equal("line one\nline 2\nline three\n", PatchApplier.Apply(files[4], "line one\nline two\nline three"));
        // The marker is respected: the same text with a final newline is a different file.
        Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(files[4], "line one\nline two\nline three\n"));
        Assert.Null(PatchApplier.Apply(files[5], "obsolete\n"));
    }

    [Fact]
    public void GitRenamesAndModeChangesAreFilesWithoutHunks()
    {
        const string patch = """
            diff --git a/old name.txt b/new name.txt
            similarity index 100%
            rename from old name.txt
            rename to new name.txt
            diff --git a/run.sh b/run.sh
            old mode 100644
            new mode 100755
            diff --git a/lib/a.py b/lib/b.py
            similarity index 80%
            rename from lib/a.py
            rename to lib/b.py
            index 1111111..2222222 100644
            --- a/lib/a.py
            +++ b/lib/b.py
            @@ -1,2 +1,2 @@
             x = 1
            -y = 2
            +y = 3

            """;
        var files = PatchParser.Parse(patch);
        Assert.Equal(3, files.Count);
        Assert.Equal(("old name.txt", "new name.txt"), (files[0].OldPath, files[0].NewPath));
        Assert.Empty(files[0].Hunks);
        Assert.Equal("same\n", PatchApplier.Apply(files[0], "same\n"));
        Assert.Equal(("run.sh", "run.sh"), (files[1].OldPath, files[1].NewPath));
        Assert.Equal(("lib/a.py", "lib/b.py"), (files[2].OldPath, files[2].NewPath));
        Assert.Equal("x = 1\ny = 3\n", PatchApplier.Apply(files[2], "x = 1\ny = 2\n"));
    }

    [Fact]
    public void GitQuotedAndSpacedPathsParse()
    {
        // git 2.39 output: a tab ends names with spaces, quotes and octal UTF-8 for the rest.
        const string patch = "diff --git a/my file.txt b/my file.txt\n" +
            "index 587be6b..d735d34 100644\n" +
            "--- a/my file.txt\t\n" +
            "+++ b/my file.txt\t\n" +
            "@@ -1 +1 @@\n-x\n+x2\n" +
            "diff --git \"a/t\\303\\251st\\\"q.txt\" \"b/t\\303\\251st\\\"q.txt\"\n" +
            "index 975fbec..1a78173 100644\n" +
            "--- \"a/t\\303\\251st\\\"q.txt\"\n" +
            "+++ \"b/t\\303\\251st\\\"q.txt\"\n" +
            "@@ -1 +1 @@\n-y\n+y2\n";
        var files = PatchParser.Parse(patch);
        Assert.Equal(["my file.txt", "tést\"q.txt"], files.Select(f => f.Path));
        Assert.Equal("x2\n", PatchApplier.Apply(files[0], "x\n"));
        Assert.Equal(patch.Replace("index 587be6b..d735d34 100644\n", "", StringComparison.Ordinal).Replace("index 975fbec..1a78173 100644\n", "", StringComparison.Ordinal),
            UnifiedDiff.Create("my file.txt", "x\n", "x2\n") + UnifiedDiff.Create("tést\"q.txt", "y\n", "y2\n"));

        // Header-only blocks take their names from the diff --git line, even with spaces.
        var empty = Assert.Single(PatchParser.Parse("diff --git a/new dir/e f b/new dir/e f\nnew file mode 100644\nindex 0000000..e69de29\n"));
        Assert.Equal((null, "new dir/e f"), (empty.OldPath, empty.NewPath));
    }

    [Fact]
    public void MultiFilePatchesWithoutGitHeadersParse()
    {
        // diff -ruN style: timestamps after a tab, no a/ b/ prefixes, text before and between files.
        const string patch = """
            Some explanation an agent wrote.
            diff -ruN orig/one.txt new/one.txt
            --- one.txt	2024-06-01 10:00:00.000000000 +0000
            +++ one.txt	2024-06-01 10:05:00.000000000 +0000
            @@ -1,3 +1,3 @@
             a
            -b
            +B
             c
            Only in new: stray
            --- /dev/null
            +++ two.txt
            @@ -0,0 +1,2 @@
            +hello
            +world
            --- a/three.txt
            +++ b/three.txt
            @@ -2 +2,2 @@
            -q
            +r
            +s
            """;
        var files = PatchParser.Parse(patch);
        Assert.Equal(["one.txt", "two.txt", "three.txt"], files.Select(f => f.Path));
        Assert.Equal(("one.txt", "one.txt"), (files[0].OldPath, files[0].NewPath));
        Assert.Null(files[1].OldPath);
        Assert.Equal("a\nB\nc\n", PatchApplier.Apply(files[0], "a\nb\nc\n"));
        Assert.Equal("hello\nworld\n", PatchApplier.Apply(files[1], null));
        Assert.Equal("p\nr\ns\n", PatchApplier.Apply(files[2], "p\nq\n"));
    }

    [Fact]
    public void ConcatenatedDiffsRoundTrip()
    {
        var texts = new (string Path, string? Before, string? After)[]
        {
            ("src/a.cs", "class A {}\n", "class A { int x; }\n"),
            ("docs/new.md", null, "# Title\n\ntext"),
            ("obsolete.txt", "bye\n", null),
            ("src/b.cs", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\n2\nthree\n4\n5\n6\n7\n8\n9\nten\n"),
        };
        var patch = string.Concat(texts.Select(t => UnifiedDiff.Create(t.Path, t.Before, t.After)));
        var files = PatchParser.Parse(patch);
        Assert.Equal(texts.Length, files.Count);
        for (var i = 0; i < texts.Length; i++)
        {
            Assert.Equal(texts[i].Path, files[i].Path);
            Assert.Equal(texts[i].After, PatchApplier.Apply(files[i], texts[i].Before));
        }
    }

    [Fact]
    public void HunksAreFoundAtAnOffset()
    {
        var original = Numbered(30);
        var edited = Edit(original, (10, "line ten"), (25, "line twenty-five"));
        var patch = Assert.Single(PatchParser.Parse(UnifiedDiff.Create("f", original, edited)));
        Assert.Equal(2, patch.Hunks.Count);

        // The file has since gained four lines at the top and lost one in between: both hunks moved, by different amounts.
        const string top = "new 1\nnew 2\nnew 3\nnew 4\n";
        Assert.Equal(top + Edit(edited, (17, null)), PatchApplier.Apply(patch, top + Edit(original, (17, null))));

        // And moved up instead.
        Assert.Equal(Edit(edited, (2, null), (3, null)), PatchApplier.Apply(patch, Edit(original, (2, null), (3, null))));
    }

    [Fact]
    public void TheNearestMatchWinsAndHunksStayInOrder()
    {
        // "x" occurs twice; the hunk says line 5, so the copy at line 5 changes, not the one at line 2.
        const string patch = "--- a/f\n+++ b/f\n@@ -4,3 +4,3 @@\n a\n-x\n+y\n b\n";
        var file = Assert.Single(PatchParser.Parse(patch));
        Assert.Equal("0\na\nx\nb\na\ny\nb\n", PatchApplier.Apply(file, "0\na\nx\nb\na\nx\nb\n"));
    }

    [Fact]
    public void ConflictsNameTheHunkHeaderAndPath()
    {
        var before = Numbered(20);
        var after = Edit(before, (2, "line two"), (15, "line fifteen"));
        var patch = Assert.Single(PatchParser.Parse(UnifiedDiff.Create("src/app.py", before, after)));

        var current = Edit(before, (14, "changed meanwhile"));
        var conflict = Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(patch, current));
        Assert.Equal(2, conflict.HunkNumber);
        Assert.Equal("@@ -12,7 +12,7 @@", conflict.HunkHeader);
        Assert.Equal("src/app.py", conflict.Path);
        Assert.Equal("hunk 2 of src/app.py (@@ -12,7 +12,7 @@) does not apply: line 14 should be 'line 14' but is 'changed meanwhile'", conflict.Message);

        var shortFile = Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(patch, Numbered(13)));
        Assert.Equal("hunk 2 of src/app.py (@@ -12,7 +12,7 @@) does not apply: line 14 should be 'line 14' but the file ends after line 13", shortFile.Message);
    }

    [Fact]
    public void ContextIsNeverFuzzy()
    {
        var patch = Assert.Single(PatchParser.Parse("--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"));
        var e = Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(patch, "a\nb\nC\n"));
        Assert.Equal("hunk 1 of f (@@ -1,3 +1,3 @@) does not apply: line 3 should be 'c' but is 'C'", e.Message);
        var ws = Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(patch, "a\nb \nc\n"));
        Assert.Equal("hunk 1 of f (@@ -1,3 +1,3 @@) does not apply: line 2 should be 'b' but is 'b '", ws.Message);
        var crlf = Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(patch, "a\r\nb\r\nc\r\n"));
        Assert.Equal("hunk 1 of f (@@ -1,3 +1,3 @@) does not apply: line 1 should be 'a' but is 'a\\r' (the line endings differ: one has CRLF)", crlf.Message);
    }

    [Fact]
    public void NoNewlineMarkersAreRespected()
    {
        var patch = Assert.Single(PatchParser.Parse(UnifiedDiff.Create("f", "a\nb\n", "a\nb\nc")));
        var e = Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(patch, "a\nb"));
        Assert.Equal("hunk 1 of f (@@ -1,2 +1,3 @@) does not apply: line 2 should be 'b' but is 'b' (no newline at end of file)", e.Message);

        // A hunk that ends the new file without a newline must sit at the end of the file.
        var ending = Assert.Single(PatchParser.Parse("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+a\n\\ No newline at end of file\n"));
        Assert.Equal("x\na", PatchApplier.Apply(ending, "x\na\n"));
        var notAtEnd = Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(ending, "a\nx\n"));
        Assert.Contains("ends the file without a newline", notAtEnd.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CrlfPatchTextIsRead()
    {
        var lf = UnifiedDiff.Create("w.txt", "one\ntwo\nthree", "one\n2\nthree");
        var crlf = lf.Replace("\n", "\r\n", StringComparison.Ordinal);
        var file = Assert.Single(PatchParser.Parse(crlf));
        Assert.Equal("w.txt", file.Path);
        Assert.Equal([" one", "-two", "+2", " three"], file.Hunks[0].Lines.Select(Encoding.UTF8.GetString));
        Assert.Equal("one\n2\nthree", PatchApplier.Apply(file, "one\ntwo\nthree"));

        // A git diff of a CRLF file is LF-separated with '\r' inside its lines; those stay content.
        var ofCrlfFile = UnifiedDiff.Create("w.txt", "one\r\ntwo\r\n", "one\r\n2\r\n");
        Assert.Equal("one\r\n2\r\n", PatchApplier.Apply(Assert.Single(PatchParser.Parse(ofCrlfFile)), "one\r\ntwo\r\n"));
    }

    [Theory]
    [InlineData("", "the patch contains no file changes")]
    [InlineData("just some text\nwith no diff in it\n", "the patch contains no file changes")]
    [InlineData("--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n+d\n", "line 7: hunk header '@@ -1,3 +1,3 @@' (line 3) promises 3 old lines but the patch ends after 2")]
    [InlineData("--- a/f\n+++ b/f\n@@ -1,3 +1,4 @@\n a\n-b\n+c\n+d\n", "line 7: hunk header '@@ -1,3 +1,4 @@' (line 3) promises 3 old and 4 new lines but the patch ends after 2 old and 3 new")]
    [InlineData("--- a/f\n+++ b/f\n@@ -1,3 +1,4 @@\n a\n-b\n+c\n+d\n+e\ndiff --git a/g b/g\n", "line 9: hunk header '@@ -1,3 +1,4 @@' (line 3) promises 3 old lines but the hunk ends after 2")]
    [InlineData("--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n d\n", "line 7: hunk header '@@ -1,2 +1,2 @@' (line 3) promises 2 old and 2 new lines but the hunk has more")]
    [InlineData("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n+c\n", "line 6: hunk header '@@ -1 +1 @@' (line 3) promises 1 new lines but the hunk has more")]
    [InlineData("--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\n", "line 6: hunk header '@@ -1,2 +1,2 @@' (line 3) promises 2 new lines but the hunk ends after 1")]
    [InlineData("--- a/f\n+++ b/f\n@@ -1,x +1 @@\n-a\n+b\n", "line 3: malformed hunk header '@@ -1,x +1 @@'; expected '@@ -l,s +l,s @@'")]
    [InlineData("--- a/f\n+++ b/f\n", "line 2: expected a hunk header '@@ -l,s +l,s @@' after '+++ b/f'")]
    [InlineData("--- a/f\n@@ -1 +1 @@\n-a\n+b\n", "line 2: expected a '+++ ' line after '--- a/f'")]
    [InlineData("@@ -1 +1 @@\n-a\n+b\n", "line 1: hunk header '@@ -1 +1 @@' is not inside a file: expected '--- ' and '+++ ' lines before it")]
    [InlineData("+++ b/f\n--- a/f\n", "line 1: '+++ b/f' has no '--- ' line before it")]
    [InlineData("diff --git a/f b/f\n@@ -1 +1 @@\n-a\n+b\n", "line 2: hunk header '@@ -1 +1 @@' has no '--- ' and '+++ ' lines before it")]
    [InlineData("diff --git a/f b/f\nindex 1..2 100644\nBinary files a/f and b/f differ\n", "line 3: the patch says the files differ but carries no binary data: make it with 'git diff --binary' (or export the files instead)")]
    [InlineData("--- /dev/null\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n", "line 3: f is created (--- /dev/null) but hunk header '@@ -1 +1 @@' has old lines")]
    [InlineData("--- a/f\n+++ /dev/null\n@@ -1 +1 @@\n-a\n+b\n", "line 3: f is deleted (+++ /dev/null) but hunk header '@@ -1 +1 @@' has new lines")]
    [InlineData("--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n-a\n\\ No newline at end of file\n b\n+c\n", "line 6: a line follows '\\ No newline at end of file' on the same side")]
    [InlineData("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n\\ No newline at end of file\n@@ -5 +5 @@\n-x\n+y\n", "line 7: hunk '@@ -5 +5 @@' follows a hunk that ends the file ('\\ No newline at end of file')")]
    public void MalformedPatchesNameTheLine(string patch, string message)
    {
        var e = Assert.Throws<PatchFormatException>(() => PatchParser.Parse(patch));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void FormatPatchMailsParse()
    {
        const string mail = """
            From 034f801 Mon Sep 17 00:00:00 2001
            From: Someone <someone@example.com>
            Subject: [PATCH] Fix greeting

            ---
             app.py | 2 +-
             1 file changed, 1 insertion(+), 1 deletion(-)

            diff --git a/app.py b/app.py
            index 6246969..2c432b9 100644
            --- a/app.py
            +++ b/app.py
            @@ -1,2 +1,2 @@
             def greet(name):
            -    return "hi " + name
            +    return "hello " + name
            -- 
            2.39.5

            """;
        var file = Assert.Single(PatchParser.Parse(mail));
        Assert.Equal("def greet(name):\n    return \"hello \" + name\n", PatchApplier.Apply(file, "def greet(name):\n    return \"hi \" + name\n"));
    }

    [Fact]
    public void BlankContextLinesWithoutTheirSpaceAreAccepted()
    {
        var file = Assert.Single(PatchParser.Parse("--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n\n-c\n+C\n"));
        Assert.Equal(" ", Encoding.UTF8.GetString(file.Hunks[0].Lines[1]));
        Assert.Equal("a\n\nC\n", PatchApplier.Apply(file, "a\n\nc\n"));
    }

    [Fact]
    public void TenThousandLineFilesDiffAndApplyExactly()
    {
        var random = new Random(7);
        var lines = Enumerable.Range(0, 10_000).Select(i => $"line {i} {random.Next(1000)}\n").ToArray();
        var before = string.Concat(lines);
        var edited = (string[])lines.Clone();
        for (var i = 0; i < 300; i++) edited[random.Next(edited.Length)] = $"edited {i}\n";
        var after = string.Concat(edited);
        var rewritten = string.Concat(Enumerable.Range(0, 10_000).Select(i => $"other {i}\n"));
        // Few distinct lines makes Myers work hardest: many candidate matches, large D.
        var dense1 = string.Concat(Enumerable.Range(0, 10_000).Select(_ => $"{random.Next(8)}\n"));
        var dense2 = string.Concat(Enumerable.Range(0, 10_000).Select(_ => $"{random.Next(8)}\n"));

        UnifiedDiff.Create("warm", "a\n", "b\n");
        foreach (var (a, b) in new[] { (before, after), (before, rewritten), (dense1, dense2) })
        {
            // Speed belongs to bench/, not to a timed assertion that a loaded CI machine can break:
            // the time is printed as a figure, the result is checked.
            var watch = Stopwatch.StartNew();
            var diff = UnifiedDiff.Create("big.txt", a, b);
            watch.Stop();
            PyroMcp.TestKit.Figures.Record("10,000-line diff", $"{watch.ElapsedMilliseconds} ms for {diff.Length} bytes of patch");
            Assert.Equal(b, PatchApplier.Apply(Assert.Single(PatchParser.Parse(diff)), a));
        }
    }

    private static string RandomText(Random random, int lineCount)
    {
        // A small alphabet so that lines repeat and the diff has real choices to make.
        var text = new StringBuilder();
        for (var i = 0; i < lineCount; i++) text.Append((char)('a' + random.Next(6))).Append('\n');
        if (lineCount > 0 && random.Next(4) == 0) text.Length--;
        return text.ToString();
    }

    private static string Mutate(Random random, string text)
    {
        var lines = UnifiedDiff.SplitLines(text).Select(l => l.TrimEnd('\n')).ToList();
        var edits = random.Next(0, 6);
        for (var e = 0; e < edits; e++)
        {
            var at = random.Next(lines.Count + 1);
            switch (random.Next(3))
            {
                case 0:
                    lines.Insert(at, ((char)('a' + random.Next(8))).ToString());
                    break;
                case 1 when at < lines.Count:
                    lines.RemoveAt(at);
                    break;
                case 2 when at < lines.Count:
                    lines[at] = ((char)('a' + random.Next(8))).ToString();
                    break;
            }
        }
        if (random.Next(3) == 0)
        {
            // Start and end are where off-by-one errors live.
            if (random.Next(2) == 0) lines.Insert(0, "head");
            else lines.Add("tail");
        }
        var result = string.Join("\n", lines);
        var endsWithNewline = random.Next(3) != 0 ? text.EndsWith('\n') || text.Length == 0 : !text.EndsWith('\n');
        return lines.Count == 0 ? "" : endsWithNewline ? result + "\n" : result;
    }

    private static int Lcs(List<string> a, List<string> b)
    {
        var row = new int[b.Count + 1];
        for (var i = 1; i <= a.Count; i++)
        {
            var diagonal = 0;
            for (var j = 1; j <= b.Count; j++)
            {
                var above = row[j];
                row[j] = a[i - 1] == b[j - 1] ? diagonal + 1 : Math.Max(row[j], row[j - 1]);
                diagonal = above;
            }
        }
        return row[b.Count];
    }
}
