using System.Text.Json;
using System.Text.RegularExpressions;

namespace PyroMcp.GuestTests;

/// <summary>
/// Every command shown in a bash block of the docs is run here, or names the test that runs it.
/// The bench (the longest by far) runs in a lane of its own beside the other commands.
/// </summary>
[TestCaseOrderer(LaneOrderer.Name, LaneOrderer.Assembly)]
public sealed partial class DocsTests(Lanes lanes) : GuestTest, IClassFixture<Lanes>
{
    private const string Bench = "bench/PyroMcp.Bench";

    /// <summary>Commands run elsewhere, and where.</summary>
    private static readonly Dictionary<string, string> RunElsewhere = new()
    {
        ["./test.sh"] = "the command that runs this very test (CI runs it as .ci/run)",
        ["dotnet pack src/PyroMcp.Cli -c Release -o artifacts/package"] = nameof(PackagingTests.TheToolPackageInstallsAndRuns),
        ["dotnet tool install --global pyro-mcp --add-source artifacts/package"] = nameof(PackagingTests.TheToolPackageInstallsAndRuns) + " (into a tool path, not the machine)",
        // The recipes' own blocks are run by UseCaseTests (this list of docs leaves them out); make's targets are checked by MakefileTests.
        ["make smoke-use-cases"] = nameof(UseCaseTests) + " (the tests the target runs)",
    };

    public static TheoryData<string, string> Commands()
    {
        var data = new TheoryData<string, string>();
        // docs/first-run.md keeps its transcript in a console block: FirstRunTests runs those commands
        // and compares their output; a bash block there would be run here like any other.
        foreach (var doc in new[] { "README.md", "docs/install.md", "docs/host-requirements.md", "docs/first-run.md", "docs/architecture.md", "docs/workspaces.md", "docs/environments.md", "bench/README.md", "CHANGELOG.md", "examples/README.md", "docs/use-cases/README.md" })
        {
            var text = File.ReadAllText(Path.Combine(Repo.Root, doc));
            foreach (Match block in BashBlock().Matches(text))
            {
                // A block that starts with '# script' is one walkthrough: its lines run together, in order.
                if (block.Groups[1].Value.StartsWith("# script\n", StringComparison.Ordinal) || block.Groups[1].Value.StartsWith(NetworkLab, StringComparison.Ordinal)
                    || block.Groups[1].Value.StartsWith(RegistryLabBlock, StringComparison.Ordinal))
                {
                    data.Add(doc, block.Groups[1].Value);
                    continue;
                }

                foreach (var line in block.Groups[1].Value.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')))
                {
                    data.Add(doc, line);
                }
            }
        }

        return data;
    }

    public override Task InitializeAsync()
    {
        lanes.Begin(GetType(), BenchLane);
        return base.InitializeAsync();
    }

    [Theory]
    [MemberData(nameof(Commands))]
    [Lane(1, When = Bench)]
    public async Task EveryDocumentedCommandWorks(string doc, string command)
    {
        if (RunElsewhere.ContainsKey(command))
        {
            return;
        }

        if (command.StartsWith(NetworkLab, StringComparison.Ordinal))
        {
            await RunInNetworkLabAsync(doc, command);
            return;
        }

        if (command.StartsWith(RegistryLabBlock, StringComparison.Ordinal))
        {
            await RunInRegistryLabAsync(doc, command);
            return;
        }

        var isScript = command.StartsWith("# script\n", StringComparison.Ordinal);
        Assert.True(isScript || command.StartsWith("./pyro ") || command.StartsWith("pyro ") || command.StartsWith("dotnet run -c Release --project " + Bench),
            $"{doc}: '{command}' is neither a pyro command nor listed with the test that runs it");

        if (command.Contains(Bench, StringComparison.Ordinal))
        {
            await lanes.RunAsync(LaneOrderer.Key(nameof(EveryDocumentedCommandWorks), doc, command), () => RunBenchAsync(doc, command));
            return;
        }

        // `pyro` is the installed tool; the built CLI is the same program.
        await RunAsync(doc, command, Repo.ScratchEnvironment);
    }

    /// <summary>
    /// A block that starts with '# network lab' runs as one script with pyro inside a network
    /// namespace of the test's own (DESIGN.md section 5): its only way out leads to a second
    /// namespace where a DNS server answers for debian.org and a web server answers every path,
    /// standing in for the internet. No traffic leaves the lab.
    /// </summary>
    private const string NetworkLab = "# network lab\n";

    private static async Task RunInNetworkLabAsync(string doc, string command)
    {
        await using var lab = await NetLab.StartAsync();
        var dns = lab.StartDnsServer("debian.org");
        var http = lab.StartHttpServer();
        http.Serve("/debian/", System.Text.Encoding.UTF8.GetBytes("<html><title>Index of /debian</title>a stand-in for the Debian mirror</html>\n"));
        lab.UseResolver([lab.HostAddress]);
        var script = $"set -euo pipefail\npyro() {{ '{Repo.Cli}' \"$@\"; }}\n{command}";
        var result = await Processes.RunAsync("ip", lab.InClient("bash", ["-c", script]), Repo.Root, Repo.ScratchEnvironment, TimeSpan.FromMinutes(15));
        Assert.True(result.ExitCode == 0, $"{doc}: network lab block exited {result.ExitCode}\n{result.Stdout}\n{result.Stderr}");
        // A block that fetches from the stand-in mirror really went out: the lab's servers saw
        // its lookups and downloads (each `pyro demo --network` or `wget` of it is one request).
        var fetches = System.Text.RegularExpressions.Regex.Count(command, @"http://deb\.debian\.org/|pyro demo --network");
        if (fetches > 0)
        {
            Assert.True(http.Requests("/debian/") >= fetches, $"the lab web server saw {http.Requests("/debian/")} requests for /debian/, not {fetches}\n{result.Stdout}");
            Assert.True(dns.QueriesFor("deb.debian.org") >= 1, "the lab DNS server saw no lookup of deb.debian.org");
        }
    }

    /// <summary>
    /// A block that starts with '# registry lab' runs as one script beside Debian's docker-registry
    /// on 127.0.0.1 with htpasswd auth (<see cref="RegistryLab"/>): <c>$REGISTRY</c> is its address,
    /// <c>OCI_REGISTRY_USERNAME</c> and <c>OCI_REGISTRY_PASSWORD</c> its credentials, and
    /// <c>mktemp</c> makes directories in a scratch directory removed afterwards. No traffic leaves
    /// loopback, and the credentials must appear in nothing the script printed.
    /// </summary>
    private const string RegistryLabBlock = "# registry lab\n";

    private static async Task RunInRegistryLabAsync(string doc, string command)
    {
        await using var lab = await RegistryLab.StartAsync();
        using var scratch = new TempDir("pyro-docs-registry-");
        var env = new Dictionary<string, string>(RegistryLab.Credentials) { ["REGISTRY"] = lab.Host, ["TMPDIR"] = scratch.Path };
        foreach (var (key, value) in Repo.ScratchEnvironment)
        {
            env[key] = value;
        }

        var result = await RunAsync(doc, command, env, TimeSpan.FromMinutes(15));
        Assert.DoesNotContain(RegistryLab.Password, result.Stdout + result.Stderr);
        // Each `pyro env publish` and `pyro env import REF` spoke to the lab's registry: its storage holds what they wrote or read.
        Assert.True(Directory.Exists(Path.Combine(lab.StorageDir, "docker", "registry", "v2", "repositories")), $"{doc}: the lab registry stored nothing\n{result.Stdout}\n{result.Stderr}");
    }

    private static Func<Task> BenchLane(string key)
    {
        var parts = key.Split('\u001f');
        return () => RunBenchAsync(parts[1], parts[2]);
    }

    /// <summary>The bench, with run and state directories of its own: the other commands' leftover checks never see its VMs.</summary>
    private static async Task RunBenchAsync(string doc, string command)
    {
        await using var scratch = new LaneScratch("bench");
        // A deadline against a hang, not a timed check: beside the other commands on a busy
        // two-core machine the bench (three cold runs, three bare boots, two 100 MiB trees) is slow.
        var result = await RunAsync(doc, command, scratch.Env, TimeSpan.FromMinutes(25));
        if (!command.Contains("--json", StringComparison.Ordinal))
        {
            Assert.Matches(@"ratio cold_run / bare_boot = \d+\.\d\d", result.Stdout);
        }
        else
        {
            // The readable lines on stderr, one object of figures on stdout, each a measured number.
            Assert.Matches(@"ratio cold_run / bare_boot = \d+\.\d\d", result.Stderr);
            var figures = JsonDocument.Parse(result.Stdout).RootElement;
            Assert.False(figures.GetProperty("bench_failed").GetBoolean(), result.Stderr);
            foreach (var name in new[] { "cold_run_over_bare_boot", "agent_start_ms", "supervisor_rss_mib", "supervisor_rss_mib_managed", "idle_rss_mib_per_workspace", "mcp_ready_ms",
                "qemu_ga_exec_rtt_ms", "exec_rtt_over_qemu_ga", "bare_qemu_idle_rss_mib", "idle_rss_over_bare_qemu", "idle_workspaces_per_8gib",
                "sync_over_channel", "export_over_channel", "warm_run_over_bare_boot", "warm_create_over_cold_create", "fork_per_copy_over_cold_create", "exec_rtt_ms",
                "oci_publish_ms", "oci_pull_ms", "skopeo_copy_ms", "oci_pull_over_skopeo_copy", "oci_download_over_skopeo_copy", "first_run_oci_ms" })
            {
                Assert.True(figures.GetProperty(name).GetDouble() > 0, $"bench figure {name} is not a positive number: {result.Stdout}");
            }

            // Differences of two medians: near zero for the native CLI, so noise may make them negative.
            foreach (var name in new[] { "cli_overhead_ms", "cli_overhead_ms_managed" })
            {
                Assert.Equal(JsonValueKind.Number, figures.GetProperty(name).ValueKind);
            }

            // A cache whose debian:12 recorded its build time gets the first-run comparison too.
            var built = Path.Combine(new PyroOptions().EnvironmentCacheDir, "linux-x86_64", "debian_12-1.0.0", "environment.json");
            if (JsonDocument.Parse(File.ReadAllText(built)).RootElement.TryGetProperty("build_ms", out _))
            {
                Assert.True(figures.GetProperty("first_run_oci_over_local_build").GetDouble() > 0, result.Stdout);
            }

            var phases = figures.GetProperty("boot_phases_ms");
            Assert.Equal(["agent", "first_exec", "init", "kernel", "qemu_start"], phases.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        }
        await scratch.AssertCleanAsync();
    }

    private static async Task<ProcessResult> RunAsync(string doc, string command, Dictionary<string, string> env, TimeSpan? timeout = null)
    {
        var script = $"set -euo pipefail\npyro() {{ '{Repo.Cli}' \"$@\"; }}\n{command}";
        var result = await Processes.RunAsync("bash", ["-c", script], Repo.Root, env, timeout ?? TimeSpan.FromMinutes(10));
        Assert.True(result.ExitCode == 0, $"{doc}: '{command}' exited {result.ExitCode}\n{result.Stdout}\n{result.Stderr}");
        return result;
    }

    [GeneratedRegex("```bash\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex BashBlock();
}
