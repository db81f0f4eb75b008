using System.CommandLine;

namespace PyroMcp.Cli;

/// <summary>A request the command line itself refuses, with a stable code (the SDK's own when one fits).</summary>
internal sealed class CliUsageException(string code, string message) : ArgumentException(message)
{
    public string Code { get; } = code;
}

/// <summary>
/// Text that came from the guest, made safe for a terminal: a hostile guest must not be able to move
/// the cursor, rewrite the title or forge pyro's own lines through a service name, a reason or a log.
/// </summary>
internal static class Terminal
{
    /// <summary>One header field: no control characters at all (C0, DEL, C1); tabs and line breaks become spaces so the field stays on its line.</summary>
    internal static string Line(string text)
    {
        if (!text.Any(char.IsControl))
        {
            return text;
        }

        return new string(text.Where(c => !char.IsControl(c) || c is '\n' or '\t' or '\r').Select(c => char.IsControl(c) ? ' ' : c).ToArray());
    }

    /// <summary>A <c>key=value</c> value: <see cref="Line"/>, and quoted when it holds a space or a quote so it cannot pose as another field.</summary>
    internal static string Word(string text)
    {
        var clean = Line(text);
        return clean.Length > 0 && !clean.Any(c => char.IsWhiteSpace(c) || c == '"') ? clean : "\"" + clean.Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";
    }

    /// <summary>Several lines (service logs): control characters removed except line feed and tab.</summary>
    internal static string Block(string text)
        => text.Any(c => char.IsControl(c) && c is not '\n' and not '\t') ? new string(text.Where(c => !char.IsControl(c) || c is '\n' or '\t').ToArray()) : text;

    /// <summary><see cref="Output.GuardAsync"/>, and a <see cref="CliUsageException"/> reported with its own code and exit 2.</summary>
    internal static Task<int> GuardAsync(ParseResult parse, Func<Task<int>> action, Func<PyroException, string?>? hint = null)
    {
        var json = parse.GetValue(Output.Json);
        return Output.GuardAsync(json, async () =>
        {
            try
            {
                return await action();
            }
            catch (CliUsageException ex)
            {
                return Output.Fail(json, ex.Code, ex.Message, CliApp.ExitUsage, ErrorHints.For(ex.Code, null, parse));
            }
        }, hint);
    }
}
