using System.Text;
using PyroMcp.Environments;
using PyroMcp.Protocol;
using PyroMcp.Protocol.Secrets;
using PyroMcp.Secrets;
using PyroMcp.Server;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>Secrets on the host without a guest: what is refused (and never quoted), the one store file, and the redaction of what leaves.</summary>
public sealed class SecretHostTests : NoGuestTest, IDisposable
{
    private const string Value = "sk-live-0123456789abcdef";
    private readonly string _dir = Directory.CreateTempSubdirectory("pyro-secret-host-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, string> BadSecrets => new()
    {
        { "secret_name_invalid", "name:" + Value },
        { "secret_name_invalid", "name:1TOKEN" },
        { "secret_name_invalid", "name:" },
        { "secret_name_invalid", "name:" + new string('A', 65) },
        { "secret_duplicate", "duplicate" },
        { "secret_invalid", "both" },
        { "secret_invalid", "neither" },
        { "secret_value_invalid", "short" },
        { "secret_value_invalid", "long" },
        { "secret_value_invalid", "nul" },
        { "secret_value_invalid", "binary-file" },
        { "secret_file_not_found", "missing-file" },
        { "secret_file_not_found", "directory" },
        { "secret_limit", "many" },
    };

    [Theory]
    [MemberData(nameof(BadSecrets))]
    public void BadSecretsAreRefusedWithACodeAndNeverQuoted(string code, string kind)
    {
        var binary = Path.Combine(_dir, "binary");
        File.WriteAllBytes(binary, [0xff, 0xfe, 0x41, 0x42, 0x43, 0x44]);
        IReadOnlyList<WorkspaceSecret> secrets = kind switch
        {
            _ when kind.StartsWith("name:", StringComparison.Ordinal) => [new() { Name = kind[5..], Value = Value }],
            "duplicate" => [new() { Name = "A", Value = Value }, new() { Name = "A", Value = Value }],
            "both" => [new() { Name = "A", Value = Value, FilePath = binary }],
            "neither" => [new() { Name = "A" }],
            "short" => [new() { Name = "A", Value = "abc" }],
            "long" => [new() { Name = "A", Value = new string('v', 64 * 1024 + 1) }],
            "nul" => [new() { Name = "A", Value = Value + "\0" }],
            "binary-file" => [new() { Name = "A", FilePath = binary }],
            "missing-file" => [new() { Name = "A", FilePath = Path.Combine(_dir, "nope") }],
            "directory" => [new() { Name = "A", FilePath = _dir }],
            "many" => [.. Enumerable.Range(0, 33).Select(i => new WorkspaceSecret { Name = $"S{i}", Value = Value })],
            _ => throw new ArgumentException(kind),
        };

        var error = Assert.Throws<PyroInputException>(() => SecretStore.Resolve(secrets));
        Assert.Equal(code, error.Code);
        Assert.Equal(nameof(WorkspaceCreateRequest.Secrets), error.Field);
        Assert.DoesNotContain(Value, error.Message);
        Assert.DoesNotContain("vvvv", error.Message);
    }

    [Fact]
    public void TheStoreIsOneOwnerOnlyFileAndAFileValueLosesItsTrailingNewline()
    {
        var file = Path.Combine(_dir, "token.txt");
        File.WriteAllText(file, "from-a-file-value\n");
        var resolved = SecretStore.Resolve([new() { Name = "ZED", Value = Value }, new() { Name = "ALPHA", FilePath = file }]);
        Assert.Equal("from-a-file-value", resolved["ALPHA"]);

        var workspace = Directory.CreateDirectory(Path.Combine(_dir, "ws")).FullName;
        SecretStore.Write(workspace, resolved);
        var store = Path.Combine(workspace, SecretStore.FileName);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(store));
        Assert.Equal(resolved, SecretStore.Read(workspace));
        Assert.Equal(["ALPHA", "ZED"], SecretStore.Names(workspace));
        Assert.Equal("[REDACTED:ZED] and [REDACTED:ALPHA]", SecretStore.Redactor(workspace).Redact(Value + " and from-a-file-value"));

        // Written once, at create: a second write does not replace it.
        Assert.Throws<IOException>(() => SecretStore.Write(workspace, resolved));
        Assert.Empty(SecretStore.Names(Path.Combine(_dir, "no-such-workspace")));
    }

    [Fact]
    public void RequestsAndFramesNeverPrintAValue()
    {
        var secret = new WorkspaceSecret { Name = "TOKEN", Value = Value };
        var create = new WorkspaceCreateRequest { Environment = "debian:12", Secrets = [secret] };
        var frame = new AgentRequest { Op = AgentOps.SecretsPut, Secrets = new Dictionary<string, string> { ["TOKEN"] = Value } };

        Assert.DoesNotContain(Value, secret.ToString());
        Assert.DoesNotContain(Value, create.ToString());
        Assert.Contains("TOKEN", frame.ToString());
        Assert.DoesNotContain(Value, frame.ToString());
    }

    [Fact]
    public void ErrorsAreRedactedInPlaceKeepingTheirTypeAndCode()
    {
        var redactor = new SecretRedactor([new("TOKEN", Value)]);
        var guest = new GuestOperationException("service_not_ready", $"stdout tail: token={Value}");
        guest.RedactWith(redactor);
        Assert.Equal("stdout tail: token=[REDACTED:TOKEN]", guest.Message);
        Assert.DoesNotContain(Value, guest.ToString());
        Assert.Equal("service_not_ready", guest.Code);

        var boot = new VmBootException("boot_failed", "no boot", $"qemu {Value}", $"console {Convert.ToBase64String(Encoding.UTF8.GetBytes(Value))}");
        boot.RedactWith(redactor);
        Assert.DoesNotContain(Value, boot.QemuStderrTail);
        Assert.Contains("[REDACTED:TOKEN]", boot.ConsoleTail);
    }

    [Fact]
    public void AShellReadStopsBeforeTheFirstPartOfAValueAndTheNextReadShowsItRedacted()
    {
        var redactor = new SecretRedactor([new("TOKEN", Value)]);
        var shell = new ShellInfo { Id = "sh-00000001", State = "running", Cwd = "/workspace" };
        var first = WorkspaceManager.ToRead("ws", new ShellOutput { Shell = shell, Output = "$ echo\r\nkey=" + Value[..7], Cursor = 0, NextCursor = 19 }, 0, 1000, plain: false, redactor);
        Assert.Equal("$ echo\r\nkey=", first.Output);
        Assert.Equal(12, first.NextCursor);

        var second = WorkspaceManager.ToRead("ws", new ShellOutput { Shell = shell, Output = Value + " done\n", Cursor = 12, NextCursor = 12 + Value.Length + 6 }, 12, 1000, plain: true, redactor);
        Assert.Equal("[REDACTED:TOKEN] done\n", second.Output);

        // An exited shell writes no more: its end is shown (nothing can complete a value any more).
        var exited = WorkspaceManager.ToRead("ws", new ShellOutput { Shell = shell with { State = "exited" }, Output = "tail " + Value[..7], Cursor = 0 }, 0, 1000, plain: false, redactor);
        Assert.Equal("tail " + Value[..7], exited.Output);
    }

    [Fact]
    public void SecretEnvIsCheckedAgainstTheWorkspacesSecretsAndItsOwnEnv()
    {
        var options = new PyroOptions { StateDir = Path.Combine(_dir, "state") };
        var manager = new WorkspaceManager(options, new EnvironmentStore(options));
        var now = DateTimeOffset.UtcNow;
        var record = new WorkspaceRecord { Id = "0123456789ab", Environment = "debian:12", VcpuCount = 1, MemMib = 512, TtlSeconds = 600, CreatedAt = now, ExpiresAt = now.AddMinutes(10), State = WorkspaceState.Running };
        StoreSeed.Insert(manager.Store, record);
        Directory.CreateDirectory(manager.Store.WorkspaceDir(record.Id));
        SecretStore.Write(manager.Store.WorkspaceDir(record.Id), new Dictionary<string, string> { ["TOKEN"] = Value, ["OTHER"] = "other-value" });

        var mapped = manager.SecretEnvFor(record, new Dictionary<string, string?> { ["TOKEN"] = null, ["OTHER"] = "API_KEY" }, null, "SecretEnv");
        Assert.Equal(new Dictionary<string, string> { ["TOKEN"] = "TOKEN", ["API_KEY"] = "OTHER" }, mapped);

        void Refused(string code, Dictionary<string, string?> secretEnv, Dictionary<string, string>? env = null)
            => Assert.Equal(code, Assert.Throws<PyroInputException>(() => manager.SecretEnvFor(record, secretEnv, env, "SecretEnv")).Code);
        Refused("secret_not_found", new() { ["NOPE"] = null });
        Refused("secret_env_invalid", new() { ["TOKEN"] = "1BAD" });
        Refused("secret_env_invalid", new() { ["TOKEN"] = "X=Y" });
        Refused("secret_env_invalid", new() { ["TOKEN"] = "SAME", ["OTHER"] = "SAME" });
        Refused("secret_env_invalid", new() { ["TOKEN"] = null }, new() { ["TOKEN"] = "plain" });
    }

    [Fact]
    public async Task TheCliRefusesMalformedSecretFlagsWithoutEchoingThem()
    {
        var env = new Dictionary<string, string> { ["PYRO_STATE_DIR"] = Path.Combine(_dir, "state") };
        var flag = await PyroCli.RunAsync(["workspace", "create", "debian:12", "--secret", "missing-equals-" + Value, "--json"], env);
        Assert.Equal("secret_invalid", flag.Json.GetProperty("error").GetProperty("code").GetString());
        Assert.DoesNotContain(Value, flag.Stdout + flag.Stderr);

        var secretEnv = await PyroCli.RunAsync(["workspace", "exec", "ws", "--secret-env", "=X", "--json", "--", "true"], env);
        Assert.Equal("secret_env_invalid", secretEnv.Json.GetProperty("error").GetProperty("code").GetString());
        Assert.False(Directory.Exists(Path.Combine(_dir, "state", "workspaces")) && Directory.EnumerateFileSystemEntries(Path.Combine(_dir, "state", "workspaces")).Any());
    }

    [Fact]
    public async Task McpSecretArgumentsAreCheckedAndFilesConfinedToTheAllowedRoots()
    {
        var allowed = Directory.CreateDirectory(Path.Combine(_dir, "allowed")).FullName;
        await using var mcp = await InProcessMcp.StartAsync("workspace-full", new McpServerPolicy { AllowedPaths = [allowed] }, new PyroOptions { StateDir = Path.Combine(_dir, "state") });
        Dictionary<string, object?> Create(object secrets) => new() { ["environment"] = "debian:12", ["secrets"] = secrets };

        var tried = 0;
        async Task Refused(string tool, string code, Dictionary<string, object?> args)
        {
            tried++;
            var message = await mcp.ErrorAsync(tool, code, args);
            Assert.DoesNotContain(Value, message);
        }

        await Refused("workspace_create", "secret_invalid", Create("API_TOKEN=" + Value));
        await Refused("workspace_create", "secret_invalid", Create(new[] { new Dictionary<string, object?> { ["name"] = "A", ["value"] = Value, ["extra"] = 1 } }));
        await Refused("workspace_create", "secret_invalid", Create(new[] { new Dictionary<string, object?> { ["value"] = Value } }));
        await Refused("workspace_create", "secret_invalid", Create(new[] { new Dictionary<string, object?> { ["name"] = "A", ["value"] = 42 } }));
        await Refused("workspace_create", "secret_name_invalid", Create(new[] { new Dictionary<string, object?> { ["name"] = Value, ["value"] = Value } }));
        await Refused("workspace_create", "path_not_allowed", Create(new[] { new Dictionary<string, object?> { ["name"] = "A", ["file_path"] = "/etc/shadow" } }));
        await Refused("workspace_create", "path_not_allowed", Create(new[] { new Dictionary<string, object?> { ["name"] = "A", ["file_path"] = Path.Combine(allowed, "..", "escape") } }));
        await Refused("workspace_exec", "secret_env_invalid", new() { ["workspace_id"] = "0123456789ab", ["command"] = "true", ["secret_env"] = "TOKEN" });
        await Refused("workspace_exec", "secret_env_invalid", new() { ["workspace_id"] = "0123456789ab", ["command"] = "true", ["secret_env"] = new[] { "A", "A" } });
        await Refused("shell_open", "secret_env_invalid", new() { ["workspace_id"] = "0123456789ab", ["secret_env"] = new Dictionary<string, object?> { ["A"] = 1 } });
        await Refused("service_start", "secret_env_invalid", new() { ["workspace_id"] = "0123456789ab", ["service_name"] = "web", ["command"] = "true", ["secret_env"] = 7 });
        Assert.False(Directory.Exists(Path.Combine(_dir, "state", "workspaces")) && Directory.EnumerateFileSystemEntries(Path.Combine(_dir, "state", "workspaces")).Any());
        PyroMcp.TestKit.Figures.Record("secret arguments", $"{tried} malformed MCP secret arguments refused before any guest work, 0 values quoted back");
    }
}
