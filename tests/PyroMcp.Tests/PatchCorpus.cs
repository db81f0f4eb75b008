using PyroMcp.Trees;
using System.Diagnostics;
using System.Text;
using PyroMcp.Patching;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>Trees of files and symlinks for the round-trip tests, on disk and in memory, and git run with a clean environment.</summary>
internal static class PatchCorpus
{
    internal static readonly string Git = System.IO.File.Exists("/usr/bin/git") ? "/usr/bin/git"
        : throw new InvalidOperationException("git is not installed on this host (/usr/bin/git): install it (apt-get install git) to run the patch round-trip tests");

    internal static PatchFileState Blob(string text, bool executable = false) => Blob(Encoding.UTF8.GetBytes(text), executable);

    internal static PatchFileState Blob(byte[] content, bool executable = false) =>
        new(content, executable ? PatchFileState.ExecutableMode : PatchFileState.RegularMode);

    internal static PatchFileState Link(string target) => new(Encoding.UTF8.GetBytes(target), PatchFileState.SymlinkMode);

    internal static void Write(string root, IReadOnlyDictionary<string, PatchFileState> tree)
    {
        Directory.CreateDirectory(root);
        foreach (var (path, node) in tree)
        {
            var full = Path.Combine(root, path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            if (node.IsSymlink)
            {
                System.IO.File.CreateSymbolicLink(full, Encoding.UTF8.GetString(node.Content));
            }
            else
            {
                System.IO.File.WriteAllBytes(full, node.Content);
                System.IO.File.SetUnixFileMode(full, (UnixFileMode)(node.Mode == PatchFileState.ExecutableMode ? 0x1ED : 0x1A4));
            }
        }
    }

    /// <summary>Files and symlinks under <paramref name="root"/> (never following a link), as git would record them; empty directories are not in git.</summary>
    internal static SortedDictionary<string, PatchFileState> Read(string root, string? skip = null)
    {
        var tree = new SortedDictionary<string, PatchFileState>(StringComparer.Ordinal);
        Walk(root, "");
        return tree;

        void Walk(string directory, string prefix)
        {
            foreach (var full in Directory.GetFileSystemEntries(directory))
            {
                var name = prefix + Path.GetFileName(full);
                if (name == skip)
                {
                    continue;
                }

                var info = new FileInfo(full);
                if (info.LinkTarget is { } target)
                {
                    tree[name] = Link(target);
                }
                else if (Directory.Exists(full))
                {
                    Walk(full, name + "/");
                }
                else
                {
                    tree[name] = new PatchFileState(System.IO.File.ReadAllBytes(full), PatchFileState.GitFileMode((int)System.IO.File.GetUnixFileMode(full)));
                }
            }
        }
    }

    /// <summary>The tree as the workspace's tar reader hands it to <see cref="TreeDiff"/>.</summary>
    internal static Dictionary<string, TreeEntry> Entries(IReadOnlyDictionary<string, PatchFileState> tree)
    {
        var entries = new Dictionary<string, TreeEntry>(StringComparer.Ordinal);
        foreach (var (path, node) in tree)
        {
            for (var slash = path.IndexOf('/', StringComparison.Ordinal); slash > 0; slash = path.IndexOf('/', slash + 1))
            {
                entries[path[..slash]] = new TreeEntry("directory", 0x1ED, null, null);
            }

            entries[path] = node.IsSymlink
                ? new TreeEntry("symlink", 0x1FF, null, Encoding.UTF8.GetString(node.Content))
                : new TreeEntry("file", node.Mode == PatchFileState.ExecutableMode ? 0x1ED : 0x1A4, node.Content, null);
        }

        return entries;
    }

    /// <summary>Applies a patch to a directory the way the workspace does: plan in memory, removals, then writes.</summary>
    internal static async Task ApplyAsync(string root, byte[] patch)
    {
        var plan = await PatchPlan.CreateAsync(PatchParser.Parse(patch), path => Task.FromResult(State(Path.Combine(root, path))), 1L << 30);
        foreach (var path in plan.Removals.ToList())
        {
            System.IO.File.Delete(Path.Combine(root, path));
            for (var dir = Path.GetDirectoryName(Path.Combine(root, path))!; dir != root && Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any(); dir = Path.GetDirectoryName(dir)!)
            {
                Directory.Delete(dir);
            }
        }

        foreach (var (path, now, _) in plan.Writes.ToList())
        {
            var full = Path.Combine(root, path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            if (now.IsSymlink)
            {
                // A link whose target changes is replaced, as the workspace's extractor replaces it.
                System.IO.File.Delete(full);
                System.IO.File.CreateSymbolicLink(full, Encoding.UTF8.GetString(now.Content));
            }
            else
            {
                System.IO.File.WriteAllBytes(full, now.Content);
                System.IO.File.SetUnixFileMode(full, (UnixFileMode)(now.Mode == PatchFileState.ExecutableMode ? 0x1ED : 0x1A4));
            }
        }

        static PatchFileState? State(string full)
        {
            var info = new FileInfo(full);
            if (info.LinkTarget is { } target)
            {
                return Link(target);
            }

            if (Directory.Exists(full))
            {
                // As in the workspace: no file there; a creation waits for the removals to empty it.
                return null;
            }

            return info.Exists ? new PatchFileState(System.IO.File.ReadAllBytes(full), PatchFileState.GitFileMode((int)info.UnixFileMode)) : null;
        }
    }

    /// <summary>Runs git with no system or user configuration, so nothing on the machine changes its output.</summary>
    internal static (int Exit, byte[] Stdout, string Stderr) RunGit(string cwd, string home, params string[] args)
    {
        var start = new ProcessStartInfo(Git) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        start.Environment.Clear();
        start.Environment["PATH"] = "/usr/bin:/bin";
        start.Environment["HOME"] = home;
        start.Environment["GIT_CONFIG_NOSYSTEM"] = "1";
        start.Environment["GIT_CONFIG_GLOBAL"] = "/dev/null";
        start.Environment["GIT_CEILING_DIRECTORIES"] = Path.GetDirectoryName(cwd.TrimEnd('/'))!;
        start.Environment["LC_ALL"] = "C";
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        using var stdout = new MemoryStream();
        process.StandardOutput.BaseStream.CopyTo(stdout);
        process.WaitForExit();
        return (process.ExitCode, stdout.ToArray(), stderr.Result);
    }

    /// <summary>Where two trees differ, for a failure message; null when they are the same.</summary>
    internal static string? Difference(IReadOnlyDictionary<string, PatchFileState> expected, IReadOnlyDictionary<string, PatchFileState> actual)
    {
        foreach (var path in expected.Keys.Union(actual.Keys).Order(StringComparer.Ordinal))
        {
            expected.TryGetValue(path, out var e);
            actual.TryGetValue(path, out var a);
            if (e is null || a is null)
            {
                return $"{path}: {(e is null ? "not expected" : "missing")}";
            }

            if (e.Mode != a.Mode)
            {
                return $"{path}: mode {Convert.ToString(a.Mode, 8)}, expected {Convert.ToString(e.Mode, 8)}";
            }

            if (!e.Content.AsSpan().SequenceEqual(a.Content))
            {
                return $"{path}: content differs ({a.Content.Length} bytes, expected {e.Content.Length})";
            }
        }

        return null;
    }
}
