using System.Text;

namespace PyroMcp.Protocol.Secrets;

/// <summary>
/// Replaces every spelling of a workspace's secret values with <c>[REDACTED:NAME]</c> in text and
/// bytes that leave the guest. Forms of a value: the value itself (and, if it has line breaks, as a
/// terminal prints it, each <c>\n</c> as <c>\r\n</c>); its UTF-8 bytes in base64
/// (standard and URL-safe alphabets, padded and unpadded, and the characters that stay the same at
/// each of the three alignments inside a longer base64 stream); lower- and upper-case hex; URL and
/// form encoding (upper- and lower-case <c>%xx</c>); JSON string escaping (System.Text.Json's
/// default and relaxed escaping, upper- and lower-case <c>\uXXXX</c>). Encoded forms shorter than
/// 6 characters are not searched for. At each position the longest form wins; matches are
/// ordinal, left to right and do not overlap; when two secrets share a form, the name that sorts
/// first (ordinal) is used.
/// </summary>
/// <remarks>
/// Immutable and safe to share between threads; the streams it creates are single-user. Redacting
/// redacted text again changes nothing, unless a value is itself part of a marker (such as a value
/// <c>RED</c>).
/// </remarks>
public sealed class SecretRedactor
{
    private readonly FormMatcher _text;
    private readonly Lazy<FormMatcher> _bytes;

    /// <summary>A redactor with no secrets: it returns its input unchanged.</summary>
    public static SecretRedactor None { get; } = new([]);

    /// <summary>Builds the forms of every secret.</summary>
    /// <param name="secrets">Name to value. Each value is 1 to 65,536 UTF-8 bytes; a name may repeat.</param>
    /// <exception cref="ArgumentException">A name or value is empty, or a value is longer than 65,536 UTF-8 bytes.</exception>
    public SecretRedactor(IEnumerable<KeyValuePair<string, string>> secrets)
    {
        ArgumentNullException.ThrowIfNull(secrets);
        var list = secrets.ToList();
        foreach (var (name, value) in list)
        {
            ArgumentException.ThrowIfNullOrEmpty(name, nameof(secrets));
            ArgumentException.ThrowIfNullOrEmpty(value, nameof(secrets));
            if (Encoding.UTF8.GetByteCount(value) > SecretForms.MaxValueBytes)
            {
                throw new ArgumentException(
                    $"The value of secret {name} is longer than {SecretForms.MaxValueBytes} UTF-8 bytes; store a shorter value.",
                    nameof(secrets));
            }
        }

        // Sorting by name first means that a form shared by two secrets goes to the name that sorts first.
        var ordered = list
            .OrderBy(s => s.Key, StringComparer.Ordinal)
            .ThenBy(s => s.Value, StringComparer.Ordinal)
            .ToList();
        Names = ordered.Select(s => s.Key).Distinct(StringComparer.Ordinal).ToArray();

        var owners = new Dictionary<string, string>(StringComparer.Ordinal);
        var forms = new List<(string Form, string Name)>();
        foreach (var (name, value) in ordered)
        {
            foreach (var form in SecretForms.Of(value))
            {
                if (owners.TryAdd(form, name))
                {
                    forms.Add((form, name));
                }
            }
        }

        _text = new FormMatcher(forms.Select(f => new Form(f.Form, Marker(f.Name))).ToArray());
        _bytes = new Lazy<FormMatcher>(
            () => new FormMatcher(forms
                .Select(f => new Form(Latin1.ToChars(Encoding.UTF8.GetBytes(f.Form)), Latin1.ToChars(Encoding.UTF8.GetBytes(Marker(f.Name)))))
                .GroupBy(f => f.Text, StringComparer.Ordinal)
                .Select(g => g.First())
                .ToArray()),
            LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>True when there is no secret: every method returns its input unchanged.</summary>
    public bool IsEmpty => Names.Count == 0;

    /// <summary>The secrets' names, distinct, in ordinal order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>How many distinct forms are searched for in text (for figures and diagnostics).</summary>
    public int FormCount => _text.Count;

    /// <summary>
    /// The length of the longest form: a stream holds back fewer characters (or bytes) than this,
    /// and only while they may be the start of a form.
    /// </summary>
    public int LongestForm => _text.MaxLength;

    /// <summary>Replaces every form of every value with <c>[REDACTED:NAME]</c>.</summary>
    /// <returns><paramref name="text"/> itself when nothing matched.</returns>
    public string Redact(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return IsEmpty ? text : _text.Replace(text);
    }

    /// <summary>
    /// Replaces the UTF-8 bytes of every form with the UTF-8 bytes of <c>[REDACTED:NAME]</c>; every
    /// other byte, valid UTF-8 or not, is copied unchanged.
    /// </summary>
    public byte[] Redact(ReadOnlySpan<byte> bytes)
    {
        if (IsEmpty || bytes.IsEmpty)
        {
            return bytes.ToArray();
        }

        var chars = Latin1.ToChars(bytes);
        var redacted = _bytes.Value.Replace(chars);
        return ReferenceEquals(redacted, chars) ? bytes.ToArray() : Latin1.ToBytes(redacted);
    }

    /// <summary>True when <paramref name="text"/> holds any form of any value.</summary>
    public bool Contains(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return !IsEmpty && _text.Next(text, 0, out _) >= 0;
    }

    /// <summary>
    /// The length of the longest suffix of <paramref name="text"/> that is a proper prefix of some
    /// form (0 if none): how much of it a stream must keep until more text shows whether it is a secret.
    /// </summary>
    public int HoldBack(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return IsEmpty ? 0 : text.Length - _text.PartialStart(text, 0);
    }

    /// <summary>A redacting stream for text that arrives in chunks.</summary>
    public SecretTextStream NewTextStream() => new(IsEmpty ? null : _text);

    /// <summary>A redacting stream for bytes that arrive in chunks (a pipe, a log).</summary>
    public SecretByteStream NewByteStream() => new(IsEmpty ? null : _bytes.Value);

    private static string Marker(string name) => $"[REDACTED:{name}]";
}

/// <summary>
/// Redacts text that arrives in chunks: the concatenation of every <see cref="Push"/> result and
/// <see cref="Flush"/> equals <see cref="SecretRedactor.Redact(string)"/> of the whole text,
/// however it is split. It holds back only a tail that may still become a form (shorter than
/// <see cref="SecretRedactor.LongestForm"/>). Single-user.
/// </summary>
public sealed class SecretTextStream
{
    private readonly FormMatcher? _matcher;
    private string _held = "";

    internal SecretTextStream(FormMatcher? matcher) => _matcher = matcher;

    /// <summary>How many characters are held back, waiting for the next chunk or <see cref="Flush"/>.</summary>
    public int Pending => _held.Length;

    /// <summary>Adds a chunk; returns the redacted text that can be released now (possibly empty).</summary>
    public string Push(string chunk)
    {
        ArgumentNullException.ThrowIfNull(chunk);
        if (_matcher is null)
        {
            return chunk;
        }

        var buffer = _held.Length == 0 ? chunk : _held + chunk;
        var output = new StringBuilder(buffer.Length);
        var kept = _matcher.ReplaceDecided(buffer, output);
        _held = buffer[kept..];
        return output.ToString();
    }

    /// <summary>Ends the text: returns the redacted rest of what was held back.</summary>
    public string Flush()
    {
        if (_matcher is null)
        {
            return "";
        }

        var rest = _matcher.Replace(_held);
        _held = "";
        return rest;
    }
}

/// <summary>
/// Redacts bytes that arrive in chunks, such as a pipe's: the concatenation of every
/// <see cref="Push"/> result and <see cref="Flush"/> equals
/// <see cref="SecretRedactor.Redact(ReadOnlySpan{byte})"/> of all the bytes, however they are
/// split (a chunk may end inside a UTF-8 sequence). It holds back only a tail that may still
/// become a form. Single-user.
/// </summary>
public sealed class SecretByteStream
{
    private readonly SecretTextStream? _inner;

    internal SecretByteStream(FormMatcher? matcher) => _inner = matcher is null ? null : new SecretTextStream(matcher);

    /// <summary>How many bytes are held back, waiting for the next chunk or <see cref="Flush"/>.</summary>
    public int Pending => _inner?.Pending ?? 0;

    /// <summary>Adds a chunk; returns the redacted bytes that can be released now (possibly empty).</summary>
    public byte[] Push(ReadOnlySpan<byte> chunk) =>
        _inner is null ? chunk.ToArray() : Latin1.ToBytes(_inner.Push(Latin1.ToChars(chunk)));

    /// <summary>Ends the bytes: returns the redacted rest of what was held back.</summary>
    public byte[] Flush() => _inner is null ? [] : Latin1.ToBytes(_inner.Flush());
}

/// <summary>
/// Bytes as chars one for one (byte b is U+00bb), so the text matcher works on binary data and
/// invalid UTF-8 comes back exactly as it was.
/// </summary>
internal static class Latin1
{
    internal static string ToChars(ReadOnlySpan<byte> bytes) => Encoding.Latin1.GetString(bytes);

    // Every char here came from ToChars or from a Latin-1-mapped form, so none is above U+00FF.
    internal static byte[] ToBytes(string chars) => Encoding.Latin1.GetBytes(chars);
}
