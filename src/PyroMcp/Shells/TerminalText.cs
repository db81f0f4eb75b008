using System.Text;

namespace PyroMcp.Shells;

/// <summary>
/// Terminal output made plain for a reader that is not a terminal (a model, a log): escape
/// sequences (CSI, OSC, DCS and the two-character ones) removed, carriage returns before a newline
/// dropped, and other control characters but tab and newline removed.
/// </summary>
internal static class TerminalText
{
    private const char Esc = '\u001b';
    private const char Bel = '\u0007';

    internal static string Plain(string raw)
    {
        var text = new StringBuilder(raw.Length);
        for (var i = 0; i < raw.Length; i++)
        {
            var c = raw[i];
            if (c == Esc)
            {
                i = SkipEscape(raw, i);
                continue;
            }

            if (c == '\u009b')
            {
                // The 8-bit CSI introducer.
                i = SkipCsi(raw, i + 1);
                continue;
            }

            if (c == '\r')
            {
                // A carriage return goes back to the start of the line. Before a newline, or at
                // the start of a line already, it adds nothing; elsewhere (a progress line
                // redrawn) plain text shows the redraw on a line of its own.
                var atLineStart = text.Length == 0 || text[^1] == '\n';
                var beforeNewline = i + 1 < raw.Length && raw[i + 1] == '\n';
                if (!atLineStart && !beforeNewline && i + 1 < raw.Length)
                {
                    text.Append('\n');
                }

                continue;
            }

            if (c == '\b')
            {
                if (text.Length > 0 && text[^1] != '\n')
                {
                    text.Length--;
                }

                continue;
            }

            if (char.IsControl(c) && c is not '\n' and not '\t')
            {
                continue;
            }

            text.Append(c);
        }

        return text.ToString();
    }

    /// <summary>Returns the index of the sequence's last character.</summary>
    private static int SkipEscape(string raw, int start)
    {
        var i = start + 1;
        if (i >= raw.Length)
        {
            return start;
        }

        switch (raw[i])
        {
            case '[':
                return SkipCsi(raw, i + 1);
            case ']' or 'P' or '_' or '^' or 'X':
                // OSC, DCS, APC, PM, SOS: up to BEL or ESC \.
                for (var j = i + 1; j < raw.Length; j++)
                {
                    if (raw[j] == Bel)
                    {
                        return j;
                    }

                    if (raw[j] == Esc && j + 1 < raw.Length && raw[j + 1] == '\\')
                    {
                        return j + 1;
                    }
                }

                return raw.Length - 1;
            case '(' or ')' or '*' or '+' or '#' or '%':
                // Character set and line-size selections take one more character.
                return Math.Min(i + 1, raw.Length - 1);
            default:
                return i;
        }
    }

    private static int SkipCsi(string raw, int i)
    {
        // Parameter and intermediate bytes, then one final byte in @..~.
        for (; i < raw.Length; i++)
        {
            if (raw[i] is >= '@' and <= '~')
            {
                return i;
            }
        }

        return raw.Length - 1;
    }
}
