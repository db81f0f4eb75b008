using System.Text.Json;
using System.Text.RegularExpressions;

namespace PyroMcp.Tests;

/// <summary>
/// docs/integrations.md, checked against the chat hosts' own CLIs (pinned in tests/chat-hosts,
/// installed once with <c>npm ci</c>): every <c>claude mcp add</c> and <c>codex mcp add</c> line of
/// the doc runs as written, and the host then reports pyro connected or lists its tools. The hosts
/// run in a network namespace with no way out (only the loopback device, and that down), with
/// their update and telemetry switches off, each with a home directory of its own, and with
/// <c>pyro</c> on PATH as the built CLI. No guest boots: the hosts start <c>pyro mcp serve</c>,
/// shake hands and list tools.
/// </summary>
public sealed partial class ChatHostTests : NoGuestTest, IClassFixture<ChatHostTests.Clis>
{
    private const int WorkspaceCoreTools = 15;

    /// <summary>The hosts' CLIs, installed once for the class.</summary>
    public sealed class Clis : IAsyncLifetime
    {
        internal static string Dir => Path.Combine(Repo.Root, "tests", "chat-hosts");

        internal static string Bin => Path.Combine(Dir, "node_modules", ".bin");

        internal static string OpenCode => Path.Combine(Dir, "node_modules", "opencode-linux-x64", "bin", "opencode");

        public async Task InitializeAsync()
        {
            Assert.True(File.Exists(Repo.Cli), $"the native CLI is not published at {Repo.Cli}: run ./test.sh");
            // About half a minute with a warm npm cache, a minute without (three native binaries, ~1 GB).
            var install = await Processes.RunAsync("npm", ["ci", "--no-audit", "--no-fund"], Dir, timeout: TimeSpan.FromMinutes(10));
            Assert.True(install.ExitCode == 0, "npm ci in tests/chat-hosts failed:\n" + install);
            foreach (var cli in new[] { Path.Combine(Bin, "claude"), Path.Combine(Bin, "codex"), OpenCode })
            {
                Assert.True(File.Exists(cli), $"npm ci did not install {cli}");
            }
        }

        public Task DisposeAsync() => Task.CompletedTask;
    }

    [Fact]
    public async Task EveryClaudeCodeAddLineConnects()
    {
        var lines = HostLines("claude mcp add ");
        Assert.True(lines.Count >= 3, "docs/integrations.md shows fewer claude mcp add lines than expected:\n" + string.Join('\n', lines));
        foreach (var line in lines)
        {
            using var host = new Host();
            await host.OkAsync(line);
            var name = line.Split(' ')[3];
            var list = await host.OkAsync("claude mcp list");
            Assert.Matches(new Regex($"^{Regex.Escape(name)}: pyro mcp serve.* - ✔ Connected$", RegexOptions.Multiline), list.Stdout);
        }
    }

    [Fact]
    public async Task TheMcpServersBlockAsAProjectMcpJsonConnectsInClaudeCode()
    {
        using var host = new Host();
        File.WriteAllText(Path.Combine(host.Project, ".mcp.json"), JsonBlock("\"mcpServers\""));
        Assert.Equal(Normalized(File.ReadAllText(Path.Combine(Repo.Root, "examples", "mcp-config.json"))), Normalized(JsonBlock("\"mcpServers\"")));

        // Unapproved, Claude Code does not start it; the approval the doc shows lets it.
        Assert.Contains("pyro: pyro mcp serve --profile workspace-core - ⏸ Pending approval", (await host.OkAsync("claude mcp list")).Stdout);
        Directory.CreateDirectory(Path.Combine(host.Home, ".claude"));
        File.WriteAllText(Path.Combine(host.Home, ".claude", "settings.json"), JsonBlock("enabledMcpjsonServers"));
        Assert.Contains("pyro: pyro mcp serve --profile workspace-core - ✔ Connected", (await host.OkAsync("claude mcp list")).Stdout);
    }

    [Fact]
    public async Task EveryCodexAddLineIsKeptAndCodexListsPyrosTools()
    {
        var lines = HostLines("codex mcp add ");
        Assert.NotEmpty(lines);
        foreach (var line in lines)
        {
            using var host = new Host();
            await host.OkAsync(line);
            var listed = JsonDocument.Parse((await host.OkAsync("codex mcp list --json")).Stdout).RootElement;
            var pyro = Assert.Single(listed.EnumerateArray(), s => s.GetProperty("name").GetString() == "pyro");
            Assert.Equal("pyro", pyro.GetProperty("transport").GetProperty("command").GetString());
            Assert.Equal(["mcp", "serve"], pyro.GetProperty("transport").GetProperty("args").EnumerateArray().Select(a => a.GetString()));
            Assert.Contains("enabled: true", (await host.OkAsync("codex mcp get pyro")).Stdout);
            Assert.Equal(WorkspaceCoreTools, await host.CodexToolCountAsync("pyro"));
        }
    }

    [Fact]
    public async Task TheCodexExampleConfigKeepsItsTimeoutsAndListsPyrosTools()
    {
        using var host = new Host();
        File.AppendAllText(host.CodexConfig, File.ReadAllText(Path.Combine(Repo.Root, "examples", "codex-config.toml")));
        var pyro = JsonDocument.Parse((await host.OkAsync("codex mcp get pyro --json")).Stdout).RootElement;
        Assert.Equal(["mcp", "serve", "--profile", "workspace-core"], pyro.GetProperty("transport").GetProperty("args").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal(30, pyro.GetProperty("startup_timeout_sec").GetDouble());
        Assert.Equal(600, pyro.GetProperty("tool_timeout_sec").GetDouble());
        Assert.Equal(WorkspaceCoreTools, await host.CodexToolCountAsync("pyro"));
    }

    [Fact]
    public async Task TheOpenCodeBlockConnects()
    {
        using var host = new Host();
        var block = JsonBlock("opencode.ai/config.json");
        Assert.Equal(Normalized(File.ReadAllText(Path.Combine(Repo.Root, "examples", "opencode.json"))), Normalized(block));
        File.WriteAllText(Path.Combine(host.Project, "opencode.json"), block);
        var list = await host.OkAsync("opencode mcp list");
        Assert.Matches(@"✓ pyro\s+connected", Ansi().Replace(list.Stdout + list.Stderr, ""));
    }

    /// <summary>The lines of the doc's text blocks that start with <paramref name="prefix"/>, except the checkout form (it differs only in the path).</summary>
    private static List<string> HostLines(string prefix) =>
        [.. TextBlock().Matches(Doc).SelectMany(m => m.Groups[1].Value.Split('\n')).Select(l => l.Trim())
            .Where(l => l.StartsWith(prefix, StringComparison.Ordinal) && !l.Contains("/path/to/checkout", StringComparison.Ordinal))];

    /// <summary>The one json block of the doc that contains <paramref name="marker"/>.</summary>
    private static string JsonBlock(string marker) => Assert.Single(JsonBlockRegex().Matches(Doc).Select(m => m.Groups[1].Value), b => b.Contains(marker, StringComparison.Ordinal));

    private static string Doc => File.ReadAllText(Path.Combine(Repo.Root, "docs", "integrations.md"));

    private static string Normalized(string json) => JsonSerializer.Serialize(JsonDocument.Parse(json).RootElement);

    [GeneratedRegex("```text\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex TextBlock();

    [GeneratedRegex("```json\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex JsonBlockRegex();

    [GeneratedRegex(@"\x1b\[[0-9;]*m")]
    private static partial Regex Ansi();

    /// <summary>A user of the chat hosts: a home directory, a project directory, and <c>pyro</c> on PATH.</summary>
    private sealed class Host : IDisposable
    {
        private readonly TempDir _root = new("pyro-chat-host-");

        internal Host()
        {
            Directory.CreateDirectory(Home);
            Directory.CreateDirectory(Project);
            Directory.CreateDirectory(BinDir);
            File.CreateSymbolicLink(Path.Combine(BinDir, "pyro"), Repo.Cli);
            File.CreateSymbolicLink(Path.Combine(BinDir, "opencode"), Clis.OpenCode);
            // Codex has no environment switches for these: its config turns them off.
            Directory.CreateDirectory(Path.GetDirectoryName(CodexConfig)!);
            File.WriteAllText(CodexConfig, "check_for_update_on_startup = false\n\n[analytics]\nenabled = false\n\n");
        }

        internal string Home => Path.Combine(_root.Path, "home");

        internal string Project => Path.Combine(_root.Path, "project");

        internal string CodexConfig => Path.Combine(Home, ".codex", "config.toml");

        private string BinDir => Path.Combine(_root.Path, "bin");

        private Dictionary<string, string> Env
        {
            get
            {
                var env = Repo.ScratchEnvironment;
                env["PATH"] = $"{BinDir}:{Clis.Bin}:{Environment.GetEnvironmentVariable("PATH")}";
                env["HOME"] = Home;
                env["XDG_CONFIG_HOME"] = Path.Combine(Home, ".config");
                env["XDG_DATA_HOME"] = Path.Combine(Home, ".local", "share");
                env["XDG_CACHE_HOME"] = Path.Combine(Home, ".cache");
                env["XDG_STATE_HOME"] = Path.Combine(Home, ".local", "state");
                env["CODEX_HOME"] = Path.Combine(Home, ".codex");
                foreach (var off in new[] { "DISABLE_AUTOUPDATER", "DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
                    "OPENCODE_DISABLE_AUTOUPDATE", "OPENCODE_DISABLE_MODELS_FETCH", "OPENCODE_DISABLE_SHARE", "OPENCODE_DISABLE_LSP_DOWNLOAD", "OPENCODE_DISABLE_DEFAULT_PLUGINS" })
                {
                    env[off] = "1";
                }

                return env;
            }
        }

        /// <summary>A network namespace of its own with nothing in it: as root a plain one, otherwise inside a user namespace.</summary>
        private static string[] NoNetwork => Environment.IsPrivilegedProcess ? ["--net"] : ["--user", "--map-root-user", "--net"];

        /// <summary>Runs <paramref name="command"/> with bash in the project directory, with no network; it must exit 0.</summary>
        internal async Task<ProcessResult> OkAsync(string command)
        {
            var result = await Processes.RunAsync("unshare", [.. NoNetwork, "bash", "-c", command], Project, Env, TimeSpan.FromMinutes(3));
            Assert.True(result.ExitCode == 0, $"'{command}' failed:\n{result}");
            return result;
        }

        /// <summary>
        /// How many tools Codex's app server lists for server <paramref name="name"/>: it starts the
        /// server and lists its tools (JSON-RPC <c>mcpServerStatus/list</c>) with no model and no login.
        /// </summary>
        internal async Task<int> CodexToolCountAsync(string name)
        {
            using var server = Processes.Start("unshare", [.. NoNetwork, Path.Combine(Clis.Bin, "codex"), "app-server"], Project, Env);
            var stderr = server.StandardError.ReadToEndAsync();
            using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(3));
            try
            {
                foreach (var request in new[]
                {
                    """{"method":"initialize","id":0,"params":{"clientInfo":{"name":"pyro-tests","version":"0"}}}""",
                    """{"method":"initialized"}""",
                    """{"method":"mcpServerStatus/list","id":1,"params":{}}""",
                })
                {
                    await server.StandardInput.WriteLineAsync(request);
                }

                await server.StandardInput.FlushAsync(deadline.Token);
                while (await server.StandardOutput.ReadLineAsync(deadline.Token) is { } line)
                {
                    var message = JsonDocument.Parse(line).RootElement;
                    if (!message.TryGetProperty("id", out var id) || id.ValueKind != JsonValueKind.Number || id.GetInt32() != 1)
                    {
                        continue;
                    }

                    Assert.True(message.TryGetProperty("result", out var result), "codex app-server answered mcpServerStatus/list with " + line);
                    var entry = Assert.Single(result.GetProperty("data").EnumerateArray(), s => s.GetProperty("name").GetString() == name);
                    Assert.Equal("pyro", entry.GetProperty("serverInfo").GetProperty("name").GetString());
                    return entry.GetProperty("tools").EnumerateObject().Count();
                }

                server.Kill(entireProcessTree: true);
                Assert.Fail("codex app-server ended without answering mcpServerStatus/list:\n" + await stderr);
                return 0;
            }
            catch (OperationCanceledException)
            {
                server.Kill(entireProcessTree: true);
                throw new TimeoutException("codex app-server did not answer mcpServerStatus/list:\n" + await stderr);
            }
            finally
            {
                if (!server.HasExited)
                {
                    server.StandardInput.Close();
                    using var exit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                    try
                    {
                        await server.WaitForExitAsync(exit.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        server.Kill(entireProcessTree: true);
                    }
                }
            }
        }

        public void Dispose() => _root.Dispose();
    }
}
