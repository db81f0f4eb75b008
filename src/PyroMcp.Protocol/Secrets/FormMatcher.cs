using System.Buffers;
using System.Text;

namespace PyroMcp.Protocol.Secrets;

/// <summary>One string to find and what replaces it.</summary>
internal sealed class Form(string text, string replacement)
{
    internal string Text { get; } = text;
    internal string Replacement { get; } = replacement;
}

/// <summary>
/// Leftmost-longest, non-overlapping, ordinal search for a fixed set of forms, shared by the text
/// redactor and (over Latin-1-mapped bytes) the byte redactor. Immutable once built.
/// </summary>
internal sealed class FormMatcher
{
    /// <summary>
    /// Candidates are found by the first characters of each form only: SearchValues builds its
    /// automaton from what it is given, and a 64 KiB value's hex or JSON form should not make it huge.
    /// A candidate is then checked against the whole forms that start with its first character.
    /// </summary>
    private const int PrefixLength = 16;

    private readonly SearchValues<string> _prefixes;
    private readonly SearchValues<char> _firstChars;
    // Longest first, so the first full match at a position is the longest one.
    private readonly Dictionary<char, Form[]> _byFirstChar;

    internal FormMatcher(IReadOnlyList<Form> forms)
    {
        Count = forms.Count;
        MaxLength = forms.Count == 0 ? 0 : forms.Max(f => f.Text.Length);
        _byFirstChar = forms
            .GroupBy(f => f.Text[0])
            .ToDictionary(
                g => g.Key,
                g => g.OrderByDescending(f => f.Text.Length).ThenBy(f => f.Text, StringComparer.Ordinal).ToArray());
        _firstChars = SearchValues.Create(_byFirstChar.Keys.ToArray().AsSpan());
        var prefixes = forms
            .Select(f => f.Text.Length > PrefixLength ? f.Text[..PrefixLength] : f.Text)
            .Distinct(StringComparer.Ordinal)
            .ToArray();
        _prefixes = SearchValues.Create(prefixes, StringComparison.Ordinal);
    }

    /// <summary>How many distinct forms are searched for.</summary>
    internal int Count { get; }

    /// <summary>The length of the longest form.</summary>
    internal int MaxLength { get; }

    /// <summary>
    /// The start of the leftmost match at or after <paramref name="from"/> and before
    /// <paramref name="before"/> (the longest form there in <paramref name="form"/>), or -1.
    /// </summary>
    internal int Next(ReadOnlySpan<char> text, int from, out Form? form, int before = int.MaxValue)
    {
        var position = from;
        while (position < Math.Min(text.Length, before))
        {
            var found = text[position..].IndexOfAny(_prefixes);
            if (found < 0)
            {
                break;
            }

            position += found;
            if (position >= before)
            {
                break;
            }

            form = LongestAt(text, position);
            if (form is not null)
            {
                return position;
            }

            position++;
        }

        form = null;
        return -1;
    }

    /// <summary>
    /// The earliest position at or after <paramref name="from"/> from which the rest of
    /// <paramref name="text"/> is a proper prefix of some form (a match that more text could
    /// complete or lengthen), or the text's length if there is none.
    /// </summary>
    internal int PartialStart(ReadOnlySpan<char> text, int from)
    {
        var position = Math.Max(from, text.Length - MaxLength + 1);
        while (position < text.Length)
        {
            var found = text[position..].IndexOfAny(_firstChars);
            if (found < 0)
            {
                break;
            }

            position += found;
            var rest = text[position..];
            foreach (var form in _byFirstChar[text[position]])
            {
                if (form.Text.Length <= rest.Length)
                {
                    break;
                }

                if (rest.SequenceEqual(form.Text.AsSpan(0, rest.Length)))
                {
                    return position;
                }
            }

            position++;
        }

        return text.Length;
    }

    /// <summary>Every match replaced; the same instance when there is none.</summary>
    internal string Replace(string text)
    {
        var span = text.AsSpan();
        var start = Next(span, 0, out var form);
        if (start < 0)
        {
            return text;
        }

        var output = new StringBuilder(text.Length);
        var done = 0;
        while (start >= 0)
        {
            output.Append(span[done..start]).Append(form!.Replacement);
            done = start + form.Text.Length;
            start = Next(span, done, out form);
        }

        return output.Append(span[done..]).ToString();
    }

    /// <summary>
    /// Replaces what can be decided in <paramref name="buffer"/> whatever follows it: appends that
    /// to <paramref name="output"/> and returns where the undecided tail starts (at most
    /// <see cref="MaxLength"/> - 1 characters before the end).
    /// </summary>
    internal int ReplaceDecided(ReadOnlySpan<char> buffer, StringBuilder output)
    {
        // A form that matches at a position before the first partial start lies wholly inside the
        // buffer, and no longer form can match there once more text arrives; so up to that point
        // the decisions are the ones Replace would make on the whole stream.
        var done = 0;
        var partial = PartialStart(buffer, 0);
        while (true)
        {
            // Only starts before the partial one are decided; looking further would redo, on every
            // chunk, the work on a tail that is held back anyway.
            var start = Next(buffer, done, out var form, partial);
            if (start < 0)
            {
                output.Append(buffer[done..partial]);
                return partial;
            }

            output.Append(buffer[done..start]).Append(form!.Replacement);
            done = start + form.Text.Length;
            if (done > partial)
            {
                partial = PartialStart(buffer, done);
            }
        }
    }

    private Form? LongestAt(ReadOnlySpan<char> text, int position)
    {
        if (!_byFirstChar.TryGetValue(text[position], out var forms))
        {
            return null;
        }

        var rest = text[position..];
        foreach (var form in forms)
        {
            if (rest.StartsWith(form.Text, StringComparison.Ordinal))
            {
                return form;
            }
        }

        return null;
    }
}
