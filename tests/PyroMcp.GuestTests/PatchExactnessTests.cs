using System.Diagnostics;
using System.Text;

namespace PyroMcp.GuestTests;

/// <summary>
/// <c>workspace diff</c> and <c>workspace patch apply</c> against a real guest and real git:
/// dotfiles, CRLF, Latin-1, modes, renames, symlinks and binary bytes survive both ways exactly.
/// </summary>
public sealed class PatchExactnessTests : GuestTest
{
    [Fact]
    public async Task GuestEditsRoundTripThroughGitApplyAndHostGitDiffsApplyExactlyInTheGuest()
    {
        var seed = Path.Combine(HostDir, "seed");
        WriteSeed(seed);
        var id = await CreateWorkspaceAsync(["--seed-path", seed]);

        // Edits made inside the guest: printf writes the exact bytes (\r, octal Latin-1).
        await Ok("workspace", "exec", id, "--", "sh", "-c",
            "printf 'export A=2\\n' > .envrc && printf 'on: pull_request\\n' > .github/ci.yml && " +
            "printf 'one\\r\\nTWO\\r\\nthree\\r\\n' > win.bat && printf 'caf\\351 cr\\350me br\\373l\\351e\\n' > latin1.txt && " +
            "chmod 755 run.sh && mv keep.txt moved.txt && ln -s .envrc envlink && printf 'no newline' > tail.txt");

        // (1) The diff, applied by git apply to a host copy of the seed, gives what the guest holds.
        var diff = (await Ok("workspace", "diff", id, "--json")).Json;
        var patch = diff.GetProperty("patch").GetString()!;
        Assert.Contains("diff --git a/.envrc b/.envrc\n", patch);
        Assert.Contains("diff --git a/.github/ci.yml b/.github/ci.yml\n", patch);
        Assert.Contains("old mode 100644\nnew mode 100755\n", patch);
        Assert.Contains("new file mode 120000\n", patch);
        Assert.DoesNotContain("\uFFFD", patch);
        var copy = Path.Combine(HostDir, "copy");
        CopyTree(seed, copy);
        var patchFile = Path.Combine(HostDir, "guest.patch");
        await File.WriteAllTextAsync(patchFile, patch, new UTF8Encoding(false));
        Git(copy, "apply", "--whitespace=nowarn", patchFile);
        var exported = Path.Combine(HostDir, "exported");
        await Ok("workspace", "export", id, ".", "--output", exported);
        Assert.Equal(Snapshot(exported), Snapshot(copy));
        Assert.Equal(Encoding.Latin1.GetBytes("caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\n"), File.ReadAllBytes(Path.Combine(copy, "latin1.txt")));

        // (2) A git diff -M --binary made on the host applies in the guest, and the guest's bytes are git's.
        var repo = Path.Combine(HostDir, "repo");
        CopyTree(exported, repo);
        Git(repo, "init", "-q");
        Git(repo, "add", "-A");
        var tree = Encoding.ASCII.GetString(Git(repo, "write-tree")).Trim();
        File.WriteAllBytes(Path.Combine(repo, "latin1.txt"), Encoding.Latin1.GetBytes("caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\nd\u00e9j\u00e0 vu\n"));
        File.WriteAllBytes(Path.Combine(repo, "win.bat"), Encoding.ASCII.GetBytes("one\r\nTWO\r\n3\r\nfour"));
        File.Move(Path.Combine(repo, "moved.txt"), Path.Combine(repo, "renamed.txt"));
        File.SetUnixFileMode(Path.Combine(repo, "run.sh"), (UnixFileMode)0x1A4);
        File.Delete(Path.Combine(repo, ".github", "ci.yml"));
        File.WriteAllBytes(Path.Combine(repo, ".bin"), [0, 1, 2, 255, 0, 13, 10]);
        File.AppendAllText(Path.Combine(repo, ".envrc"), "export B=3\n");
        Git(repo, "add", "-A");
        var hostPatch = Path.Combine(HostDir, "host.patch");
        File.WriteAllBytes(hostPatch, Git(repo, "diff", "--cached", "-M", "--binary", tree));
        Assert.Contains("rename from moved.txt", File.ReadAllText(hostPatch));

        var applied = (await Ok("workspace", "patch", "apply", id, "--patch-file", hostPatch, "--json")).Json;
        // A rename creates its target and deletes its source: created .bin and renamed.txt; deleted ci.yml and moved.txt.
        Assert.Equal((2, 4, 2), (applied.GetProperty("created").GetInt32(), applied.GetProperty("modified").GetInt32(), applied.GetProperty("deleted").GetInt32()));
        foreach (var file in new[] { "latin1.txt", "win.bat", ".bin", ".envrc", "renamed.txt" })
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(repo, file)), await ReadAsync(id, file));
        }

        Assert.Equal("644\n", (await Ok("workspace", "exec", id, "--", "stat", "-c", "%a", "run.sh")).Stdout);
        Assert.Equal(1, (await PyroCli.RunAsync("workspace", "exec", id, "--", "test", "-e", "moved.txt")).ExitCode);
        var after = Path.Combine(HostDir, "after");
        await Ok("workspace", "export", id, ".", "--output", after);
        Assert.Equal(Snapshot(repo, skip: ".git"), Snapshot(after));
    }

    private static void WriteSeed(string seed)
    {
        Directory.CreateDirectory(Path.Combine(seed, ".github"));
        File.WriteAllText(Path.Combine(seed, ".envrc"), "export A=1\n");
        File.WriteAllText(Path.Combine(seed, "envrc"), "export A=1\n");
        File.WriteAllText(Path.Combine(seed, ".github", "ci.yml"), "on: push\n");
        File.WriteAllBytes(Path.Combine(seed, "win.bat"), Encoding.ASCII.GetBytes("one\r\ntwo\r\nthree\r\n"));
        File.WriteAllBytes(Path.Combine(seed, "latin1.txt"), Encoding.Latin1.GetBytes("caf\u00e9 cr\u00e8me\n"));
        File.WriteAllText(Path.Combine(seed, "run.sh"), "#!/bin/sh\necho run\n");
        File.SetUnixFileMode(Path.Combine(seed, "run.sh"), (UnixFileMode)0x1A4);
        File.WriteAllText(Path.Combine(seed, "keep.txt"), string.Concat(Enumerable.Range(0, 20).Select(i => $"kept line {i}\n")));
        File.WriteAllText(Path.Combine(seed, "tail.txt"), "with newline\n");
    }

    private static Task<ProcessResult> Ok(params string[] args) => PyroCli.OkAsync(args);

    private static async Task<byte[]> ReadAsync(string id, string path)
    {
        using var read = PyroCli.Start(["workspace", "file", "read", id, path, "--content-only"]);
        read.StandardInput.Close();
        using var bytes = new MemoryStream();
        await read.StandardOutput.BaseStream.CopyToAsync(bytes);
        await read.WaitForExitAsync();
        Assert.Equal(0, read.ExitCode);
        return bytes.ToArray();
    }

    /// <summary>git with no system or user configuration, so nothing on the machine changes what it does.</summary>
    private byte[] Git(string cwd, params string[] args)
    {
        Assert.True(File.Exists("/usr/bin/git"), "git is not installed on this host (/usr/bin/git): install it to run this test");
        var start = new ProcessStartInfo("/usr/bin/git") { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        start.Environment.Clear();
        start.Environment["PATH"] = "/usr/bin:/bin";
        start.Environment["HOME"] = HostDir;
        start.Environment["GIT_CONFIG_NOSYSTEM"] = "1";
        start.Environment["GIT_CONFIG_GLOBAL"] = "/dev/null";
        start.Environment["GIT_CEILING_DIRECTORIES"] = HostDir;
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        using var stdout = new MemoryStream();
        process.StandardOutput.BaseStream.CopyTo(stdout);
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"git {string.Join(' ', args)}: {stderr.Result}");
        return stdout.ToArray();
    }

    private static void CopyTree(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var entry in Directory.GetFileSystemEntries(from))
        {
            var target = Path.Combine(to, Path.GetFileName(entry));
            var info = new FileInfo(entry);
            if (info.LinkTarget is { } link)
            {
                File.CreateSymbolicLink(target, link);
            }
            else if (Directory.Exists(entry))
            {
                CopyTree(entry, target);
            }
            else
            {
                File.Copy(entry, target);
                File.SetUnixFileMode(target, File.GetUnixFileMode(entry));
            }
        }
    }

    /// <summary>Every file and symlink as "path mode sha256" (links: their target), as git would see the tree.</summary>
    private static List<string> Snapshot(string root, string? skip = null)
    {
        var lines = new List<string>();
        Walk(root, "");
        lines.Sort(StringComparer.Ordinal);
        return lines;

        void Walk(string dir, string prefix)
        {
            foreach (var entry in Directory.GetFileSystemEntries(dir))
            {
                var name = prefix + Path.GetFileName(entry);
                if (name == skip)
                {
                    continue;
                }

                var info = new FileInfo(entry);
                if (info.LinkTarget is { } link)
                {
                    lines.Add($"{name} 120000 -> {link}");
                }
                else if (Directory.Exists(entry))
                {
                    Walk(entry, name + "/");
                }
                else
                {
                    var executable = ((int)File.GetUnixFileMode(entry) & 0x49) != 0 ? "100755" : "100644";
                    lines.Add($"{name} {executable} {Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(entry)))}");
                }
            }
        }
    }
}
