using PyroMcp.Trees;
using System.Text;

namespace PyroMcp.Patching;

/// <summary>
/// Compares two /workspace trees (baseline and now) and renders the changes to files and
/// symlinks as one git patch that <c>git apply</c> turns the baseline into the current tree with,
/// byte for byte and mode for mode.
/// </summary>
internal static class TreeDiff
{
    /// <summary>Most bytes of patch a diff returns: beyond it the answer is an error, never a cut patch.</summary>
    internal const long MaxPatchBytes = 64L * 1024 * 1024;

    internal static WorkspaceDiff Compare(string workspaceId, IReadOnlyDictionary<string, TreeEntry> before, IReadOnlyDictionary<string, TreeEntry> after, long maxPatchBytes = MaxPatchBytes)
    {
        var changes = new List<DiffEntry>();
        var patch = new StringBuilder();
        long patchBytes = 0;
        int added = 0, modified = 0, deleted = 0, typeChanged = 0, textPatched = 0, nonText = 0;
        foreach (var path in before.Keys.Union(after.Keys).Order(StringComparer.Ordinal))
        {
            before.TryGetValue(path, out var old);
            after.TryGetValue(path, out var now);
            ChangeKind change;
            if (old is null)
            {
                change = ChangeKind.Added;
                added++;
            }
            else if (now is null)
            {
                change = ChangeKind.Deleted;
                deleted++;
            }
            else if (old.Kind != now.Kind)
            {
                change = ChangeKind.TypeChanged;
                typeChanged++;
            }
            else if (old.Mode != now.Mode || old.LinkTarget != now.LinkTarget || !SameContent(old.Content, now.Content))
            {
                change = ChangeKind.Modified;
                modified++;
            }
            else
            {
                continue;
            }

            var kind = KindOf((now ?? old)!);
            var oldState = State(old);
            var newState = State(now);
            var text = false;
            if (oldState is not null || newState is not null)
            {
                // A file that becomes a symlink (or back) is a deletion and a creation in git.
                var sides = oldState is not null && newState is not null && oldState.IsSymlink != newState.IsSymlink
                    ? new[] { (oldState, (PatchFileState?)null), (null, newState) }
                    : [(oldState, newState)];
                foreach (var (from, to) in sides)
                {
                    var rendered = UnifiedDiff.Create(path, from, to, out var binary);
                    if (rendered.Length == 0)
                    {
                        continue;
                    }

                    patchBytes += Encoding.UTF8.GetByteCount(rendered);
                    if (patchBytes > maxPatchBytes)
                    {
                        throw new GuestOperationException("diff_too_large",
                            $"the patch of /workspace is larger than the {Limit(maxPatchBytes)} limit of a workspace diff; " +
                            "export the files from the workspace instead, or diff after removing large generated files");
                    }

                    patch.Append(rendered);
                    if (binary)
                    {
                        nonText++;
                    }
                    else if (rendered.Contains("\n@@ ", StringComparison.Ordinal))
                    {
                        text = true;
                        textPatched++;
                    }
                }
            }

            changes.Add(new DiffEntry(path, change, kind, text));
        }

        return new WorkspaceDiff
        {
            WorkspaceId = workspaceId,
            Added = added,
            Modified = modified,
            Deleted = deleted,
            TypeChanged = typeChanged,
            TextPatched = textPatched,
            NonText = nonText,
            Changes = changes,
            Patch = patch.ToString(),
        };
    }

    /// <summary>A file or symlink as git sees it: content (a link's target) and git mode; null for anything else.</summary>
    internal static PatchFileState? State(TreeEntry? entry) => entry?.Kind switch
    {
        "file" => new PatchFileState(entry.Content ?? [], PatchFileState.GitFileMode(entry.Mode)),
        "symlink" when entry.LinkTarget is { Length: > 0 } target => new PatchFileState(Encoding.UTF8.GetBytes(target), PatchFileState.SymlinkMode),
        _ => null,
    };

    /// <summary>The public kind of a tree entry (<see cref="TreeReader"/> names them as tar does).</summary>
    internal static EntryKind KindOf(TreeEntry entry) => entry.Kind switch
    {
        "file" => EntryKind.File,
        "directory" => EntryKind.Directory,
        "symlink" => EntryKind.Symlink,
        _ => EntryKind.Other,
    };

    private static string Limit(long bytes) => bytes >= 1 << 20 ? $"{bytes >> 20} MiB" : $"{bytes} bytes";

    private static bool SameContent(byte[]? a, byte[]? b) => a is null ? b is null : b is not null && a.AsSpan().SequenceEqual(b);
}
