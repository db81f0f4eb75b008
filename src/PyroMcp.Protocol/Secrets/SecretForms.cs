using System.Net;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace PyroMcp.Protocol.Secrets;

/// <summary>
/// The spellings of one secret value that output may carry: the value itself and the ways tools
/// commonly encode it (base64 in both alphabets and at every alignment inside a longer base64
/// stream, hex, URL and form encoding, JSON string escaping).
/// </summary>
internal static class SecretForms
{
    /// <summary>
    /// Encoded forms shorter than this are dropped: a 4-character hex or base64 spelling occurs by
    /// chance in ordinary output, and redacting it would shred unrelated text.
    /// </summary>
    internal const int MinEncodedLength = 6;

    /// <summary>The largest value accepted, in UTF-8 bytes.</summary>
    internal const int MaxValueBytes = 65_536;

    /// <summary>
    /// The distinct forms of <paramref name="value"/>, the raw value first (then, for a value with
    /// line breaks, the raw value as a terminal shows it, with "\r\n"), kept whatever their length.
    /// </summary>
    internal static List<string> Of(string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        var encoded = new List<string>();

        var base64 = new List<string>
        {
            Convert.ToBase64String(bytes),
            Convert.ToBase64String(bytes).TrimEnd('='),
        };
        // Inside a longer base64 stream the value's bytes start at one of three offsets within a
        // 3-byte group; only the characters whose 6 bits all come from the value are the same
        // whatever surrounds it, so those "stable cores" are what can be searched for.
        for (var prefix = 0; prefix < 3; prefix++)
        {
            base64.Add(StableCore(bytes, prefix));
        }

        foreach (var b in base64)
        {
            encoded.Add(b);
            encoded.Add(b.Replace('+', '-').Replace('/', '_'));
        }

        encoded.Add(Convert.ToHexStringLower(bytes));
        encoded.Add(Convert.ToHexString(bytes));

        foreach (var url in UrlForms(value))
        {
            encoded.Add(url);
            encoded.Add(LowerHexEscapes(url, '%', 2));
        }

        foreach (var json in JsonForms(value))
        {
            encoded.Add(json);
            encoded.Add(LowerJsonEscapes(json));
        }

        var forms = new List<string> { value };
        var seen = new HashSet<string>(StringComparer.Ordinal) { value };
        // A terminal (a pty with onlcr, as in an interactive shell) writes each '\n' as "\r\n": a
        // multi-line value such as a PEM key would otherwise pass through a shell read untouched.
        var terminal = value.Replace("\n", "\r\n", StringComparison.Ordinal);
        if (seen.Add(terminal))
        {
            forms.Add(terminal);
        }

        foreach (var form in encoded)
        {
            if (form.Length >= MinEncodedLength && seen.Add(form))
            {
                forms.Add(form);
            }
        }

        return forms;
    }

    /// <summary>
    /// The base64 characters of <paramref name="bytes"/> that do not depend on anything around them
    /// when <paramref name="prefix"/> other bytes precede them in the same stream.
    /// </summary>
    internal static string StableCore(byte[] bytes, int prefix)
    {
        var shifted = new byte[prefix + bytes.Length];
        bytes.CopyTo(shifted, prefix);
        var text = Convert.ToBase64String(shifted);
        // Character j covers bits [6j, 6j + 6) of the stream; the value owns bits [8p, 8p + 8n).
        var start = (8 * prefix + 5) / 6;
        var end = (8 * prefix + 8 * bytes.Length) / 6;
        return end > start ? text[start..end] : "";
    }

    private static IEnumerable<string> UrlForms(string value)
    {
        if (Try(() => Uri.EscapeDataString(value)) is { } escaped)
        {
            yield return escaped;
            // Form encoding: the same, with space as '+' ('+' itself is always escaped as %2B).
            yield return escaped.Replace("%20", "+", StringComparison.Ordinal);
        }

        // WebUtility leaves !*() alone and escapes ~, unlike EscapeDataString.
        if (Try(() => WebUtility.UrlEncode(value)) is { } form)
        {
            yield return form;
        }
    }

    private static IEnumerable<string> JsonForms(string value)
    {
        if (Try(() => JsonEncodedText.Encode(value).Value) is { } strict)
        {
            yield return strict;
        }

        if (Try(() => JsonEncodedText.Encode(value, JavaScriptEncoder.UnsafeRelaxedJsonEscaping).Value) is { } relaxed)
        {
            yield return relaxed;
        }
    }

    // A value the encoders refuse (an unpaired surrogate, say) simply has no such form.
    private static string? Try(Func<string> encode)
    {
        try
        {
            return encode();
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>Lower-cases the <paramref name="digits"/> hex digits after each <paramref name="introducer"/>.</summary>
    private static string LowerHexEscapes(string text, char introducer, int digits)
    {
        var chars = text.ToCharArray();
        for (var i = 0; i < chars.Length; i++)
        {
            if (chars[i] == introducer)
            {
                for (var d = 1; d <= digits && i + d < chars.Length; d++)
                {
                    chars[i + d] = char.ToLowerInvariant(chars[i + d]);
                }

                i += digits;
            }
        }

        return new string(chars);
    }

    /// <summary>Lower-cases the hex digits of each <c>\uXXXX</c> escape (other escapes are left alone).</summary>
    private static string LowerJsonEscapes(string text)
    {
        var chars = text.ToCharArray();
        for (var i = 0; i < chars.Length; i++)
        {
            if (chars[i] != '\\' || i + 1 >= chars.Length)
            {
                continue;
            }

            if (chars[i + 1] == 'u')
            {
                for (var d = 2; d <= 5 && i + d < chars.Length; d++)
                {
                    chars[i + d] = char.ToLowerInvariant(chars[i + d]);
                }

                i += 5;
            }
            else
            {
                i++;
            }
        }

        return new string(chars);
    }
}
