using System.Globalization;
using System.Text;

namespace PyroMcp.Patching;

/// <summary>
/// One hunk. <see cref="Lines"/> are the raw bytes of each line without its '\n', keeping the
/// ' ', '-' or '+' prefix; the "\ No newline at end of file" markers are not lines of their own
/// but flags on the last line of the side they follow.
/// </summary>
internal sealed record PatchHunk(int OldStart, int OldCount, int NewStart, int NewCount, string Header, IReadOnlyList<byte[]> Lines)
{
    /// <summary>The last old-side line (context or removed) has no newline: it ends the old file.</summary>
    public bool OldEndsWithoutNewline { get; init; }

    /// <summary>The last new-side line (context or added) has no newline: it ends the new file.</summary>
    public bool NewEndsWithoutNewline { get; init; }
}

/// <summary>The changes to one file. A null <see cref="OldPath"/> creates the file, a null <see cref="NewPath"/> deletes it.</summary>
internal sealed record FilePatch(string? OldPath, string? NewPath, IReadOnlyList<PatchHunk> Hunks)
{
    public string Path => NewPath ?? OldPath ?? throw new InvalidOperationException("a file patch needs at least one path");

    /// <summary>git mode the patch expects the file to have (old mode, deleted file mode, the index line's mode); null if it does not say.</summary>
    public int? OldMode { get; init; }

    /// <summary>git mode the result gets (new mode, new file mode); null keeps the file's mode.</summary>
    public int? NewMode { get; init; }

    /// <summary>"copy from/to": the source stays where it is.</summary>
    public bool IsCopy { get; init; }

    /// <summary>The blob ids of the "index" line, as written (abbreviated or full).</summary>
    public string? OldBlob { get; init; }

    /// <summary>The new side's blob id from the "index" line.</summary>
    public string? NewBlob { get; init; }

    /// <summary>The forward half of a "GIT binary patch"; when set, <see cref="Hunks"/> is empty.</summary>
    public BinaryHunk? Binary { get; init; }

    /// <summary>Whether the path changes (rename or copy).</summary>
    public bool Moves => OldPath is not null && NewPath is not null && !string.Equals(OldPath, NewPath, StringComparison.Ordinal);
}

/// <summary>One side of a git binary patch, inflated: the new content (literal) or a git delta against the old.</summary>
internal sealed record BinaryHunk(bool IsDelta, byte[] Data);

/// <summary>A file as a patch sees it: its bytes (a symlink's target for mode 120000) and its git mode.</summary>
internal sealed record PatchFileState(byte[] Content, int Mode)
{
    public const int RegularMode = 0x81A4;    // 0100644
    public const int ExecutableMode = 0x81ED; // 0100755
    public const int SymlinkMode = 0xA000;    // 0120000
    public const int TypeMask = 0xF000;       // 0170000

    public bool IsSymlink => (Mode & TypeMask) == SymlinkMode;

    /// <summary>The git mode of a file with these permission bits: 100755 if anyone may execute it, else 100644, as git records it.</summary>
    public static int GitFileMode(int permissions) => (permissions & 0x49) != 0 ? ExecutableMode : RegularMode;
}

/// <summary>The text is not a unified diff pyro can read; the message names the line.</summary>
internal sealed class PatchFormatException(string message) : Exception(message);

/// <summary>A hunk does not match the file it is applied to; nothing was written.</summary>
internal sealed class PatchConflictException : Exception
{
    internal PatchConflictException(string path, int hunkNumber, string hunkHeader, string reason)
        : base(hunkNumber > 0
            ? $"hunk {hunkNumber} of {path} ({hunkHeader}) does not apply: {reason}"
            : $"the patch of {path} does not apply: {reason}")
    {
        Path = path;
        HunkNumber = hunkNumber;
        HunkHeader = hunkHeader;
    }

    public string Path { get; }

    /// <summary>1-based; 0 when the conflict concerns the whole file (e.g. a patch without hunks).</summary>
    public int HunkNumber { get; }

    public string HunkHeader { get; }
}

/// <summary>
/// Reads unified diffs as written by git, diff -u and by hand. Text around the file changes
/// (commit messages, "Index:" lines, signatures) is skipped, but a hunk whose length does not
/// match its header is an error rather than something to guess around: silently dropping or
/// inventing lines is worse than asking for a corrected patch.
/// </summary>
internal static class PatchParser
{
    private static readonly string[] ExtendedHeaders =
    [
        "old mode ", "new mode ", "deleted file mode ", "new file mode ", "copy from ", "copy to ",
        "rename from ", "rename to ", "rename old ", "rename new ", "similarity index ",
        "dissimilarity index ", "index ",
    ];

    /// <summary>Most one file of a patch may hold, inflated; the same cap the applier reads files with.</summary>
    internal const long MaxFileBytes = 256L * 1024 * 1024;

    /// <summary>Most bytes all the binary patches of one patch may inflate to together.</summary>
    internal const long MaxInflatedBytes = 512L * 1024 * 1024;

    internal static IReadOnlyList<FilePatch> Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Parse(Encoding.UTF8.GetBytes(text));
    }

    /// <summary>
    /// Parses a patch from its bytes. Lines are held as Latin-1 strings, one char per byte, so
    /// every byte of a hunk line (CRLF, Latin-1, invalid UTF-8) comes back out unchanged; names
    /// are decoded as UTF-8 afterwards.
    /// </summary>
    internal static IReadOnlyList<FilePatch> Parse(ReadOnlySpan<byte> patch)
    {
        var files = new Reader(SplitPatchLines(Encoding.Latin1.GetString(patch))).ReadAll();
        return files.Count > 0 ? files : throw new PatchFormatException("the patch contains no file changes");
    }

    private static byte[] Bytes(string latin1) => Encoding.Latin1.GetBytes(latin1);

    /// <summary>A name read from the patch's bytes, as the UTF-8 it is.</summary>
    private static string Utf8(string latin1) => Encoding.UTF8.GetString(Bytes(latin1));

    /// <summary>A line of the patch for a message: its bytes as UTF-8.</summary>
    private static string Shown(string latin1) => Utf8(latin1);

    /// <summary>
    /// A patch whose every line ends in "\r\n" went through a CRLF conversion, so one '\r' per
    /// line is dropped. Otherwise '\r' is content: git diff of a CRLF file has it in its lines.
    /// </summary>
    private static List<string> SplitPatchLines(string text)
    {
        var lines = new List<string>(text.Split('\n'));
        if (lines[^1].Length == 0)
        {
            lines.RemoveAt(lines.Count - 1);
        }
        var terminated = text.EndsWith('\n') ? lines.Count : lines.Count - 1;
        var crlf = terminated > 0;
        for (var i = 0; i < terminated && crlf; i++)
        {
            crlf = lines[i].EndsWith('\r');
        }
        if (crlf)
        {
            for (var i = 0; i < lines.Count; i++)
            {
                if (lines[i].EndsWith('\r'))
                {
                    lines[i] = lines[i][..^1];
                }
            }
        }
        return lines;
    }

    private static PatchFormatException Error(int index, string message) =>
        new(string.Create(CultureInfo.InvariantCulture, $"line {index + 1}: {message}"));

    private static bool IsBinary(string line) =>
        line.StartsWith("GIT binary patch", StringComparison.Ordinal)
        || (line.StartsWith("Binary files ", StringComparison.Ordinal) && line.EndsWith(" differ", StringComparison.Ordinal));

    private sealed class Reader(List<string> lines)
    {
        private readonly List<FilePatch> _files = [];
        private long _inflated;
        private int _pos;

        internal List<FilePatch> ReadAll()
        {
            while (_pos < lines.Count)
            {
                var line = lines[_pos];
                if (line.StartsWith("diff --git ", StringComparison.Ordinal))
                {
                    ReadGitFile();
                }
                else if (line.StartsWith("--- ", StringComparison.Ordinal))
                {
                    _files.Add(ReadFile());
                }
                else if (line.StartsWith("+++ ", StringComparison.Ordinal))
                {
                    throw Error(_pos, $"'{Shown(line)}' has no '--- ' line before it");
                }
                else if (line.StartsWith("@@", StringComparison.Ordinal))
                {
                    throw Error(_pos, $"hunk header '{Shown(line)}' is not inside a file: expected '--- ' and '+++ ' lines before it");
                }
                else if (IsBinary(line))
                {
                    throw Error(_pos, "a binary patch must follow a 'diff --git' line and its 'index' line");
                }
                else
                {
                    _pos++;
                }
            }
            return _files;
        }

        private void ReadGitFile()
        {
            var headerIndex = _pos;
            var (oldName, newName) = GitNames(lines[_pos]["diff --git ".Length..]);
            bool created = false, deleted = false, copy = false;
            string? renamedFrom = null, renamedTo = null, oldBlob = null, newBlob = null;
            int? oldMode = null, newMode = null;
            _pos++;
            while (_pos < lines.Count)
            {
                var line = lines[_pos];
                if (line.StartsWith("--- ", StringComparison.Ordinal))
                {
                    var file = ReadFile();
                    _files.Add(file with
                    {
                        OldPath = created ? null : file.OldPath,
                        NewPath = deleted ? null : file.NewPath,
                        OldMode = oldMode,
                        NewMode = newMode,
                        IsCopy = copy,
                        OldBlob = oldBlob,
                        NewBlob = newBlob,
                    });
                    return;
                }
                if (line.StartsWith("@@", StringComparison.Ordinal))
                {
                    throw Error(_pos, $"hunk header '{Shown(line)}' has no '--- ' and '+++ ' lines before it");
                }
                if (line.StartsWith("Binary files ", StringComparison.Ordinal))
                {
                    throw Error(_pos, "the patch says the files differ but carries no binary data: make it with 'git diff --binary' (or export the files instead)");
                }
                if (line == "GIT binary patch")
                {
                    _pos++;
                    var binary = ReadBinaryHunk(headerIndex) ?? throw Error(_pos, "'GIT binary patch' is not followed by 'literal N' or 'delta N'");
                    // git writes the reverse change too, for git apply -R; it is checked for form and not used.
                    ReadBinaryHunk(headerIndex);
                    var oldPath = created ? null : renamedFrom ?? oldName;
                    var newPath = deleted ? null : renamedTo ?? newName;
                    if (oldPath is null && newPath is null)
                    {
                        throw Error(headerIndex, $"cannot tell the file name from '{Shown(lines[headerIndex])}'");
                    }
                    _files.Add(new FilePatch(oldPath, newPath, [])
                    {
                        OldMode = oldMode, NewMode = newMode, IsCopy = copy, OldBlob = oldBlob, NewBlob = newBlob, Binary = binary,
                    });
                    return;
                }
                if (!ExtendedHeaders.Any(h => line.StartsWith(h, StringComparison.Ordinal)))
                {
                    break;
                }
                if (line.StartsWith("new file mode ", StringComparison.Ordinal))
                {
                    created = true;
                    newMode = Mode(line["new file mode ".Length..], _pos);
                }
                else if (line.StartsWith("deleted file mode ", StringComparison.Ordinal))
                {
                    deleted = true;
                    oldMode = Mode(line["deleted file mode ".Length..], _pos);
                }
                else if (line.StartsWith("old mode ", StringComparison.Ordinal))
                {
                    oldMode = Mode(line["old mode ".Length..], _pos);
                }
                else if (line.StartsWith("new mode ", StringComparison.Ordinal))
                {
                    newMode = Mode(line["new mode ".Length..], _pos);
                }
                else if (line.StartsWith("index ", StringComparison.Ordinal))
                {
                    // index <old>..<new>[ <mode>]: the mode, when there, is the file's unchanged mode.
                    var parts = line["index ".Length..].TrimEnd('\r').Split(' ');
                    var ids = parts[0].Split("..");
                    if (ids.Length == 2 && ids.All(id => id.Length > 0 && id.All(char.IsAsciiHexDigit)))
                    {
                        (oldBlob, newBlob) = (ids[0].ToLowerInvariant(), ids[1].ToLowerInvariant());
                    }
                    if (parts.Length > 1)
                    {
                        oldMode ??= Mode(parts[1], _pos);
                    }
                }
                if (line.StartsWith("rename from ", StringComparison.Ordinal) || line.StartsWith("copy from ", StringComparison.Ordinal))
                {
                    copy = line.StartsWith("copy ", StringComparison.Ordinal);
                    renamedFrom = HeaderName(line[(line.IndexOf(" from ", StringComparison.Ordinal) + 6)..], _pos);
                }
                else if (line.StartsWith("rename to ", StringComparison.Ordinal) || line.StartsWith("copy to ", StringComparison.Ordinal))
                {
                    renamedTo = HeaderName(line[(line.IndexOf(" to ", StringComparison.Ordinal) + 4)..], _pos);
                }
                _pos++;
            }

            // No ---/+++ lines: an empty file created or deleted, a rename or copy, or a mode change.
            var oldPathOnly = created ? null : renamedFrom ?? oldName;
            var newPathOnly = deleted ? null : renamedTo ?? newName;
            if (oldPathOnly is null && newPathOnly is null)
            {
                throw Error(headerIndex, $"cannot tell the file name from '{Shown(lines[headerIndex])}'");
            }
            _files.Add(new FilePatch(oldPathOnly, newPathOnly, [])
            {
                OldMode = oldMode, NewMode = newMode, IsCopy = copy, OldBlob = oldBlob, NewBlob = newBlob,
            });
        }

        /// <summary>"literal N" or "delta N", base85 lines, an empty line; null (nothing read) if the next line is neither.</summary>
        private BinaryHunk? ReadBinaryHunk(int headerIndex)
        {
            if (_pos >= lines.Count)
            {
                return null;
            }
            var line = lines[_pos].TrimEnd('\r');
            var delta = line.StartsWith("delta ", StringComparison.Ordinal);
            if (!delta && !line.StartsWith("literal ", StringComparison.Ordinal))
            {
                return null;
            }
            var sizeIndex = _pos;
            if (!long.TryParse(line.AsSpan(delta ? 6 : 8), NumberStyles.None, CultureInfo.InvariantCulture, out var size))
            {
                throw Error(_pos, $"'{Shown(line)}' has no size");
            }
            if (size > MaxFileBytes)
            {
                throw Error(_pos, $"the binary patch of '{Shown(lines[headerIndex])}' is {size} bytes, more than the limit of {MaxFileBytes >> 20} MiB a file may have in a patch");
            }
            _pos++;
            using var compressed = new MemoryStream();
            while (true)
            {
                if (_pos >= lines.Count)
                {
                    throw Error(lines.Count - 1, "the binary patch ends without the empty line that closes its data");
                }
                var data = lines[_pos].TrimEnd('\r');
                if (data.Length == 0)
                {
                    _pos++;
                    break;
                }
                var decoded = GitBinary.DecodeLine(data, out var why) ?? throw Error(_pos, $"bad binary patch data: {why}");
                compressed.Write(decoded);
                if (compressed.Length > MaxFileBytes + (MaxFileBytes >> 4))
                {
                    throw Error(_pos, $"the binary patch data is larger than the limit of {MaxFileBytes >> 20} MiB");
                }
                _pos++;
            }
            var inflated = GitBinary.Inflate(compressed.ToArray(), size)
                ?? throw Error(sizeIndex, $"the binary patch data does not inflate to the {size} bytes '{Shown(line)}' promises");
            _inflated += inflated.LongLength;
            if (_inflated > MaxInflatedBytes)
            {
                throw Error(sizeIndex, $"the binary patches hold more than {MaxInflatedBytes >> 20} MiB in all; split the patch into smaller ones");
            }
            return new BinaryHunk(delta, inflated);
        }

        private static int Mode(string text, int index)
        {
            text = text.TrimEnd('\r');
            if (text.Length is < 1 or > 7 || !text.All(c => c is >= '0' and <= '7'))
            {
                throw Error(index, $"'{Shown(text)}' is not a file mode such as 100644");
            }
            var mode = Convert.ToInt32(text, 8);
            return (mode & PatchFileState.TypeMask) switch
            {
                PatchFileState.SymlinkMode => PatchFileState.SymlinkMode,
                0x8000 => PatchFileState.GitFileMode(mode),
                _ => throw Error(index, $"mode {text} is neither a regular file (100644, 100755) nor a symlink (120000); pyro patches only those"),
            };
        }

        private FilePatch ReadFile()
        {
            var minusIndex = _pos;
            _pos++;
            if (_pos >= lines.Count || !lines[_pos].StartsWith("+++ ", StringComparison.Ordinal))
            {
                var at = Math.Min(_pos, lines.Count - 1);
                throw Error(at, $"expected a '+++ ' line after '{Shown(lines[minusIndex])}'");
            }
            var plusIndex = _pos;
            var oldName = HeaderName(lines[minusIndex][4..], minusIndex);
            var newName = HeaderName(lines[plusIndex][4..], plusIndex);
            if (oldName is null && newName is null)
            {
                throw Error(plusIndex, "both sides of the file header are /dev/null");
            }
            (oldName, newName) = StripPrefixes(oldName, newName);
            var path = newName ?? oldName!;
            _pos++;

            var hunks = new List<PatchHunk>();
            while (_pos < lines.Count && lines[_pos].StartsWith("@@", StringComparison.Ordinal))
            {
                if (hunks.Count > 0 && (hunks[^1].OldEndsWithoutNewline || hunks[^1].NewEndsWithoutNewline))
                {
                    throw Error(_pos, $"hunk '{Shown(lines[_pos])}' follows a hunk that ends the file ('{UnifiedDiff.NoNewlineMarker}')");
                }
                var headerIndex = _pos;
                var hunk = ReadHunk();
                if (oldName is null && hunk.OldCount > 0)
                {
                    throw Error(headerIndex, $"{path} is created (--- /dev/null) but hunk header '{hunk.Header}' has old lines");
                }
                if (newName is null && hunk.NewCount > 0)
                {
                    throw Error(headerIndex, $"{path} is deleted (+++ /dev/null) but hunk header '{hunk.Header}' has new lines");
                }
                hunks.Add(hunk);
            }

            // Creating or deleting an empty file needs no hunk; changing a file without one means a hunk is missing.
            if (hunks.Count == 0 && oldName is not null && newName is not null)
            {
                var at = Math.Min(_pos, lines.Count - 1);
                throw Error(at, $"expected a hunk header '@@ -l,s +l,s @@' after '{Shown(lines[plusIndex])}'");
            }
            return new FilePatch(oldName, newName, hunks);
        }

        private PatchHunk ReadHunk()
        {
            var headerIndex = _pos;
            var (oldStart, oldCount, newStart, newCount, header) = HunkHeader(lines[_pos], _pos);
            _pos++;

            var body = new List<string>(Math.Min(oldCount + newCount, 1 << 16));
            int oldLeft = oldCount, newLeft = newCount;
            bool oldEnded = false, newEnded = false;
            while (oldLeft > 0 || newLeft > 0)
            {
                if (_pos >= lines.Count)
                {
                    throw Error(lines.Count - 1, TooShort("the patch ends"));
                }
                var line = lines[_pos];
                // Some editors strip the space of an empty context line; git apply accepts that too.
                // When a side is already complete it cannot be context, so it is the blank line after a short hunk.
                if (line.Length == 0 && (oldLeft == 0 || newLeft == 0))
                {
                    throw Error(_pos, TooShort("the hunk ends"));
                }
                var kind = line.Length == 0 ? ' ' : line[0];
                switch (kind)
                {
                    case ' ':
                    case '-':
                    case '+':
                        var onOld = kind != '+';
                        var onNew = kind != '-';
                        if ((onOld && oldLeft == 0) || (onNew && newLeft == 0))
                        {
                            throw Error(_pos, TooLong(onOld && oldLeft == 0, onNew && newLeft == 0));
                        }
                        if ((onOld && oldEnded) || (onNew && newEnded))
                        {
                            throw Error(_pos, $"a line follows '{UnifiedDiff.NoNewlineMarker}' on the same side");
                        }
                        if (onOld) oldLeft--;
                        if (onNew) newLeft--;
                        body.Add(line.Length == 0 ? " " : line);
                        break;
                    case '\\':
                        MarkNoNewline(body, ref oldEnded, ref newEnded);
                        break;
                    default:
                        throw Error(_pos, TooShort("the hunk ends"));
                }
                _pos++;
            }
            if (_pos < lines.Count && lines[_pos].StartsWith('\\'))
            {
                MarkNoNewline(body, ref oldEnded, ref newEnded);
                _pos++;
            }
            if (_pos < lines.Count && IsStrayHunkLine(lines[_pos]))
            {
                var kind = lines[_pos][0];
                throw Error(_pos, TooLong(kind != '+', kind != '-'));
            }

            return new PatchHunk(oldStart, oldCount, newStart, newCount, header, body.ConvertAll(Bytes))
            {
                OldEndsWithoutNewline = oldEnded,
                NewEndsWithoutNewline = newEnded,
            };

            string TooShort(string what)
            {
                var promise = (oldLeft > 0, newLeft > 0) switch
                {
                    (true, true) => $"{oldCount} old and {newCount} new lines",
                    (true, false) => $"{oldCount} old lines",
                    _ => $"{newCount} new lines",
                };
                var got = (oldLeft > 0, newLeft > 0) switch
                {
                    (true, true) => $"{oldCount - oldLeft} old and {newCount - newLeft} new",
                    (true, false) => $"{oldCount - oldLeft}",
                    _ => $"{newCount - newLeft}",
                };
                return $"hunk header '{header}' (line {headerIndex + 1}) promises {promise} but {what} after {got}";
            }

            string TooLong(bool old, bool @new)
            {
                var promise = (old, @new) switch
                {
                    (true, true) => $"{oldCount} old and {newCount} new lines",
                    (true, false) => $"{oldCount} old lines",
                    _ => $"{newCount} new lines",
                };
                return $"hunk header '{header}' (line {headerIndex + 1}) promises {promise} but the hunk has more";
            }
        }

        private void MarkNoNewline(List<string> body, ref bool oldEnded, ref bool newEnded)
        {
            if (body.Count == 0)
            {
                throw Error(_pos, $"'{Shown(lines[_pos])}' must follow a line of the hunk");
            }
            var last = body[^1][0];
            var onOld = last != '+';
            var onNew = last != '-';
            if ((onOld && oldEnded) || (onNew && newEnded))
            {
                throw Error(_pos, $"'{Shown(lines[_pos])}' appears twice for the same side");
            }
            oldEnded |= onOld;
            newEnded |= onNew;
        }

        /// <summary>
        /// A hunk line right after a complete hunk means the header undercounts. "--- " starts the
        /// next file and "-- " is the signature git format-patch appends, so those are not hunk lines.
        /// </summary>
        private static bool IsStrayHunkLine(string line) =>
            line.Length > 0 && (line[0] == ' ' || line[0] == '+' || (line[0] == '-'
                && !line.StartsWith("--- ", StringComparison.Ordinal) && line != "-- " && line != "--"));

        private static (int OldStart, int OldCount, int NewStart, int NewCount, string Header) HunkHeader(string line, int index)
        {
            // @@ -l[,s] +l[,s] @@[ section heading]
            var p = 0;
            if (Expect("@@ -") && Number(out var oldStart))
            {
                var oldCount = 1;
                if ((!Expect(",") || Number(out oldCount)) && Expect(" +") && Number(out var newStart))
                {
                    var newCount = 1;
                    if ((!Expect(",") || Number(out newCount)) && Expect(" @@"))
                    {
                        if (oldCount == 0 && newCount == 0)
                        {
                            throw Error(index, $"hunk header '{Shown(line)}' has no lines");
                        }
                        return (oldStart, oldCount, newStart, newCount, line[..p]);
                    }
                }
            }
            throw Error(index, $"malformed hunk header '{Shown(line)}'; expected '@@ -l,s +l,s @@'");

            bool Expect(string s)
            {
                if (string.CompareOrdinal(line, p, s, 0, s.Length) != 0)
                {
                    return false;
                }
                p += s.Length;
                return true;
            }

            bool Number(out int value)
            {
                var start = p;
                while (p < line.Length && char.IsAsciiDigit(line[p])) p++;
                return int.TryParse(line.AsSpan(start, p - start), NumberStyles.None, CultureInfo.InvariantCulture, out value);
            }
        }

        /// <summary>The file name of a ---/+++ or rename/copy line; null for /dev/null.</summary>
        private static string? HeaderName(string raw, int index)
        {
            string name;
            if (raw.StartsWith('"'))
            {
                name = Unquote(raw, 0, out _) ?? throw Error(index, $"unterminated quoted file name {raw}");
            }
            else
            {
                // diff -u puts a tab and a timestamp after the name; git a tab after names with spaces.
                var tab = raw.IndexOf('\t', StringComparison.Ordinal);
                name = Utf8((tab >= 0 ? raw[..tab] : raw).TrimEnd('\r'));
            }
            if (name.Length == 0)
            {
                throw Error(index, "missing file name");
            }
            return name == "/dev/null" ? null : name;
        }

        /// <summary>git's a/ and b/ prefixes are dropped only when both sides (or the one that is not /dev/null) have them.</summary>
        private static (string? Old, string? New) StripPrefixes(string? oldName, string? newName)
        {
            var prefixed = (oldName is null || oldName.StartsWith("a/", StringComparison.Ordinal))
                && (newName is null || newName.StartsWith("b/", StringComparison.Ordinal));
            return prefixed ? (oldName?[2..], newName?[2..]) : (oldName, newName);
        }

        /// <summary>
        /// The two names of a "diff --git" line. Unquoted names may contain spaces, so the
        /// split that gives two equal names after a/ and b/ wins, as in git.
        /// </summary>
        private static (string? Old, string? New) GitNames(string rest)
        {
            rest = rest.TrimEnd('\r');
            string? first, second;
            if (rest.StartsWith('"'))
            {
                first = Unquote(rest, 0, out var end);
                second = first is not null && end < rest.Length && rest[end] == ' ' ? NameAt(rest, end + 1) : null;
            }
            else
            {
                var quoted = rest.IndexOf(" \"", StringComparison.Ordinal);
                if (quoted >= 0)
                {
                    first = Utf8(rest[..quoted]);
                    second = NameAt(rest, quoted + 1);
                }
                else
                {
                    var split = -1;
                    for (var i = rest.IndexOf(' ', StringComparison.Ordinal); i >= 0; i = rest.IndexOf(' ', i + 1))
                    {
                        var (a, b) = StripPrefixes(rest[..i], rest[(i + 1)..]);
                        if (a == b)
                        {
                            split = i;
                            break;
                        }
                        if (split < 0 && string.CompareOrdinal(rest, i + 1, "b/", 0, 2) == 0)
                        {
                            split = i;
                        }
                    }
                    first = split >= 0 ? Utf8(rest[..split]) : null;
                    second = split >= 0 ? Utf8(rest[(split + 1)..]) : null;
                }
            }
            return first is null || second is null ? (null, null) : StripPrefixes(first, second);

            static string? NameAt(string s, int start) =>
                start < s.Length && s[start] == '"' ? Unquote(s, start, out _) : Utf8(s[start..]);
        }

        /// <summary>Reverses git's C-style quoting; octal escapes are UTF-8 bytes.</summary>
        private static string? Unquote(string s, int start, out int end)
        {
            var bytes = new List<byte>(s.Length);
            var i = start + 1;
            while (i < s.Length)
            {
                var ch = s[i];
                if (ch == '"')
                {
                    end = i + 1;
                    return Encoding.UTF8.GetString(bytes.ToArray());
                }
                if (ch != '\\')
                {
                    var run = s.IndexOfAny(['"', '\\'], i);
                    if (run < 0)
                    {
                        break;
                    }
                    bytes.AddRange(Bytes(s[i..run]));
                    i = run;
                    continue;
                }
                if (i + 1 >= s.Length)
                {
                    break;
                }
                var esc = s[i + 1];
                if (esc is >= '0' and <= '7' && i + 3 < s.Length
                    && s[i + 2] is >= '0' and <= '7' && s[i + 3] is >= '0' and <= '7')
                {
                    bytes.Add((byte)(((esc - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0')));
                    i += 4;
                    continue;
                }
                bytes.Add(esc switch
                {
                    'a' => (byte)'\a',
                    'b' => (byte)'\b',
                    't' => (byte)'\t',
                    'n' => (byte)'\n',
                    'v' => (byte)'\v',
                    'f' => (byte)'\f',
                    'r' => (byte)'\r',
                    _ => (byte)esc,
                });
                i += 2;
            }
            end = s.Length;
            return null;
        }
    }
}

/// <summary>
/// Applies a <see cref="FilePatch"/> to a file's bytes, all or nothing. Context and removed lines
/// must match byte for byte; only the position may differ from the header (the hunk is looked for
/// nearest its expected line first, like patch(1) with --fuzz=0), because a patch made against
/// a slightly older file is common and harmless, while fuzzy context is how patches land in the
/// wrong place. Lines are slices of the file's bytes: CRLF, Latin-1 and NUL survive unchanged.
/// </summary>
internal static class PatchApplier
{
    private const int ShownLineLimit = 160;

    /// <summary>The new text, or null when the patch deletes the file. <paramref name="current"/> null means the file does not exist.</summary>
    internal static string? Apply(FilePatch patch, string? current)
    {
        var result = Apply(patch, current is null ? null : new PatchFileState(Encoding.UTF8.GetBytes(current), PatchFileState.RegularMode));
        return result is null ? null : Encoding.UTF8.GetString(result.Content);
    }

    /// <summary>
    /// The file after the patch, or null when the patch deletes it. <paramref name="current"/> null
    /// means the file does not exist. A mode change without hunks keeps the content.
    /// </summary>
    internal static PatchFileState? Apply(FilePatch patch, PatchFileState? current, long maxBytes = PatchParser.MaxFileBytes)
    {
        ArgumentNullException.ThrowIfNull(patch);
        var creates = patch.OldPath is null;
        var deletes = patch.NewPath is null;
        if (creates && current is not null)
        {
            throw Conflict(patch, 0, "the file already exists");
        }
        if (!creates && current is null)
        {
            throw Conflict(patch, 0, "the file does not exist");
        }
        if (current is not null && patch.OldMode is { } expected && (expected & PatchFileState.TypeMask) != (current.Mode & PatchFileState.TypeMask))
        {
            throw Conflict(patch, 0, $"the patch expects a {TypeName(expected)} but it is a {TypeName(current.Mode)}");
        }

        var content = patch.Binary is null ? ApplyHunks(patch, current?.Content ?? []) : ApplyBinary(patch, current?.Content, maxBytes);
        if (deletes)
        {
            if (content.Length > 0)
            {
                var left = SplitLines(content).Count;
                throw Conflict(patch, patch.Hunks.Count - 1,
                    $"the patch deletes the file but does not remove all of it ({left} of its {SplitLines(current!.Content).Count} lines would remain)");
            }
            return null;
        }
        if (content.Length > maxBytes)
        {
            throw Conflict(patch, 0, $"the result would be {content.Length} bytes, more than the limit of {maxBytes >> 20} MiB a patched file may have");
        }
        var mode = patch.NewMode ?? current?.Mode ?? PatchFileState.RegularMode;
        if ((mode & PatchFileState.TypeMask) == PatchFileState.SymlinkMode && (content.Length == 0 || content.AsSpan().Contains((byte)0)))
        {
            throw Conflict(patch, 0, "a symlink's target (its content) must be non-empty and free of NUL bytes");
        }
        return new PatchFileState(content, mode);
    }

    /// <summary>Splits on '\n', keeping each terminator, as slices of <paramref name="content"/>.</summary>
    internal static List<ReadOnlyMemory<byte>> SplitLines(byte[] content)
    {
        var lines = new List<ReadOnlyMemory<byte>>();
        var start = 0;
        while (start < content.Length)
        {
            var end = content.AsSpan(start).IndexOf((byte)'\n');
            if (end < 0)
            {
                lines.Add(content.AsMemory(start));
                break;
            }
            lines.Add(content.AsMemory(start, end + 1));
            start += end + 1;
        }
        return lines;
    }

    private static byte[] ApplyBinary(FilePatch patch, byte[]? current, long maxBytes)
    {
        // The index line names the blob the patch was made from; git refuses a binary patch for another one, and so do we.
        if (current is not null && patch.OldBlob is { } oldBlob && !GitBinary.BlobId(current).StartsWith(oldBlob, StringComparison.Ordinal))
        {
            throw Conflict(patch, 0, $"the binary patch was made for blob {oldBlob} but the file is blob {GitBinary.BlobId(current)[..Math.Min(40, oldBlob.Length)]}");
        }
        byte[] result;
        if (patch.Binary!.IsDelta)
        {
            result = GitBinary.ApplyDelta(current ?? [], patch.Binary.Data, maxBytes, out var why)
                ?? throw Conflict(patch, 0, $"the binary delta does not apply: {why}. Make the patch with 'git diff --binary --full-index' against this file, or re-export it");
        }
        else
        {
            result = patch.Binary.Data;
        }
        if (patch.NewPath is not null && patch.NewBlob is { Length: 40 } newBlob && newBlob != GitBinary.NullId && GitBinary.BlobId(result) != newBlob)
        {
            throw Conflict(patch, 0, $"the binary patch makes blob {GitBinary.BlobId(result)} but promises {newBlob}");
        }
        return patch.NewPath is null ? [] : result;
    }

    private static byte[] ApplyHunks(FilePatch patch, byte[] current)
    {
        var lines = SplitLines(current);
        using var output = new MemoryStream(current.Length + 256);
        var done = 0;   // lines before this index have been copied or replaced
        var offset = 0; // where the previous hunk was found relative to its header
        for (var h = 0; h < patch.Hunks.Count; h++)
        {
            var hunk = patch.Hunks[h];
            var (oldLines, newLines) = Sides(hunk);
            // A hunk without old lines inserts after line OldStart; otherwise OldStart is its first line.
            var stated = oldLines.Count == 0 ? hunk.OldStart : hunk.OldStart - 1;
            var expected = stated + offset;
            var at = oldLines.Count == 0
                ? PlaceInsertion(patch, h, lines, expected, done)
                : Find(lines, oldLines, expected, done, hunk.NewEndsWithoutNewline);
            if (at < 0)
            {
                throw Conflict(patch, h, Explain(lines, oldLines, expected, done));
            }

            for (var i = done; i < at; i++) output.Write(lines[i].Span);
            foreach (var line in newLines) output.Write(line);
            done = at + oldLines.Count;
            offset = at - stated;
        }
        for (var i = done; i < lines.Count; i++) output.Write(lines[i].Span);
        return output.ToArray();
    }

    private static string TypeName(int mode) => (mode & PatchFileState.TypeMask) == PatchFileState.SymlinkMode ? "symlink" : "regular file";

    /// <summary>Both sides of a hunk as lines with their terminators, the way <see cref="SplitLines"/> returns file lines.</summary>
    private static (List<byte[]> Old, List<byte[]> New) Sides(PatchHunk hunk)
    {
        int lastOld = -1, lastNew = -1;
        for (var i = 0; i < hunk.Lines.Count; i++)
        {
            var kind = Kind(hunk.Lines[i]);
            if (kind != '+') lastOld = i;
            if (kind != '-') lastNew = i;
        }
        var old = new List<byte[]>(hunk.OldCount);
        var @new = new List<byte[]>(hunk.NewCount);
        for (var i = 0; i < hunk.Lines.Count; i++)
        {
            var line = hunk.Lines[i];
            var kind = Kind(line);
            var content = line.Length > 0 ? line.AsSpan(1) : [];
            if (kind != '+') old.Add(i == lastOld && hunk.OldEndsWithoutNewline ? content.ToArray() : [.. content, (byte)'\n']);
            if (kind != '-') @new.Add(i == lastNew && hunk.NewEndsWithoutNewline ? content.ToArray() : [.. content, (byte)'\n']);
        }
        return (old, @new);

        static char Kind(byte[] line) => line.Length == 0 ? ' ' : line[0] switch
        {
            (byte)' ' or (byte)'-' or (byte)'+' => (char)line[0],
            _ => throw new ArgumentException($"hunk line '{Encoding.UTF8.GetString(line)}' does not start with ' ', '-' or '+'", nameof(hunk)),
        };
    }

    /// <summary>
    /// The index where <paramref name="oldLines"/> occur, nearest <paramref name="expected"/>
    /// first and never before <paramref name="from"/> (hunks apply in order and do not overlap); -1 if nowhere.
    /// </summary>
    private static int Find(List<ReadOnlyMemory<byte>> lines, List<byte[]> oldLines, int expected, int from, bool mustEndFile)
    {
        var last = lines.Count - oldLines.Count;
        if (last < from)
        {
            return -1;
        }
        var reach = Math.Max(Math.Abs(expected - from), Math.Abs(last - expected));
        for (var distance = 0; distance <= reach; distance++)
        {
            if (Fits(expected - distance))
            {
                return expected - distance;
            }
            if (distance > 0 && Fits(expected + distance))
            {
                return expected + distance;
            }
        }
        return -1;

        bool Fits(int at)
        {
            if (at < from || at > last || (mustEndFile && at != last))
            {
                return false;
            }
            for (var i = 0; i < oldLines.Count; i++)
            {
                if (!lines[at + i].Span.SequenceEqual(oldLines[i]))
                {
                    return false;
                }
            }
            return true;
        }
    }

    /// <summary>A pure insertion has nothing to match, so it goes exactly where the header (shifted like the hunks before it) says.</summary>
    private static int PlaceInsertion(FilePatch patch, int hunkIndex, List<ReadOnlyMemory<byte>> lines, int at, int from)
    {
        var hunk = patch.Hunks[hunkIndex];
        if (at < from || at > lines.Count)
        {
            throw Conflict(patch, hunkIndex, at < from
                ? $"it inserts after line {at}, which an earlier hunk already changed"
                : $"it inserts after line {at} but the file has only {lines.Count} lines");
        }
        if (at == lines.Count && at > 0 && lines[^1].Span[^1] != (byte)'\n')
        {
            throw Conflict(patch, hunkIndex, $"it adds lines after line {at}, which is the last line and has no newline at end of file");
        }
        if (hunk.NewEndsWithoutNewline && at != lines.Count)
        {
            throw Conflict(patch, hunkIndex, $"it ends the file without a newline, but the file goes on after line {at}");
        }
        return at;
    }

    /// <summary>Why the hunk does not fit where it was expected: the first line that differs there.</summary>
    private static string Explain(List<ReadOnlyMemory<byte>> lines, List<byte[]> oldLines, int expected, int from)
    {
        var at = Math.Max(from, Math.Min(expected, lines.Count));
        for (var i = 0; i < oldLines.Count; i++)
        {
            var number = (at + i + 1).ToString(CultureInfo.InvariantCulture);
            var wanted = Encoding.UTF8.GetString(oldLines[i]);
            if (at + i >= lines.Count)
            {
                return lines.Count == 0
                    ? $"line {number} should be {Show(wanted, null)} but the file is empty"
                    : $"line {number} should be {Show(wanted, null)} but the file ends after line {lines.Count}";
            }
            if (!lines[at + i].Span.SequenceEqual(oldLines[i]))
            {
                var actual = Encoding.UTF8.GetString(lines[at + i].Span);
                var hint = string.Equals(actual.TrimEnd('\n').TrimEnd('\r'), wanted.TrimEnd('\n').TrimEnd('\r'), StringComparison.Ordinal)
                    && actual.TrimEnd('\n').EndsWith('\r') != wanted.TrimEnd('\n').EndsWith('\r')
                    ? " (the line endings differ: one has CRLF)"
                    : "";
                return $"line {number} should be {Show(wanted, actual)} but is {Show(actual, wanted)}{hint}";
            }
        }
        return $"its lines match at line {at + 1}, but it ends the file without a newline and the file goes on after line {at + oldLines.Count}";
    }

    /// <summary>A line for a message: quoted, without its newline, noting a missing newline only when that is the difference.</summary>
    private static string Show(string line, string? other)
    {
        var hasNewline = line.EndsWith('\n');
        var text = hasNewline ? line[..^1] : line;
        if (text.Length > ShownLineLimit)
        {
            text = string.Concat(text.AsSpan(0, ShownLineLimit), "…");
        }
        text = text.Replace("\r", "\\r", StringComparison.Ordinal);
        var note = !hasNewline && (other is null || other.EndsWith('\n')) ? " (no newline at end of file)" : "";
        return $"'{text}'{note}";
    }

    private static PatchConflictException Conflict(FilePatch patch, int hunkIndex, string reason) =>
        patch.Hunks.Count == 0 || hunkIndex < 0
            ? new PatchConflictException(patch.Path, 0, "", reason)
            : new PatchConflictException(patch.Path, hunkIndex + 1, patch.Hunks[hunkIndex].Header, reason);
}
