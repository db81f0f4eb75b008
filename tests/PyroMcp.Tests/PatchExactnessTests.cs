using System.Text;
using PyroMcp.Patching;
using PyroMcp.Workspaces;
using static PyroMcp.Tests.PatchCorpus;

namespace PyroMcp.Tests;

/// <summary>Patches are bytes: what the old string-based applier lost, named one case at a time.</summary>
public sealed class PatchExactnessTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("pyro-exact-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static PatchFileState Apply(string patch, PatchFileState? current) => Apply(Encoding.Latin1.GetBytes(patch), current)!;

    private static PatchFileState? Apply(byte[] patch, PatchFileState? current) => PatchApplier.Apply(Assert.Single(PatchParser.Parse(patch)), current);

    [Fact]
    public void Latin1AndInvalidUtf8BytesArePatchedAndWrittenUnchanged()
    {
        // git diff of a Latin-1 file carries the raw bytes in its hunk lines.
        var patch = "--- a/l.txt\n+++ b/l.txt\n@@ -1,2 +1,2 @@\n caf\u00e9\n-na\u00efve\n+na\u00efve!\u00ff\n";
        var result = Apply(patch, Blob(Encoding.Latin1.GetBytes("caf\u00e9\nna\u00efve\n")));
        Assert.Equal(Encoding.Latin1.GetBytes("caf\u00e9\nna\u00efve!\u00ff\n"), result.Content);
    }

    [Fact]
    public void CrlfAndAMissingFinalNewlineSurvive()
    {
        var patch = "--- a/w\n+++ b/w\n@@ -1,2 +1,2 @@\n one\r\n-two\r\n\\ No newline at end of file\n+2\r\n\\ No newline at end of file\n";
        Assert.Equal("one\r\n2\r"u8.ToArray(), Apply(patch, Blob("one\r\ntwo\r")).Content);
    }

    [Fact]
    public void ModeChangesAndNewExecutablesCarryTheirMode()
    {
        Assert.Equal(PatchFileState.ExecutableMode, Apply("diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n", Blob("x\n")).Mode);
        var created = Apply("diff --git a/t b/t\nnew file mode 100755\n--- /dev/null\n+++ b/t\n@@ -0,0 +1 @@\n+#!/bin/sh\n", null);
        Assert.Equal((PatchFileState.ExecutableMode, "#!/bin/sh\n"), (created.Mode, Encoding.UTF8.GetString(created.Content)));
        var link = Apply("diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+target\n\\ No newline at end of file\n", null);
        Assert.True(link.IsSymlink);
        Assert.Equal("target"u8.ToArray(), link.Content);
        var wrongType = Assert.Throws<PatchConflictException>(() => Apply("diff --git a/l b/l\nold mode 120000\nnew mode 100644\n", Blob("x\n")));
        Assert.Contains("expects a symlink but it is a regular file", wrongType.Message);
    }

    [Fact]
    public async Task RenamesCopiesAndTheSamePathTwiceApplyInOrder()
    {
        Write(_root, new Dictionary<string, PatchFileState> { ["a"] = Blob("1\n2\n3\n"), ["s"] = Blob("same\n") });
        const string patch = """
            diff --git a/a b/b
            similarity index 80%
            rename from a
            rename to b
            --- a/a
            +++ b/b
            @@ -1,3 +1,3 @@
             1
            -2
            +two
             3
            diff --git a/b b/b
            --- a/b
            +++ b/b
            @@ -1,3 +1,3 @@
             1
             two
            -3
            +three
            diff --git a/s b/c
            similarity index 100%
            copy from s
            copy to c

            """;
        await ApplyAsync(_root, Encoding.UTF8.GetBytes(patch));
        var tree = Read(_root);
        Assert.Equal(["b", "c", "s"], tree.Keys);
        Assert.Equal("1\ntwo\nthree\n", Encoding.UTF8.GetString(tree["b"].Content));
        Assert.Equal("same\n", Encoding.UTF8.GetString(tree["c"].Content));
    }

    [Fact]
    public async Task ARenameOntoAnExistingFileConflictsAndNothingIsPlanned()
    {
        var patches = PatchParser.Parse("diff --git a/a b/b\nsimilarity index 100%\nrename from a\nrename to b\n");
        var e = await Assert.ThrowsAsync<PatchConflictException>(() => PatchPlan.CreateAsync(patches, _ => Task.FromResult<PatchFileState?>(Blob("x\n")), 1 << 20));
        Assert.Contains("renames a to b, which already exists", e.Message);
    }

    [Fact]
    public void GitBinaryLiteralsRoundTripAndABinaryPatchForAnotherBlobConflicts()
    {
        byte[] old = [0, 1, 2, 3, 0xff], @new = [9, 0, 8, 0, 7, 0xfe, 13, 10];
        var diff = UnifiedDiff.Create("b.bin", Blob(old), Blob(@new), out var binary);
        Assert.True(binary);
        Assert.Contains($"index {GitBinary.BlobId(old)}..{GitBinary.BlobId(@new)} 100644\nGIT binary patch\nliteral 8\n", diff);
        Assert.Equal(@new, Apply(Encoding.ASCII.GetBytes(diff), Blob(old))!.Content);
        var other = Assert.Throws<PatchConflictException>(() => Apply(Encoding.ASCII.GetBytes(diff), Blob([1, 2, 3])));
        Assert.Contains("the binary patch was made for blob", other.Message);
        Assert.Equal("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391", GitBinary.BlobId([]));
    }

    [Fact]
    public void BinaryDataThatDoesNotInflateToItsSizeIsRefused()
    {
        var diff = UnifiedDiff.Create("b.bin", null, Blob([0, 1, 2]), out _).Replace("literal 3", "literal 4", StringComparison.Ordinal);
        var e = Assert.Throws<PatchFormatException>(() => PatchParser.Parse(diff));
        Assert.Contains("does not inflate to the 4 bytes", e.Message);
    }

    [Fact]
    public void AGitDeltaAppliesAndADeltaForAnotherBaseIsAClearConflict()
    {
        // delta: base 5, result 7; copy 5 bytes from offset 0 (0x90 0x05), insert 2 bytes "!\n".
        byte[] delta = [5, 7, 0x90, 5, 2, (byte)'!', (byte)'\n'];
        Assert.Equal("hello!\n"u8.ToArray(), GitBinary.ApplyDelta("hello"u8, delta, 1 << 20, out var error));
        Assert.Null(error);
        Assert.Null(GitBinary.ApplyDelta("hi"u8, delta, 1 << 20, out error));
        Assert.Equal("the delta is for a file of 5 bytes but the file has 2", error);
        Assert.Null(GitBinary.ApplyDelta("hello"u8, [5, 7, 0x90, 9], 1 << 20, out error));
        Assert.Equal("a copy of the delta reaches past the end of the file", error);
    }

    [Fact]
    public void AResultLargerThanTheCapIsAConflictNotATruncation()
    {
        var patch = PatchParser.Parse("--- a/f\n+++ b/f\n@@ -1 +1,2 @@\n a\n+bbbbbbbbbbbbbbbbbbbb\n")[0];
        var e = Assert.Throws<PatchConflictException>(() => PatchApplier.Apply(patch, Blob("a\n"), maxBytes: 10));
        Assert.Contains("more than the limit", e.Message);
    }

    [Fact]
    public void ADiffLargerThanItsCapIsAnErrorThatNamesTheLimitAndTheWayOut()
    {
        var before = Entries(new Dictionary<string, PatchFileState> { ["a"] = Blob("a\n") });
        var after = Entries(new Dictionary<string, PatchFileState> { ["a"] = Blob(new string('b', 5000) + "\n") });
        var e = Assert.Throws<GuestOperationException>(() => TreeDiff.Compare("w", before, after, maxPatchBytes: 1000));
        Assert.Equal("diff_too_large", e.Code);
        Assert.Contains("1000 bytes limit", e.Message);
        Assert.Contains("export the files", e.Message);
        Assert.NotEmpty(TreeDiff.Compare("w", before, after).Patch);
    }

    [Fact]
    public void NonUtf8ContentIsDiffedAsABinaryPatchNeverAsReplacementCharacters()
    {
        var before = Entries(new Dictionary<string, PatchFileState> { ["l.txt"] = Blob(Encoding.Latin1.GetBytes("caf\u00e9\n")) });
        var after = Entries(new Dictionary<string, PatchFileState> { ["l.txt"] = Blob(Encoding.Latin1.GetBytes("caf\u00e9!\n")) });
        var diff = TreeDiff.Compare("w", before, after);
        Assert.DoesNotContain("\uFFFD", diff.Patch);
        Assert.Contains("GIT binary patch\n", diff.Patch);
        Assert.Equal(1, diff.NonText);
        Assert.Equal(Encoding.Latin1.GetBytes("caf\u00e9!\n"), Apply(Encoding.ASCII.GetBytes(diff.Patch), Blob(Encoding.Latin1.GetBytes("caf\u00e9\n")))!.Content);
    }

    [Fact]
    public void SymlinksAndTypeChangesAreDiffedAsGitShowsThem()
    {
        var before = Entries(new Dictionary<string, PatchFileState> { ["l"] = Link("a"), ["f"] = Blob("x\n") });
        var after = Entries(new Dictionary<string, PatchFileState> { ["l"] = Link("b"), ["f"] = Link("l") });
        var patch = TreeDiff.Compare("w", before, after).Patch;
        Assert.Contains("diff --git a/l b/l\n--- a/l\n+++ b/l\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n", patch);
        Assert.Contains("diff --git a/f b/f\ndeleted file mode 100644\n", patch);
        Assert.Contains("diff --git a/f b/f\nnew file mode 120000\n", patch);
    }
}
