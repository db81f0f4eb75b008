using PyroMcp.Patching;
using PyroMcp.Trees;
using System.Formats.Tar;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>How names in a guest's tar become the paths <c>workspace diff</c> reports and patches.</summary>
public sealed class TreeNameTests
{
    private static async Task<Dictionary<string, TreeEntry>> ReadAsync(params (string Name, string Content)[] files)
    {
        using var tar = new MemoryStream();
        await using (var writer = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach (var (name, content) in files)
            {
                var entry = new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(content)) };
                await writer.WriteEntryAsync(entry);
            }
        }

        tar.Position = 0;
        return await TreeReader.ReadAsync(tar, CancellationToken.None);
    }

    [Fact]
    public async Task LeadingDotsOfNamesAreKeptAndOnlyDotSlashIsDropped()
    {
        var tree = await ReadAsync(("./.github/ci.yml", "a"), (".envrc", "b"), ("envrc", "c"), ("././x", "d"), ("..hidden", "e"));
        Assert.Equal(["..hidden", ".envrc", ".github/ci.yml", "envrc", "x"], tree.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("b"u8.ToArray(), tree[".envrc"].Content);
        Assert.Equal("c"u8.ToArray(), tree["envrc"].Content);
    }

    [Fact]
    public async Task AnEditToADotfileCannotHideBehindAPlainName()
    {
        var before = await ReadAsync((".envrc", "export A=1\n"), ("envrc", "plain\n"));
        var after = await ReadAsync((".envrc", "export A=2\n"), ("envrc", "plain\n"));
        var diff = TreeDiff.Compare("w", before, after);
        var change = Assert.Single(diff.Changes);
        Assert.Equal(".envrc", change.Path);
        Assert.Contains("diff --git a/.envrc b/.envrc\n", diff.Patch, StringComparison.Ordinal);
    }
}
