using System.Text.Json;
using System.Text.RegularExpressions;

namespace PyroMcp.Tests;

/// <summary>
/// The public contract and the approval tests agree: docs/public-contract.md lists exactly the
/// commands, flags and defaults of the approved help pages, and exactly the MCP tools, profiles,
/// parameters and defaults of the approved tool lists (which the approval tests hold to the code).
/// </summary>
public sealed partial class PublicContractTests
{
    private static readonly string Approved = Path.Combine(Repo.Root, "tests", "PyroMcp.Tests", "Approved");

    [Fact]
    public void EveryCommandFlagAndDefaultIsInTheContractAndNoOther()
    {
        var approved = ApprovedCommands();
        var documented = DocumentedCommands();
        Assert.True(approved.Count > 40, $"only {approved.Count} commands read from CliHelp.approved.txt: the parser is broken");

        var missing = approved.Keys.Except(documented.Keys).Order().ToList();
        var extra = documented.Keys.Except(approved.Keys).Order().ToList();
        Assert.True(missing.Count == 0 && extra.Count == 0,
            $"commands not in the contract: {string.Join(", ", missing)}; in the contract but not in pyro: {string.Join(", ", extra)}");
        foreach (var (command, flags) in approved)
        {
            Assert.Equal(Describe(command, flags), Describe(command, documented[command]));
        }
    }

    [Fact]
    public void EveryToolProfileParameterAndDefaultIsInTheContractAndNoOther()
    {
        var approved = ApprovedTools();
        var documented = DocumentedTools();
        Assert.True(approved.Count > 40, $"only {approved.Count} tools read from the approved tool lists: the parser is broken");

        var missing = approved.Keys.Except(documented.Keys).Order().ToList();
        var extra = documented.Keys.Except(approved.Keys).Order().ToList();
        Assert.True(missing.Count == 0 && extra.Count == 0,
            $"tools not in the contract: {string.Join(", ", missing)}; in the contract but not served: {string.Join(", ", extra)}");
        foreach (var (tool, expected) in approved)
        {
            Assert.Equal(expected, documented[tool]);
        }
    }

    private static string Describe(string command, IReadOnlyDictionary<string, string?> flags)
        => command + ": " + string.Join(", ", flags.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => f.Value is null ? f.Key : $"{f.Key} ({f.Value})"));

    /// <summary>Each command page of CliHelp.approved.txt that runs something (groups are only their subcommands): its flags with their default, "required", or null.</summary>
    private static Dictionary<string, Dictionary<string, string?>> ApprovedCommands()
    {
        var text = File.ReadAllText(Path.Combine(Approved, "CliHelp.approved.txt"));
        var commands = new Dictionary<string, Dictionary<string, string?>>(StringComparer.Ordinal);
        var pages = HelpPage().Split(text);
        for (var i = 1; i + 1 < pages.Length; i += 2)
        {
            var path = pages[i].Trim();
            var flags = new Dictionary<string, string?>(StringComparer.Ordinal);
            var hasSubcommands = false;
            string? section = null;
            foreach (var line in pages[i + 1].Split('\n'))
            {
                if (line.Length > 0 && !line.StartsWith(' ') && line.EndsWith(':'))
                {
                    section = line;
                    hasSubcommands |= line == "Commands:";
                    continue;
                }

                if (section == "Options:" && OptionLine().Match(line) is { Success: true } option)
                {
                    var value = option.Groups["required"].Success ? "required" : DefaultValue().Match(option.Groups["description"].Value) is { Success: true } d ? d.Groups[1].Value : null;
                    foreach (var name in option.Groups["names"].Value.Split(", ").Where(n => n.StartsWith("--", StringComparison.Ordinal) && n != "--help"))
                    {
                        flags[name] = value;
                    }
                }
            }

            if (!hasSubcommands || flags.Count > 0)
            {
                commands[path.Length == 0 ? "pyro" : "pyro " + path] = flags;
            }
        }

        return commands;
    }

    /// <summary>The command table of the contract's CLI section.</summary>
    private static Dictionary<string, Dictionary<string, string?>> DocumentedCommands()
    {
        var commands = new Dictionary<string, Dictionary<string, string?>>(StringComparer.Ordinal);
        foreach (Match row in CommandRow().Matches(Section("## CLI", "## MCP tools")))
        {
            var flags = FlagCell().Matches(row.Groups["options"].Value).ToDictionary(m => m.Groups["flag"].Value, m => m.Groups["default"].Success ? m.Groups["default"].Value : null, StringComparer.Ordinal);
            Assert.True(commands.TryAdd(row.Groups["command"].Value.TrimEnd(), flags), $"{row.Groups["command"].Value} is in the contract twice");
        }

        return commands;
    }

    /// <summary>Every tool of the approved tool lists: "profiles | name=default, name, ..." in the schema's order.</summary>
    private static Dictionary<string, string> ApprovedTools()
    {
        var profiles = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var parameters = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var profile in new[] { "vm-run", "workspace-core", "workspace-full" })
        {
            using var tools = JsonDocument.Parse(File.ReadAllText(Path.Combine(Approved, $"McpTools.{profile}.approved.txt")));
            foreach (var tool in tools.RootElement.EnumerateArray())
            {
                var name = tool.GetProperty("name").GetString()!;
                (profiles.TryGetValue(name, out var list) ? list : profiles[name] = []).Add(profile);
                var properties = tool.GetProperty("inputSchema").TryGetProperty("properties", out var p) ? p.EnumerateObject().ToList() : [];
                parameters[name] = string.Join(", ", properties.Select(q => q.Value.TryGetProperty("default", out var d) ? $"{q.Name}={d.GetRawText()}" : q.Name));
            }
        }

        return profiles.ToDictionary(t => t.Key, t => string.Join(", ", t.Value) + " | " + parameters[t.Key], StringComparer.Ordinal);
    }

    /// <summary>The tool table of the contract's MCP section, in the same shape as <see cref="ApprovedTools"/>.</summary>
    private static Dictionary<string, string> DocumentedTools()
    {
        var tools = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (Match row in ToolRow().Matches(Section("## MCP tools", "## Output lines")))
        {
            var parameters = string.Join(", ", ParameterCell().Matches(row.Groups["parameters"].Value).Select(m => m.Groups[1].Value));
            Assert.True(tools.TryAdd(row.Groups["tool"].Value, row.Groups["profiles"].Value.Trim() + " | " + parameters), $"{row.Groups["tool"].Value} is in the contract twice");
        }

        return tools;
    }

    private static string Section(string from, string to)
    {
        var doc = File.ReadAllText(Path.Combine(Repo.Root, "docs", "public-contract.md")).Replace("\r\n", "\n", StringComparison.Ordinal);
        var start = doc.IndexOf("\n" + from + "\n", StringComparison.Ordinal);
        var end = doc.IndexOf("\n" + to + "\n", start + 1, StringComparison.Ordinal);
        Assert.True(start >= 0 && end > start, $"docs/public-contract.md has no '{from}' section followed by '{to}'");
        return doc[start..end];
    }

    [GeneratedRegex(@"(?m)^=== pyro ?(.*?) ?--help ===\n")]
    private static partial Regex HelpPage();

    [GeneratedRegex(@"^  (?<names>(?:-[-\w?]+(?:, )?)+)(?: <[\w-]+>)?(?<required> \(REQUIRED\))?(?:\s{2,}(?<description>.*))?$")]
    private static partial Regex OptionLine();

    [GeneratedRegex(@"\[default: ([^\]]*)\]$")]
    private static partial Regex DefaultValue();

    [GeneratedRegex(@"(?m)^\| `(?<command>pyro[a-z -]*)` \| [^|]* \| (?<options>.*) \|$")]
    private static partial Regex CommandRow();

    [GeneratedRegex(@"`(?<flag>--[\w-]+)`(?: \((?<default>[^)]*)\))?")]
    private static partial Regex FlagCell();

    [GeneratedRegex(@"(?m)^\| `(?<tool>[a-z_]+)` \| (?<profiles>[^|]*) \| (?<parameters>.*) \|$")]
    private static partial Regex ToolRow();

    [GeneratedRegex(@"`([a-z_]+(?:=[^`]*)?)`")]
    private static partial Regex ParameterCell();
}
