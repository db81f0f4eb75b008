using PyroMcp.Workspaces;

namespace PyroMcp.Patching;

/// <summary>
/// What a whole patch does to a tree, worked out in memory before anything is written: each
/// file patch applies to the result of the ones before it (a path may be touched twice, a rename
/// empties its source, a copy keeps it), so nothing is written unless everything applies.
/// </summary>
internal sealed class PatchPlan
{
    private readonly Dictionary<string, PatchFileState?> _original = new(StringComparer.Ordinal);
    private readonly Dictionary<string, PatchFileState?> _final = new(StringComparer.Ordinal);
    private readonly List<string> _order = [];

    private PatchPlan()
    {
    }

    /// <summary>Paths whose content, mode or existence changes, in the order the patch first touches them.</summary>
    internal IReadOnlyList<string> Changed { get; private set; } = [];

    /// <summary>Changed paths to remove before anything is written: deleted, or changing between file and symlink.</summary>
    internal IEnumerable<string> Removals => Changed.Where(p => _original[p] is { } was && (_final[p] is not { } now || now.IsSymlink != was.IsSymlink));

    /// <summary>Changed paths to write (after the removals), with their new state.</summary>
    internal IEnumerable<(string Path, PatchFileState State, PatchFileState? Was)> Writes =>
        Changed.Where(p => _final[p] is not null).Select(p => (p, _final[p]!, _original[p]));

    internal int Created => Changed.Count(p => _original[p] is null);

    internal int Modified => Changed.Count(p => _original[p] is not null && _final[p] is not null);

    internal int Deleted => Changed.Count(p => _final[p] is null);

    /// <summary>
    /// Plans <paramref name="patches"/> against files read through <paramref name="read"/> (null:
    /// nothing there), holding at most <paramref name="maxHeldBytes"/> of content.
    /// Throws <see cref="PatchConflictException"/> when a change does not apply.
    /// </summary>
    internal static async Task<PatchPlan> CreateAsync(IReadOnlyList<FilePatch> patches, Func<string, Task<PatchFileState?>> read, long maxHeldBytes)
    {
        var plan = new PatchPlan();
        long held = 0;
        foreach (var patch in patches)
        {
            foreach (var path in new[] { patch.OldPath, patch.NewPath })
            {
                if (path is not null && !plan._final.ContainsKey(path))
                {
                    var found = await read(path).ConfigureAwait(false);
                    plan._original[path] = found;
                    plan._final[path] = found;
                    plan._order.Add(path);
                    Hold(found);
                }
            }

            var current = plan._final[patch.OldPath ?? patch.NewPath!];
            if (patch.Moves && plan._final[patch.NewPath!] is not null)
            {
                throw new PatchConflictException(patch.Path, 0, "", $"the patch {(patch.IsCopy ? "copies" : "renames")} {patch.OldPath} to {patch.NewPath}, which already exists");
            }

            var updated = PatchApplier.Apply(patch, current);
            if (patch.Moves && !patch.IsCopy)
            {
                plan._final[patch.OldPath!] = null;
            }

            plan._final[patch.NewPath ?? patch.OldPath!] = updated;
            Hold(updated);
        }

        plan.Changed = plan._order.Where(p => !Same(plan._original[p], plan._final[p])).ToList();
        return plan;

        void Hold(PatchFileState? state)
        {
            held += state?.Content.Length ?? 0;
            if (held > maxHeldBytes)
            {
                throw new PyroInputException("patch_too_large",
                    $"the files this patch touches hold more than {maxHeldBytes >> 20} MiB; nothing was changed. Split the patch into smaller ones");
            }
        }
    }

    private static bool Same(PatchFileState? a, PatchFileState? b) =>
        a is null ? b is null : b is not null && a.Mode == b.Mode && a.Content.AsSpan().SequenceEqual(b.Content);
}
