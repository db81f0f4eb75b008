using System.Text.RegularExpressions;

namespace PyroMcp.Tests;

/// <summary>
/// docs/troubleshooting.md documents every error code pyro can return, and no other: the codes
/// are read from the source where errors are made, so a new code without a line in the doc fails here.
/// </summary>
public sealed partial class TroubleshootingTests
{
    [Fact]
    public void EveryErrorCodeInTheSourceIsDocumentedAndNoOther()
    {
        var inSource = CodesInSource();
        var documented = DocumentedCodes();

        // The scan finds the codes it must: one of each way a code is made.
        Assert.Superset(new HashSet<string>
        {
            "unknown_environment", // new PyroInputException("...")
            "cwd_not_found",       // new AgentFailure("...") in the guest agent
            "boot_timeout",        // BootFailureAsync("...")
            "invalid_profile",     // Output.Fail(json, "...")
            "invalid_tail_lines",  // CheckRange(..., "...")
            "shell_closed",        // => new("...", $"...")
            "relay_failed",        // new AgentError(x ? y : "...")
            "guest_protocol",      // Sanitize(error?.Code ?? "...")
        }, inSource);
        Assert.True(inSource.Count > 100, $"only {inSource.Count} codes found in src/: the scan is broken");

        var undocumented = inSource.Except(documented).Order().ToList();
        var stale = documented.Except(inSource).Order().ToList();
        Assert.True(undocumented.Count == 0 && stale.Count == 0,
            $"docs/troubleshooting.md and the source disagree.\nIn the source, not documented: {string.Join(", ", undocumented)}\nDocumented, not in the source: {string.Join(", ", stale)}");
    }

    [Fact]
    public void EachCodeIsDocumentedOnceWithWhatToDo()
    {
        var rows = CodeRow().Matches(ErrorCodesSection()).Select(m => (Code: m.Groups["code"].Value, Text: m.Groups["text"].Value.Trim())).ToList();
        Assert.Equal(rows.Count, rows.Select(r => r.Code).Distinct().Count());
        Assert.All(rows, r => Assert.True(r.Text.Length > 20, $"{r.Code} has no real explanation: '{r.Text}'"));
    }

    [Fact]
    public void TheDocTellsAReferenceUserTheExecutionModeValue()
    {
        var doc = Doc();
        Assert.Contains("guest_virtio_serial", doc);
        Assert.Contains("guest_vsock", doc);
        // The value the doc promises is the one pyro reports.
        Assert.Equal("guest_virtio_serial", System.Text.Json.JsonSerializer.SerializeToElement(ExecutionMode.Guest, PyroJsonContext.Default.ExecutionMode).GetString());
    }

    private static string Doc() => File.ReadAllText(Path.Combine(Repo.Root, "docs", "troubleshooting.md"));

    private static HashSet<string> DocumentedCodes() => CodeRow().Matches(ErrorCodesSection()).Select(m => m.Groups["code"].Value).ToHashSet();

    /// <summary>From "## Error codes" to the end: the symptom table above may name a code too.</summary>
    private static string ErrorCodesSection()
    {
        var doc = Doc();
        var start = doc.IndexOf("\n## Error codes", StringComparison.Ordinal);
        Assert.True(start >= 0, "docs/troubleshooting.md has no '## Error codes' section");
        return doc[start..];
    }

    /// <summary>Every code an error is made with in src/: the ways pyro constructs its errors, across all projects.</summary>
    internal static HashSet<string> CodesInSource()
    {
        var codes = new HashSet<string>(StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateFiles(Path.Combine(Repo.Root, "src"), "*.cs", SearchOption.AllDirectories))
        {
            var text = File.ReadAllText(file);
            foreach (var pattern in new[] { ErrorConstructor(), RangeCheck(), TargetTypedError(), FallbackCode() })
            {
                foreach (Match m in pattern.Matches(text))
                {
                    codes.Add(m.Groups["code"].Value);
                }
            }
        }

        return codes;
    }

    /// <summary><c>new XxxException("code"</c>, <c>AgentFailure("code"</c>, <c>ToolError("code"</c>, <c>Error("code"</c>, <c>Fail(json, "code"</c>, <c>BootFailureAsync("code"</c>.</summary>
    [GeneratedRegex(@"\b\w*(?:Exception|Failure|AgentError|ToolError|Error|Fail|FailureAsync)\(\s*(?:\w+\s*,\s*)?""(?<code>[a-z][a-z0-9_]*)""")]
    private static partial Regex ErrorConstructor();

    /// <summary><c>CheckRange(value, min, max, "parameter", "code")</c> in the MCP server.</summary>
    [GeneratedRegex(@"\bCheckRange\([^;]*?""(?<code>[a-z][a-z0-9_]*)""\s*\)")]
    private static partial Regex RangeCheck();

    /// <summary><c>=&gt; new("code", "message")</c>: a target-typed error in a helper that returns one.</summary>
    [GeneratedRegex(@"(?:=>|return|throw)\s+new\(\s*""(?<code>[a-z][a-z0-9_]*)""\s*,\s*\$?@?""")]
    private static partial Regex TargetTypedError();

    /// <summary>A code used when another is missing: <c>Exception(Sanitize(error?.Code ?? "code"</c>, <c>AgentError(x is PyroException p ? p.Code : "code"</c>.</summary>
    [GeneratedRegex(@"(?:Exception|Error)\([^;""]*?(?:\?\?|:)\s*""(?<code>[a-z][a-z0-9_]*)""")]
    private static partial Regex FallbackCode();

    [GeneratedRegex(@"(?m)^\| `(?<code>[a-z][a-z0-9_]*)` \| (?<text>.*) \|$")]
    private static partial Regex CodeRow();
}
