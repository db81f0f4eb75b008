namespace PyroMcp.Tests;

/// <summary>The CLI's own surface: help, version, doctor, and refusals of bad input before anything boots.</summary>
public sealed class CliTests : NoGuestTest
{
    [Fact]
    public async Task HelpEndsWithTheProductPathAndTheChatHostLines()
    {
        var result = await PyroCli.RunAsync("--help");

        Assert.Equal(0, result.ExitCode);
        foreach (var command in new[] { "run", "env", "workspace", "mcp", "doctor", "demo" })
        {
            Assert.Matches($@"\n\s+{command}\s", result.Stdout);
        }

        // The path comes after the command list, in order, and the chat-host lines after it.
        var steps = new[]
        {
            "Commands:", "pyro doctor", "pyro env list", "pyro env pull debian:12", "pyro run debian:12 -- git --version", "pyro mcp serve",
            "Connect a chat host:", "claude mcp add pyro -- pyro mcp serve", "codex mcp add pyro -- pyro mcp serve",
            "pyro workspace create debian:12 --seed-path ./repo --id-only",
        };
        var at = 0;
        foreach (var step in steps)
        {
            var found = result.Stdout.IndexOf(step, at, StringComparison.Ordinal);
            Assert.True(found >= 0, $"'{step}' is not after position {at} in:\n{result.Stdout}");
            at = found + step.Length;
        }

        // Subcommands do not repeat the epilog.
        Assert.DoesNotContain("Connect a chat host:", (await PyroCli.RunAsync("workspace", "--help")).Stdout);
    }

    [Fact]
    public async Task McpServeHelpExplainsTheThreeProfiles()
    {
        var result = await PyroCli.RunAsync("mcp", "serve", "--help");

        Assert.Equal(0, result.ExitCode);
        foreach (var profile in new[] { "workspace-core", "vm-run", "workspace-full" })
        {
            Assert.Matches($@"(?m)^\s+{profile}\s+\S", result.Stdout);
        }

        Assert.Matches(@"workspace-core\s+the default", result.Stdout);
    }

    [Fact]
    public async Task VersionIsTheAssemblyVersion()
    {
        var result = await PyroCli.RunAsync("--version");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(typeof(Pyro).Assembly.GetName().Version!.ToString(3), result.Stdout.Trim());
    }

    [Theory]
    [InlineData("invalid_vcpu_count", "run", "debian:12", "--vcpu-count", "0", "--", "true")]
    [InlineData("invalid_vcpu_count", "run", "debian:12", "--vcpu-count", "99", "--", "true")]
    [InlineData("invalid_mem_mib", "run", "debian:12", "--mem-mib", "64", "--", "true")]
    [InlineData("invalid_timeout", "run", "debian:12", "--timeout-seconds", "0", "--", "true")]
    [InlineData("missing_command", "run", "debian:12", "--")]
    [InlineData("missing_command", "run", "debian:12")]
    [InlineData("unknown_environment", "run", "debian:13", "--", "true")]
    [InlineData("invalid_accelerator", "run", "debian:12", "--accel", "hvf", "--", "true")]
    [InlineData("invalid_argument", "run", "debian:12", "--env", "NOEQUALS", "--", "true")]
    public async Task BadInputIsRefusedWithExit2AndNothingBoots(string code, params string[] args)
    {
        var result = await PyroCli.RunAsync(args);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains($"pyro: error code: {code}", result.Stderr);
        Assert.DoesNotContain("phase=start", result.Stderr);
        if (code is not ("invalid_argument" or "invalid_accelerator"))
        {
            // The SDK's message is in its terms; the CLI adds the flag or command to use.
            Assert.Contains("pyro: hint: ", result.Stderr);
        }
    }

    [Fact]
    public async Task ErrorsNameTheFlagInAHintAlsoInJson()
    {
        var result = await PyroCli.RunAsync("run", "debian:12", "--vcpu-count", "99", "--json", "--", "true");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("pyro: error: the vCPU count must be between 1 and 32 (got 99)\npyro: hint: --vcpu-count takes 1 to 32\n", result.Stderr.ReplaceLineEndings("\n"));
        var error = result.Json.GetProperty("error");
        Assert.Equal("invalid_vcpu_count", error.GetProperty("code").GetString());
        Assert.Equal("the vCPU count must be between 1 and 32 (got 99)", error.GetProperty("message").GetString());
        Assert.Equal("--vcpu-count takes 1 to 32", error.GetProperty("hint").GetString());
    }

    [Fact]
    public async Task AnUnknownOptionIsAParseErrorWithExit2()
    {
        var result = await PyroCli.RunAsync("run", "debian:12", "--vcpus", "2", "--", "true");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("unknown option '--vcpus'", result.Stderr);
        Assert.DoesNotContain("phase=start", result.Stderr);
    }

    [Fact]
    public async Task DoctorExplainsTheAcceleratorItChose()
    {
        var result = await PyroCli.RunAsync("doctor", "--json");

        Assert.True(result.ExitCode == 0, result.ToString());
        var json = result.Json;
        Assert.Equal("PASS", json.GetProperty("runtime").GetString());
        Assert.Equal("linux-x86_64", json.GetProperty("platform").GetString());
        var kvm = json.GetProperty("kvm");
        var chosen = json.GetProperty("accelerator").GetProperty("chosen").GetString();
        // What the host really is decides the expectation: nested PVM or no vmx/svm means TCG.
        var pvm = Directory.Exists("/sys/module/kvm_pvm");
        var cpuHasVirt = File.ReadAllText("/proc/cpuinfo").Split('\n').First(l => l.StartsWith("flags")).Split(' ').Any(f => f is "vmx" or "svm");
        var kvmWorks = File.Exists("/dev/kvm") && !pvm && cpuHasVirt;
        Assert.Equal(kvmWorks, kvm.GetProperty("usable").GetBoolean());
        Assert.Equal(kvmWorks ? "kvm" : "tcg", chosen);
        Assert.Equal(File.Exists("/dev/kvm"), kvm.GetProperty("exists").GetBoolean());
        var caps = json.GetProperty("capabilities");
        Assert.True(caps.GetProperty("vm_boot").GetBoolean());
        Assert.True(caps.GetProperty("guest_exec").GetBoolean());
        Assert.True(caps.GetProperty("guest_network").GetBoolean(), "passt must start here: " + json.GetProperty("networking"));
        Assert.True(json.GetProperty("networking").GetProperty("passt_starts").GetBoolean());
        Assert.StartsWith("QEMU emulator version", json.GetProperty("qemu").GetProperty("version").GetString());
        Assert.Empty(json.GetProperty("missing_packages").EnumerateArray());
        if (!kvmWorks)
        {
            Assert.Contains(json.GetProperty("warnings").EnumerateArray(), w => w.GetString()!.Contains("not treat TCG as a security boundary"));
        }

        var text = await PyroCli.RunAsync("doctor");
        Assert.Contains("Runtime: PASS", text.Stdout);
        Assert.Matches(@"KVM: exists=(yes|no) readable=(yes|no) writable=(yes|no) usable=(yes|no)", text.Stdout);
        Assert.Contains("Capabilities: vm_boot=yes guest_exec=yes guest_network=yes", text.Stdout);
        Assert.Matches(@"Networking: passt=yes version=\S+ starts=yes", text.Stdout);
    }

    [Fact]
    public async Task TheAcceleratorCanBeOverriddenByFlagAndEnvironment()
    {
        var byEnv = (await PyroCli.RunAsync(["doctor", "--json"], new Dictionary<string, string> { ["PYRO_ACCEL"] = "tcg" })).Json;
        Assert.Equal("tcg", byEnv.GetProperty("accelerator").GetProperty("requested").GetString());
        Assert.Equal("tcg", byEnv.GetProperty("accelerator").GetProperty("chosen").GetString());

        var byFlag = (await PyroCli.RunAsync("doctor", "--json", "--accel", "kvm")).Json;
        Assert.Equal("kvm", byFlag.GetProperty("accelerator").GetProperty("requested").GetString());
        if (!byFlag.GetProperty("kvm").GetProperty("usable").GetBoolean())
        {
            // Asking for KVM where it cannot work is an error that says what to do, not a hang.
            Assert.Equal(JsonValueKindNull, byFlag.GetProperty("accelerator").GetProperty("chosen").ValueKind);
            var run = await PyroCli.RunAsync("run", "debian:12", "--accel", "kvm", "--", "true");
            Assert.Equal(1, run.ExitCode);
            Assert.Contains("error code: kvm_unavailable", run.Stderr);
            Assert.Contains("pyro: hint: --accel tcg", run.Stderr);
        }
    }

    private const System.Text.Json.JsonValueKind JsonValueKindNull = System.Text.Json.JsonValueKind.Null;
}
