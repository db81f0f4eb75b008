using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace PyroMcp.GuestTests;

/// <summary>
/// The smoke pack: every recipe in docs/use-cases runs here twice against real guests, once as
/// its CLI block (one script) and once as its MCP block (tool calls through a real
/// <c>pyro mcp serve</c> child process), read from the doc itself so the two cannot drift. Each
/// run gets state and run directories of its own, and a recipe whose guest has a network runs
/// with pyro inside a <see cref="NetLab"/>. One line per run goes to artifacts/use-case-smoke.txt.
/// </summary>
[Trait("Category", "UseCase")]
public sealed partial class UseCaseTests : GuestTest
{
    private const string Docs = "docs/use-cases";

    /// <summary>The recipes (every page of docs/use-cases but its README), each with both surfaces.</summary>
    public static TheoryData<string, string> Recipes()
    {
        var data = new TheoryData<string, string>();
        foreach (var recipe in RecipeNames())
        {
            data.Add(recipe, "cli");
            data.Add(recipe, "mcp");
        }

        return data;
    }

    /// <summary>Every command block of a recipe is one the smoke pack runs: one CLI script, one MCP block, nothing else.</summary>
    [Fact]
    public void EveryBlockOfEveryRecipeIsRun()
    {
        var recipes = RecipeNames();
        Assert.True(recipes.Count >= 5, "docs/use-cases has fewer than five recipes");
        foreach (var recipe in recipes)
        {
            var text = File.ReadAllText(Path.Combine(Repo.Root, Docs, recipe + ".md"));
            var fences = Fence().Matches(text).Select(m => m.Groups[1].Value).ToList();
            Assert.True(fences.Count(f => f == "bash") == 1 && fences.Count(f => f == "mcp") == 1 && fences.All(f => f is "bash" or "mcp" or "text"),
                $"{recipe}: a recipe has exactly one ```bash block (the CLI script) and one ```mcp block, which the smoke pack runs; found {string.Join(", ", fences)}");
            Assert.StartsWith("# script\n", CliBlock(text));
            Assert.True(Directory.Exists(Path.Combine(Repo.Root, "examples/use-cases", recipe)), $"{recipe}: no fixture under examples/use-cases/{recipe}");
        }
    }

    [Theory]
    [MemberData(nameof(Recipes))]
    public async Task RecipeRunsEndToEnd(string recipe, string surface)
    {
        var text = File.ReadAllText(Path.Combine(Repo.Root, Docs, recipe + ".md"));
        var block = surface == "cli" ? CliBlock(text) : McpBlock(text);
        var clock = Stopwatch.StartNew();
        var outcome = "fail";
        try
        {
            await using var scratch = new LaneScratch("use-case-" + recipe);
            await using var lab = block.Contains("egress", StringComparison.Ordinal) ? await NetLab.StartAsync() : null;
            var servers = lab is null ? null : await RecipeServers.StartAsync(recipe, lab);
            try
            {
                if (surface == "cli")
                {
                    await RunScriptAsync(recipe, block, scratch, lab);
                }
                else
                {
                    await RunMcpAsync(recipe, block, scratch, lab);
                }

                servers?.AssertUsed();
            }
            finally
            {
                await DeleteEverythingAsync(scratch, lab);
                if (servers is not null)
                {
                    await servers.DisposeAsync();
                }
            }

            await scratch.AssertCleanAsync();
            outcome = "pass";
        }
        finally
        {
            Record(string.Create(CultureInfo.InvariantCulture, $"[use-case] {recipe} surface={surface} outcome={outcome} duration_ms={clock.ElapsedMilliseconds}"));
        }
    }

    private static List<string> RecipeNames() =>
        [.. Directory.EnumerateFiles(Path.Combine(Repo.Root, Docs), "*.md")
            .Select(Path.GetFileNameWithoutExtension)
            .Where(n => n != "README")
            .Select(n => n!)
            .Order(StringComparer.Ordinal)];

    private static string CliBlock(string doc) => Assert.Single(BashBlock().Matches(doc)).Groups[1].Value;

    private static string McpBlock(string doc) => Assert.Single(McpFence().Matches(doc)).Groups[1].Value;

    /// <summary>The CLI block as one script from the checkout root, `pyro` being the built CLI, inside the lab when there is one.</summary>
    private static async Task RunScriptAsync(string recipe, string block, LaneScratch scratch, NetLab? lab)
    {
        var script = $"set -euo pipefail\npyro() {{ '{Repo.Cli}' \"$@\"; }}\n{block}";
        var result = await RunBashAsync(script, scratch.Env, lab, TimeSpan.FromMinutes(15));
        Assert.True(result.ExitCode == 0, $"{recipe}: the CLI block exited {result.ExitCode}\n--- stdout\n{result.Stdout}\n--- stderr\n{result.Stderr}");
    }

    private static Task<ProcessResult> RunBashAsync(string script, Dictionary<string, string> env, NetLab? lab, TimeSpan timeout) =>
        lab is null
            ? Processes.RunAsync("bash", ["-c", script], Repo.Root, env, timeout)
            : Processes.RunAsync("ip", lab.InClient("bash", ["-c", script]), Repo.Root, env, timeout);

    /// <summary>The MCP block, step by step, through `pyro mcp serve --profile workspace-full` as a child process.</summary>
    private static async Task RunMcpAsync(string recipe, string block, LaneScratch scratch, NetLab? lab)
    {
        using var output = new TempDir("pyro-use-case-out-");
        var vars = new Dictionary<string, string> { ["OUT"] = output.Path };
        string[] serve = [Repo.Cli, "mcp", "serve", "--profile", "workspace-full", "--allow-path", Repo.Root, "--allow-path", output.Path];
        await using var mcp = await McpClient.CreateAsync(new StdioClientTransport(new StdioClientTransportOptions
        {
            Name = "pyro-" + recipe,
            Command = lab is null ? serve[0] : "ip",
            Arguments = lab is null ? serve[1..] : [.. lab.InClient(serve[0], serve[1..])],
            WorkingDirectory = Repo.Root,
            EnvironmentVariables = scratch.Env.ToDictionary(e => e.Key, e => (string?)e.Value),
        }));
        var transcript = new StringBuilder();
        foreach (var (line, number) in block.Split('\n').Select((l, i) => (l.Trim(), i + 1)).Where(l => l.Item1.Length > 0 && !l.Item1.StartsWith('#')))
        {
            var where = $"{recipe}.md mcp line {number}: {line}";
            transcript.AppendLine(line);
            if (line.StartsWith("$ ", StringComparison.Ordinal))
            {
                var env = scratch.Env;
                foreach (var (k, v) in vars)
                {
                    env[k] = v;
                }

                var host = await RunBashAsync("set -euo pipefail\n" + line[2..], env, lab, TimeSpan.FromMinutes(2));
                Assert.True(host.ExitCode == 0, $"{where}\nexited {host.ExitCode}\n{host.Stdout}\n{host.Stderr}\n--- so far\n{transcript}");
                continue;
            }

            var step = McpStep.Parse(line, vars);
            using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(10));
            var result = await mcp.CallToolAsync(step.Tool, step.Arguments, cancellationToken: deadline.Token);
            var said = string.Concat(result.Content.OfType<TextContentBlock>().Select(t => t.Text));
            Assert.True(result.IsError != true, $"{where}\nfailed: {said}\n--- so far\n{transcript}");
            Assert.True(result.StructuredContent is not null, $"{where}\nno structured result: {said}");
            step.Check(result.StructuredContent!.Value, vars, where);
        }
    }

    /// <summary>Cleanup, not a check: whatever a failed recipe left in its scratch is deleted (from inside its lab, where its supervisors live).</summary>
    private static async Task DeleteEverythingAsync(LaneScratch scratch, NetLab? lab)
    {
        var script = $"'{Repo.Cli}' workspace list --json 2>/dev/null || true";
        var listed = await RunBashAsync(script, scratch.Env, lab, TimeSpan.FromMinutes(2));
        var ids = new List<string>();
        try
        {
            CollectIds(JsonDocument.Parse(listed.Stdout).RootElement, ids);
        }
        catch (JsonException)
        {
        }

        foreach (var id in ids.Distinct())
        {
            await RunBashAsync($"'{Repo.Cli}' workspace delete '{id}' || true", scratch.Env, lab, TimeSpan.FromMinutes(3));
        }
    }

    private static void CollectIds(JsonElement e, List<string> ids)
    {
        if (e.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in e.EnumerateArray())
            {
                CollectIds(item, ids);
            }
        }
        else if (e.ValueKind == JsonValueKind.Object)
        {
            foreach (var p in e.EnumerateObject())
            {
                if (p.Name == "workspace_id" && p.Value.ValueKind == JsonValueKind.String)
                {
                    ids.Add(p.Value.GetString()!);
                }
                else
                {
                    CollectIds(p.Value, ids);
                }
            }
        }
    }

    private static readonly Lock Gate = new();

    /// <summary>Appends one line to artifacts/use-case-smoke.txt (printed by test.sh and scripts/smoke-use-cases.sh) and to stderr.</summary>
    private static void Record(string line)
    {
        lock (Gate)
        {
            var file = Environment.GetEnvironmentVariable("PYRO_USE_CASE_SMOKE") is { Length: > 0 } path ? path : Path.Combine(Repo.Root, "artifacts", "use-case-smoke.txt");
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            File.AppendAllText(file, line + "\n");
        }

        Console.Error.WriteLine(line);
    }

    [GeneratedRegex("```bash\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex BashBlock();

    [GeneratedRegex("```mcp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex McpFence();

    [GeneratedRegex("^```([a-z]+)", RegexOptions.Multiline)]
    private static partial Regex Fence();
}

/// <summary>One line of an ```mcp block: <c>TOOL {JSON} [=> CHECK, CHECK...]</c> (docs/use-cases/README.md).</summary>
internal sealed partial class McpStep
{
    private readonly List<(string? Capture, string Path, string Op, string? Value)> _checks = [];

    private McpStep(string tool, Dictionary<string, object?> arguments)
    {
        Tool = tool;
        Arguments = arguments;
    }

    internal string Tool { get; }

    internal Dictionary<string, object?> Arguments { get; }

    internal static McpStep Parse(string line, IReadOnlyDictionary<string, string> vars)
    {
        var arrow = line.IndexOf(" => ", StringComparison.Ordinal);
        var call = arrow < 0 ? line : line[..arrow];
        var space = call.IndexOf(' ', StringComparison.Ordinal);
        var tool = space < 0 ? call : call[..space];
        var json = space < 0 ? "{}" : call[(space + 1)..];
        json = FileArgument().Replace(json, m => m.Groups[1].Value + JsonSerializer.Serialize(File.ReadAllText(Path.Combine(Repo.Root, m.Groups[2].Value))));
        foreach (var (name, value) in vars.OrderByDescending(v => v.Key.Length))
        {
            json = json.Replace("$" + name, JsonEncodedText.Encode(value).ToString(), StringComparison.Ordinal);
        }

        var args = JsonDocument.Parse(json).RootElement.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone());
        var step = new McpStep(tool, args);
        if (arrow >= 0)
        {
            var rest = line[(arrow + 4)..];
            var at = 0;
            while (at < rest.Length)
            {
                var m = Clause().Match(rest, at);
                Assert.True(m.Success && m.Index == at, $"cannot read the check at '{rest[at..]}' in: {line}");
                step._checks.Add(m.Groups["cap"].Success
                    ? (m.Groups["cap"].Value, m.Groups["cpath"].Value, "=", null)
                    : (null, m.Groups["path"].Value, m.Groups["op"].Value, m.Groups["val"].Value));
                at = m.Index + m.Length;
            }
        }

        return step;
    }

    internal void Check(JsonElement result, Dictionary<string, string> vars, string where)
    {
        foreach (var (capture, path, op, value) in _checks)
        {
            var found = Resolve(result, path);
            Assert.True(found is not null, $"{where}\nthe result has no '{path}': {result}");
            var e = found!.Value;
            var text = e.ValueKind == JsonValueKind.String ? e.GetString()! : e.GetRawText();
            if (capture is not null)
            {
                vars[capture] = text;
            }
            else if (op == "==")
            {
                var expected = value!.StartsWith('"') ? JsonSerializer.Deserialize<string>(value)! : value;
                Assert.True(text == expected, $"{where}\n'{path}' is {text}, not {expected}\n{result}");
            }
            else
            {
                var expected = JsonSerializer.Deserialize<string>(value!)!;
                var haystack = e.ValueKind == JsonValueKind.String ? text : string.Join("\n", Leaves(e));
                Assert.True(haystack.Contains(expected, StringComparison.Ordinal), $"{where}\n'{(path.Length == 0 ? "the result" : path)}' does not contain {expected}\n{result}");
            }
        }
    }

    /// <summary>Every string and number in <paramref name="e"/>, strings as their text.</summary>
    private static IEnumerable<string> Leaves(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => e.EnumerateObject().SelectMany(p => Leaves(p.Value)),
        JsonValueKind.Array => e.EnumerateArray().SelectMany(Leaves),
        JsonValueKind.String => [e.GetString()!],
        _ => [e.GetRawText()],
    };

    private static JsonElement? Resolve(JsonElement root, string path)
    {
        var e = root;
        foreach (Match part in PathPart().Matches(path))
        {
            if (part.Groups["name"].Success)
            {
                if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(part.Groups["name"].Value, out e))
                {
                    return null;
                }
            }
            else
            {
                var i = int.Parse(part.Groups["index"].Value, CultureInfo.InvariantCulture);
                if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() <= i)
                {
                    return null;
                }

                e = e[i];
            }
        }

        return e;
    }

    [GeneratedRegex(@"(:\s*)@([A-Za-z0-9_./-]+)")]
    private static partial Regex FileArgument();

    [GeneratedRegex(@"\G\s*(?:(?<cap>[A-Z][A-Z0-9_]*) = (?<cpath>[a-z0-9_.\[\]]+)|(?<path>[a-z0-9_.\[\]]*?) ?(?<op>==|contains) (?<val>""(?:[^""\\]|\\.)*""|[^,\s]+))\s*(?:,|$)")]
    private static partial Regex Clause();

    [GeneratedRegex(@"(?<name>[a-z0-9_]+)|\[(?<index>\d+)\]")]
    private static partial Regex PathPart();
}

/// <summary>What a recipe with a network fetches from, served in its lab: a DNS server for *.pyro.test and a web server.</summary>
internal sealed class RecipeServers : IAsyncDisposable
{
    private readonly DnsServer _dns;
    private readonly HttpServer _http;
    private readonly string[] _mustFetch;
    private readonly TempDir _files;

    private RecipeServers(DnsServer dns, HttpServer http, string[] mustFetch, TempDir files)
    {
        _dns = dns;
        _http = http;
        _mustFetch = mustFetch;
        _files = files;
    }

    internal static async Task<RecipeServers> StartAsync(string recipe, NetLab lab)
    {
        var dns = lab.StartDnsServer("pyro.test");
        var http = lab.StartHttpServer();
        lab.UseResolver([lab.HostAddress]);
        var files = new TempDir("pyro-use-case-serve-");
        string[] mustFetch = [];
        if (recipe == "cold-start-validation")
        {
            // The project as a bare repository served over plain ("dumb") HTTP, and its dependency as a tarball.
            var fixture = Path.Combine(Repo.Root, "examples/use-cases/cold-start-validation");
            var work = Path.Combine(files.Path, "banner");
            CopyTree(Path.Combine(fixture, "project"), work);
            var git = new Dictionary<string, string>
            {
                ["GIT_AUTHOR_NAME"] = "pyro", ["GIT_AUTHOR_EMAIL"] = "pyro@pyro.test", ["GIT_COMMITTER_NAME"] = "pyro", ["GIT_COMMITTER_EMAIL"] = "pyro@pyro.test",
                ["GIT_CONFIG_GLOBAL"] = "/dev/null", ["GIT_CONFIG_NOSYSTEM"] = "1",
            };
            foreach (var args in new[] { new[] { "init", "-q", "-b", "main", work }, ["-C", work, "add", "-A"], ["-C", work, "commit", "-q", "-m", "banner 1.0"],
                ["clone", "-q", "--bare", work, Path.Combine(files.Path, "banner.git")], ["-C", Path.Combine(files.Path, "banner.git"), "update-server-info"] })
            {
                var r = await Processes.RunAsync("git", args, files.Path, git);
                Assert.True(r.ExitCode == 0, $"git {string.Join(' ', args)}: {r}");
            }

            var tarball = Path.Combine(files.Path, "strutil-1.0.tar.gz");
            var tar = await Processes.RunAsync("tar", ["-czf", tarball, "-C", fixture, "strutil-1.0"], files.Path);
            Assert.True(tar.ExitCode == 0, tar.ToString());
            http.ServeDirectory("/banner.git", Path.Combine(files.Path, "banner.git"));
            http.Serve("/strutil-1.0.tar.gz", File.ReadAllBytes(tarball));
            mustFetch = ["/banner.git/info/refs", "/strutil-1.0.tar.gz"];
        }

        return new RecipeServers(dns, http, mustFetch, files);
    }

    /// <summary>The recipe really fetched from the lab's servers (by name, through its DNS server).</summary>
    internal void AssertUsed()
    {
        foreach (var path in _mustFetch)
        {
            Assert.True(_http.Requests(path) >= 1, $"the lab's web server saw no request for {path}");
        }

        if (_mustFetch.Length > 0)
        {
            Assert.True(_dns.QueriesFor("git.pyro.test") >= 1 && _dns.QueriesFor("packages.pyro.test") >= 1, "the lab's DNS server was not asked: " + string.Join(", ", _dns.Queries));
        }
    }

    private static void CopyTree(string from, string to)
    {
        foreach (var dir in Directory.EnumerateDirectories(from, "*", SearchOption.AllDirectories).Prepend(from))
        {
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, dir)));
        }

        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            File.Copy(file, Path.Combine(to, Path.GetRelativePath(from, file)));
        }
    }

    /// <summary>The servers go with their lab; the served files go here.</summary>
    public ValueTask DisposeAsync()
    {
        _files.Dispose();
        return ValueTask.CompletedTask;
    }
}
