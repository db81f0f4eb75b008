using System.Text;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent.Tests;

/// <summary>secrets.put and secret_env against the real agent: the files, one call's environment, and service logs redacted before they are written.</summary>
public sealed class SecretsTests : IAsyncLifetime
{
    private const string Busybox = "/bin/busybox";
    private const string Value = "s3cr3t-value-for-the-agent";
    private AgentHarness _agent = null!;

    public Task InitializeAsync()
    {
        Assert.True(File.Exists(Busybox), "these tests need busybox (apt-get install busybox)");
        _agent = new AgentHarness(Busybox);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _agent.DisposeAsync();

    private Task<Reply> PutAsync(Dictionary<string, string> secrets) => _agent.CallAsync(new AgentRequest { Op = AgentOps.SecretsPut, Secrets = secrets });

    [Fact]
    public async Task PutWritesOwnerReadOnlyFilesAndReplacesTheWholeSet()
    {
        _ = (await PutAsync(new() { ["TOKEN"] = Value, ["OLD"] = "old-value" })).Ok;
        Assert.Equal(Value, File.ReadAllText(Path.Combine(_agent.SecretsDir, "TOKEN")));
        Assert.Equal(UnixFileMode.UserRead, File.GetUnixFileMode(Path.Combine(_agent.SecretsDir, "TOKEN")));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_agent.SecretsDir));

        _ = (await PutAsync(new() { ["TOKEN"] = "second-value" })).Ok;
        Assert.Equal(["TOKEN"], Directory.GetFiles(_agent.SecretsDir).Select(Path.GetFileName));
        Assert.Equal("second-value", File.ReadAllText(Path.Combine(_agent.SecretsDir, "TOKEN")));
    }

    [Theory]
    [InlineData("../escape")]
    [InlineData("a/b")]
    [InlineData("1DIGIT")]
    [InlineData("")]
    [InlineData("DOT.NAME")]
    public async Task BadNamesAreRefusedAndNothingIsWrittenOutside(string name)
    {
        Assert.Equal("secret_invalid", (await PutAsync(new() { [name] = Value })).FailureCode);
        Assert.False(Directory.Exists(_agent.SecretsDir) && Directory.EnumerateFileSystemEntries(_agent.SecretsDir).Any());
        Assert.Empty(Directory.GetFiles(_agent.Base, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task ALinkLeftWhereTheDirectoryGoesIsReplacedNotFollowed()
    {
        Directory.CreateSymbolicLink(_agent.SecretsDir, _agent.Elsewhere);
        _ = (await PutAsync(new() { ["TOKEN"] = Value })).Ok;
        Assert.Null(new DirectoryInfo(_agent.SecretsDir).LinkTarget);
        Assert.Empty(Directory.GetFiles(_agent.Elsewhere));
    }

    [Fact]
    public async Task SecretEnvReachesOneCommandAndAnUnknownSecretIsRefused()
    {
        _ = (await PutAsync(new() { ["TOKEN"] = Value })).Ok;
        var mapped = await _agent.CallAsync(new AgentRequest
        {
            Op = AgentOps.Exec,
            Exec = new ExecRequest { Shell = "echo \"[$API_KEY] [${TOKEN:-unset}]\"", SecretEnv = new Dictionary<string, string> { ["API_KEY"] = "TOKEN" } },
        });
        Assert.Equal($"[{Value}] [unset]\n", Encoding.UTF8.GetString(mapped.Stdout));

        var unknown = await _agent.CallAsync(new AgentRequest
        {
            Op = AgentOps.Exec,
            Exec = new ExecRequest { Shell = "true", SecretEnv = new Dictionary<string, string> { ["X"] = "NOPE" } },
        });
        Assert.Equal("secret_not_found", unknown.FailureCode);
    }

    [Fact]
    public async Task AServiceLogNeverHoldsAValueOnDisk()
    {
        _ = (await PutAsync(new() { ["TOKEN"] = Value })).Ok;
        var started = await _agent.ServiceAsync(AgentOps.ServiceStart, new ServiceRequest
        {
            Name = "printer",
            Command = "printf 'svc %s\\n' \"$T\"; printf %s \"$T\" | base64; printf 'split %s' \"$(echo $T | cut -c1-8)\"; sleep 0.3; printf '%s end\\n' \"$(echo $T | cut -c9-)\"; exec sleep 60",
            SecretEnv = new Dictionary<string, string> { ["T"] = "TOKEN" },
        });
        Assert.Equal("running", started.Ok.Service!.State);
        var log = Path.Combine(_agent.StateDir, "printer", "stdout.log");
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!File.ReadAllText(log).Contains(" end", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, "the service never wrote its last line: " + File.ReadAllText(log));
            await Task.Delay(100);
        }

        var text = File.ReadAllText(log);
        Assert.DoesNotContain(Value, text);
        Assert.DoesNotContain(Convert.ToBase64String(Encoding.UTF8.GetBytes(Value)), text);
        Assert.Equal(3, text.Split("[REDACTED:TOKEN]").Length - 1);
        await _agent.ServiceAsync(AgentOps.ServiceStop, new ServiceRequest { Name = "printer", StopGraceMs = 500 });
    }
}
