using System.Text;

namespace PyroMcp.Patching;

/// <summary>
/// Writes git-style unified diffs. Output is meant to be read by agents and by
/// <see cref="PatchParser"/>/<c>git apply</c>, so it follows git's formatting exactly (header
/// lines, hunk ranges, the no-newline marker, path quoting).
/// </summary>
internal static class UnifiedDiff
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    internal const string NoNewlineMarker = "\\ No newline at end of file";

    /// <summary>
    /// A diff of one file. <paramref name="oldText"/> null means the file is created,
    /// <paramref name="newText"/> null that it is deleted. Returns "" when nothing changed.
    /// </summary>
    internal static string Create(string path, string? oldText, string? newText, int context = 3) =>
        Create(path,
            oldText is null ? null : new PatchFileState(Encoding.UTF8.GetBytes(oldText), PatchFileState.RegularMode),
            newText is null ? null : new PatchFileState(Encoding.UTF8.GetBytes(newText), PatchFileState.RegularMode),
            out _, context);

    /// <summary>
    /// A git diff of one path whose two sides are of the same type (a file and a symlink need a
    /// deletion and a creation, as git writes them). Text that is UTF-8 without NUL bytes is
    /// written as hunks; anything else as a git binary patch, because a string patch cannot
    /// carry other bytes exactly. Mode changes are git's "old mode"/"new mode" lines. Returns ""
    /// when nothing git records changed.
    /// </summary>
    internal static string Create(string path, PatchFileState? old, PatchFileState? @new, out bool binary, int context = 3)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfNegative(context);
        binary = false;
        var sameContent = old is not null && @new is not null && old.Content.AsSpan().SequenceEqual(@new.Content);
        if ((old is null && @new is null) || (sameContent && old!.Mode == @new!.Mode))
        {
            return "";
        }

        var oldName = QuotePath("a/" + path);
        var newName = QuotePath("b/" + path);
        var output = new StringBuilder();
        output.Append("diff --git ").Append(oldName).Append(' ').Append(newName).Append('\n');
        if (old is null)
        {
            output.Append("new file mode ").Append(Octal(@new!.Mode)).Append('\n');
        }
        else if (@new is null)
        {
            output.Append("deleted file mode ").Append(Octal(old.Mode)).Append('\n');
        }
        else if (old.Mode != @new.Mode)
        {
            output.Append("old mode ").Append(Octal(old.Mode)).Append('\n');
            output.Append("new mode ").Append(Octal(@new.Mode)).Append('\n');
        }
        if (sameContent)
        {
            return output.ToString();
        }

        var oldText = old is null ? "" : AsText(old.Content);
        var newText = @new is null ? "" : AsText(@new.Content);
        if (oldText is null || newText is null)
        {
            // git apply insists on full blob ids for a binary patch, and checks both against the files.
            binary = true;
            output.Append("index ").Append(old is null ? GitBinary.NullId : GitBinary.BlobId(old.Content))
                  .Append("..").Append(@new is null ? GitBinary.NullId : GitBinary.BlobId(@new.Content));
            if (old is not null && @new is not null)
            {
                output.Append(' ').Append(Octal(@new.Mode));
            }
            output.Append("\nGIT binary patch\n");
            GitBinary.AppendLiteral(output, @new is null ? [] : @new.Content);
            GitBinary.AppendLiteral(output, old is null ? [] : old.Content);
            return output.ToString();
        }

        var oldLines = SplitLines(oldText);
        var newLines = SplitLines(newText);
        // git describes creating or deleting an empty file with the extended header alone.
        if (oldLines.Count == 0 && newLines.Count == 0)
        {
            return output.ToString();
        }

        // git ends a name containing a space with a tab so that readers know where it stops.
        var tab = path.Contains(' ', StringComparison.Ordinal) ? "\t" : "";
        output.Append("--- ").Append(old is null ? "/dev/null" : oldName + tab).Append('\n');
        output.Append("+++ ").Append(@new is null ? "/dev/null" : newName + tab).Append('\n');

        var edits = LineDiff.Compute(oldLines, newLines);
        AppendHunks(output, edits, oldLines, newLines, context);
        return output.ToString();
    }

    private static string Octal(int mode) => Convert.ToString(mode, 8);

    /// <summary>The content as text, or null when a string patch cannot carry it exactly (a NUL byte, or not UTF-8).</summary>
    internal static string? AsText(byte[] content)
    {
        if (content.AsSpan().Contains((byte)0))
        {
            return null;
        }

        try
        {
            return StrictUtf8.GetString(content);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }

    /// <summary>Splits on '\n', keeping each terminator so that a last line without one differs from the same line with one.</summary>
    internal static List<string> SplitLines(string text)
    {
        var lines = new List<string>();
        var start = 0;
        while (start < text.Length)
        {
            var end = text.IndexOf('\n', start);
            if (end < 0)
            {
                lines.Add(text[start..]);
                break;
            }
            lines.Add(text.Substring(start, end - start + 1));
            start = end + 1;
        }
        return lines;
    }

    /// <summary>A line number and count as git writes them: the count is left out when it is 1.</summary>
    internal static string FormatRange(int start, int count) =>
        count == 1 ? start.ToString(System.Globalization.CultureInfo.InvariantCulture)
                   : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{start},{count}");

    private static void AppendHunks(StringBuilder output, List<Edit> edits, List<string> oldLines, List<string> newLines, int context)
    {
        var changes = new List<int>();
        for (var i = 0; i < edits.Count; i++)
        {
            if (edits[i].Kind != EditKind.Keep)
            {
                changes.Add(i);
            }
        }

        var c = 0;
        while (c < changes.Count)
        {
            // Changes separated by at most 2*context unchanged lines share one hunk, as in diff -u and git.
            var last = c;
            while (last + 1 < changes.Count && changes[last + 1] - changes[last] - 1 <= 2 * context)
            {
                last++;
            }
            var from = Math.Max(0, changes[c] - context);
            var to = Math.Min(edits.Count, changes[last] + 1 + context);
            AppendHunk(output, edits, from, to, oldLines, newLines);
            c = last + 1;
        }
    }

    private static void AppendHunk(StringBuilder output, List<Edit> edits, int from, int to, List<string> oldLines, List<string> newLines)
    {
        int oldCount = 0, newCount = 0;
        for (var i = from; i < to; i++)
        {
            if (edits[i].Kind != EditKind.Insert) oldCount++;
            if (edits[i].Kind != EditKind.Delete) newCount++;
        }
        // An empty side is named by the line before it, hence no +1 there.
        var oldStart = edits[from].OldIndex + (oldCount > 0 ? 1 : 0);
        var newStart = edits[from].NewIndex + (newCount > 0 ? 1 : 0);
        output.Append("@@ -").Append(FormatRange(oldStart, oldCount))
              .Append(" +").Append(FormatRange(newStart, newCount)).Append(" @@\n");

        for (var i = from; i < to; i++)
        {
            var edit = edits[i];
            var (prefix, line) = edit.Kind switch
            {
                EditKind.Keep => (' ', oldLines[edit.OldIndex]),
                EditKind.Delete => ('-', oldLines[edit.OldIndex]),
                _ => ('+', newLines[edit.NewIndex]),
            };
            output.Append(prefix);
            if (line.EndsWith('\n'))
            {
                output.Append(line);
            }
            else
            {
                output.Append(line).Append('\n').Append(NoNewlineMarker).Append('\n');
            }
        }
    }

    /// <summary>Quotes a path the way git does (core.quotePath): C escapes, octal for bytes outside printable ASCII.</summary>
    internal static string QuotePath(string path)
    {
        var needsQuotes = false;
        foreach (var ch in path)
        {
            if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
            {
                needsQuotes = true;
                break;
            }
        }
        if (!needsQuotes)
        {
            return path;
        }

        var quoted = new StringBuilder(path.Length + 8).Append('"');
        foreach (var b in Encoding.UTF8.GetBytes(path))
        {
            switch (b)
            {
                case (byte)'\a': quoted.Append("\\a"); break;
                case (byte)'\b': quoted.Append("\\b"); break;
                case (byte)'\t': quoted.Append("\\t"); break;
                case (byte)'\n': quoted.Append("\\n"); break;
                case (byte)'\v': quoted.Append("\\v"); break;
                case (byte)'\f': quoted.Append("\\f"); break;
                case (byte)'\r': quoted.Append("\\r"); break;
                case (byte)'"': quoted.Append("\\\""); break;
                case (byte)'\\': quoted.Append("\\\\"); break;
                default:
                    if (b < 0x20 || b >= 0x7f)
                    {
                        quoted.Append('\\').Append(Convert.ToString(b, 8).PadLeft(3, '0'));
                    }
                    else
                    {
                        quoted.Append((char)b);
                    }
                    break;
            }
        }
        return quoted.Append('"').ToString();
    }

    private enum EditKind
    {
        Keep,
        Delete,
        Insert,
    }

    /// <summary>One step of an edit script; indexes are where each side stands when the step is taken.</summary>
    private readonly record struct Edit(EditKind Kind, int OldIndex, int NewIndex);

    /// <summary>
    /// Minimal line diff: Myers' O((N+M)D) algorithm in its linear-space, middle-snake form.
    /// Lines are interned to ints first so comparisons are cheap, and lines that occur on one side
    /// only are set aside before the search (they can never be matched), which keeps D small for
    /// rewritten files the way git's xdiff does. Only a stretch needing more than
    /// <see cref="CostLimit"/> edits on each side of its middle gets a merely good diff; see <see cref="GiveUp"/>.
    /// </summary>
    private sealed class LineDiff
    {
        private const int CostLimit = 512;

        private readonly int[] _a;
        private readonly int[] _b;
        private readonly bool[] _aChanged;
        private readonly bool[] _bChanged;

        private LineDiff(int[] a, int[] b)
        {
            _a = a;
            _b = b;
            _aChanged = new bool[a.Length];
            _bChanged = new bool[b.Length];
        }

        internal static List<Edit> Compute(List<string> oldLines, List<string> newLines)
        {
            var ids = new Dictionary<string, int>(StringComparer.Ordinal);
            var oldIds = Intern(oldLines, ids);
            var newIds = Intern(newLines, ids);

            var inOld = new bool[ids.Count];
            var inNew = new bool[ids.Count];
            foreach (var id in oldIds) inOld[id] = true;
            foreach (var id in newIds) inNew[id] = true;

            var oldKept = Kept(oldIds, inNew);
            var newKept = Kept(newIds, inOld);
            var diff = new LineDiff(Select(oldIds, oldKept), Select(newIds, newKept));
            diff.Compare(0, diff._a.Length, 0, diff._b.Length);

            var oldChanged = Expand(oldIds.Length, oldKept, diff._aChanged);
            var newChanged = Expand(newIds.Length, newKept, diff._bChanged);

            // Within a run of changes deletions come first, then insertions, as diff -u and git print them.
            var edits = new List<Edit>(Math.Max(oldIds.Length, newIds.Length));
            int i = 0, j = 0;
            while (i < oldIds.Length || j < newIds.Length)
            {
                if (i < oldIds.Length && oldChanged[i])
                {
                    edits.Add(new Edit(EditKind.Delete, i++, j));
                }
                else if (j < newIds.Length && newChanged[j])
                {
                    edits.Add(new Edit(EditKind.Insert, i, j++));
                }
                else
                {
                    edits.Add(new Edit(EditKind.Keep, i++, j++));
                }
            }
            return edits;
        }

        private static int[] Intern(List<string> lines, Dictionary<string, int> ids)
        {
            var result = new int[lines.Count];
            for (var i = 0; i < lines.Count; i++)
            {
                if (!ids.TryGetValue(lines[i], out var id))
                {
                    id = ids.Count;
                    ids.Add(lines[i], id);
                }
                result[i] = id;
            }
            return result;
        }

        private static List<int> Kept(int[] ids, bool[] onOtherSide)
        {
            var kept = new List<int>(ids.Length);
            for (var i = 0; i < ids.Length; i++)
            {
                if (onOtherSide[ids[i]])
                {
                    kept.Add(i);
                }
            }
            return kept;
        }

        private static int[] Select(int[] ids, List<int> kept)
        {
            var result = new int[kept.Count];
            for (var i = 0; i < kept.Count; i++) result[i] = ids[kept[i]];
            return result;
        }

        private static bool[] Expand(int length, List<int> kept, bool[] keptChanged)
        {
            // Everything starts changed: lines that were set aside have no partner.
            var changed = new bool[length];
            Array.Fill(changed, true);
            for (var i = 0; i < kept.Count; i++) changed[kept[i]] = keptChanged[i];
            return changed;
        }

        private void Compare(int aLo, int aHi, int bLo, int bHi)
        {
            while (aLo < aHi && bLo < bHi && _a[aLo] == _b[bLo])
            {
                aLo++;
                bLo++;
            }
            while (aLo < aHi && bLo < bHi && _a[aHi - 1] == _b[bHi - 1])
            {
                aHi--;
                bHi--;
            }

            if (aLo == aHi || bLo == bHi || !Bisect(aLo, aHi, bLo, bHi, out var x, out var y))
            {
                Array.Fill(_aChanged, true, aLo, aHi - aLo);
                Array.Fill(_bChanged, true, bLo, bHi - bLo);
                return;
            }

            // The split lies on an optimal path, so both halves together stay minimal.
            Compare(aLo, x, bLo, y);
            Compare(x, aHi, y, bHi);
        }

        /// <summary>
        /// Runs the forward and backward searches until they overlap and returns a point on an
        /// optimal path (the middle snake). Same structure as diff-match-patch's diff_bisect.
        /// False only when the ranges have nothing in common.
        /// </summary>
        private bool Bisect(int aLo, int aHi, int bLo, int bHi, out int splitA, out int splitB)
        {
            var n = aHi - aLo;
            var m = bHi - bLo;
            var maxD = (n + m + 1) / 2;
            var offset = Math.Min(maxD, CostLimit) + 1;
            var length = 2 * offset + 2;
            var a = _a;
            var b = _b;
            var forward = new int[length];
            var backward = new int[length];
            Array.Fill(forward, -1);
            Array.Fill(backward, -1);
            forward[offset + 1] = 0;
            backward[offset + 1] = 0;
            var delta = n - m;
            // With an odd delta the paths can only meet during a forward step, with an even one during a backward step.
            var checkForward = (delta & 1) != 0;
            int k1Start = 0, k1End = 0, k2Start = 0, k2End = 0;

            for (var d = 0; d < maxD; d++)
            {
                if (d == CostLimit)
                {
                    return GiveUp(forward, backward, offset, d, n, m, aLo, bLo, out splitA, out splitB);
                }

                for (var k1 = -d + k1Start; k1 <= d - k1End; k1 += 2)
                {
                    var k1Offset = offset + k1;
                    var x1 = k1 == -d || (k1 != d && forward[k1Offset - 1] < forward[k1Offset + 1])
                        ? forward[k1Offset + 1]
                        : forward[k1Offset - 1] + 1;
                    var y1 = x1 - k1;
                    while (x1 < n && y1 < m && a[aLo + x1] == b[bLo + y1])
                    {
                        x1++;
                        y1++;
                    }
                    forward[k1Offset] = x1;
                    if (x1 > n)
                    {
                        k1End += 2;
                    }
                    else if (y1 > m)
                    {
                        k1Start += 2;
                    }
                    else if (checkForward)
                    {
                        var k2Offset = offset + delta - k1;
                        if (k2Offset >= 0 && k2Offset < length && backward[k2Offset] != -1 && x1 >= n - backward[k2Offset])
                        {
                            splitA = aLo + x1;
                            splitB = bLo + y1;
                            return true;
                        }
                    }
                }

                for (var k2 = -d + k2Start; k2 <= d - k2End; k2 += 2)
                {
                    var k2Offset = offset + k2;
                    var x2 = k2 == -d || (k2 != d && backward[k2Offset - 1] < backward[k2Offset + 1])
                        ? backward[k2Offset + 1]
                        : backward[k2Offset - 1] + 1;
                    var y2 = x2 - k2;
                    while (x2 < n && y2 < m && a[aHi - x2 - 1] == b[bHi - y2 - 1])
                    {
                        x2++;
                        y2++;
                    }
                    backward[k2Offset] = x2;
                    if (x2 > n)
                    {
                        k2End += 2;
                    }
                    else if (y2 > m)
                    {
                        k2Start += 2;
                    }
                    else if (!checkForward)
                    {
                        var k1Offset = offset + delta - k2;
                        if (k1Offset >= 0 && k1Offset < length && forward[k1Offset] != -1)
                        {
                            var x1 = forward[k1Offset];
                            var y1 = offset + x1 - k1Offset;
                            if (x1 >= n - x2)
                            {
                                splitA = aLo + x1;
                                splitB = bLo + y1;
                                return true;
                            }
                        }
                    }
                }
            }

            splitA = splitB = 0;
            return false;
        }

        /// <summary>
        /// Past <see cref="CostLimit"/> edits the search stops and splits at whichever end has got
        /// furthest, as git's xdiff does. The diff stays correct but may not be minimal; that only
        /// happens when well over a thousand lines of one stretch differ, and it keeps the worst case
        /// (two unrelated files made of a few repeated lines) far below a second.
        /// </summary>
        private static bool GiveUp(int[] forward, int[] backward, int offset, int d, int n, int m, int aLo, int bLo, out int splitA, out int splitB)
        {
            int bestX = -1, bestY = -1, bestProgress = 0;
            for (var k = -d; k <= d; k++)
            {
                var x1 = forward[offset + k];
                var y1 = x1 - k;
                if (x1 >= 0 && x1 <= n && y1 >= 0 && y1 <= m && x1 + y1 > bestProgress)
                {
                    (bestX, bestY, bestProgress) = (x1, y1, x1 + y1);
                }
                var x2 = backward[offset + k];
                var y2 = x2 - k;
                if (x2 >= 0 && x2 <= n && y2 >= 0 && y2 <= m && x2 + y2 > bestProgress)
                {
                    (bestX, bestY, bestProgress) = (n - x2, m - y2, x2 + y2);
                }
            }
            splitA = aLo + bestX;
            splitB = bLo + bestY;
            // A split at either corner would not make the problem any smaller.
            return bestX >= 0 && (bestX, bestY) != (0, 0) && (bestX, bestY) != (n, m);
        }
    }
}
