using System.Reflection;
using System.Text.Json;
using System.Text.RegularExpressions;
using PyroMcp.Cli;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Server;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// The SDK speaks in its own terms: its messages never name a CLI flag or command, the CLI and
/// the MCP server add their own hints by error code, and its public surface shows no wire types.
/// </summary>
public sealed partial class SdkTermsTests
{
    private static readonly HostCapacity Host = new(4, 8192);

    private static RunRequest Run(Func<RunRequest, RunRequest> change) => change(new RunRequest { Environment = "debian:12", Command = ["true"] });

    private static WorkspaceCreateRequest Create(Func<WorkspaceCreateRequest, WorkspaceCreateRequest> change) => change(new WorkspaceCreateRequest { Environment = "debian:12" });

    /// <summary>Every error the SDK's validators raise without a guest, with the code it must have.</summary>
    public static TheoryData<string, string> SdkErrors() => new()
    {
        { "missing_command", "run:command" },
        { "invalid_vcpu_count", "run:vcpu" },
        { "invalid_mem_mib", "run:mem" },
        { "invalid_timeout", "run:timeout" },
        { "vcpu_count_exceeds_host", "host:vcpu" },
        { "mem_exceeds_host", "host:mem" },
        { "unknown_environment", "catalog" },
        { "invalid_accelerator", "accel" },
        { "kvm_unavailable", "kvm" },
    };

    /// <summary>The workspace create validator's errors (WorkspaceManager.Validate).</summary>
    public static TheoryData<string, string> CreateErrors() => new()
    {
        { "invalid_vcpu_count", "create:vcpu" },
        { "invalid_mem_mib", "create:mem" },
        { "invalid_ttl", "create:ttl" },
        { "invalid_name", "create:name" },
        { "invalid_label", "create:label" },
        { "seed_not_found", "create:seed" },
    };

    private static PyroException Trigger(string how) => Assert.IsAssignableFrom<PyroException>(Record.Exception(() =>
    {
        switch (how)
        {
            case "run:command": Run(r => r with { Command = [] }).Validate(Host); break;
            case "run:vcpu": Run(r => r with { VcpuCount = 99 }).Validate(Host); break;
            case "run:mem": Run(r => r with { MemMib = 64 }).Validate(Host); break;
            case "run:timeout": Run(r => r with { TimeoutSeconds = 0 }).Validate(Host); break;
            case "host:vcpu": Run(r => r with { VcpuCount = 8 }).Validate(Host); break;
            case "host:mem": Run(r => r with { MemMib = 8000 }).Validate(Host); break;
            case "catalog": EnvironmentCatalog.Resolve("alpine:3", PyroScratch.Options); break;
            case "accel": PyroOptions.ParseAccelerator("xen"); break;
            case "kvm": new KvmProbe(true, true, true, false, "nested PVM").Choose(Accelerator.Kvm); break;
            case "create:vcpu": WorkspaceManager.Validate(Create(r => r with { VcpuCount = 0 }), Host); break;
            case "create:mem": WorkspaceManager.Validate(Create(r => r with { MemMib = 70000 }), Host); break;
            case "create:ttl": WorkspaceManager.Validate(Create(r => r with { TtlSeconds = 1 }), Host); break;
            case "create:name": WorkspaceManager.Validate(Create(r => r with { Name = "-bad" }), Host); break;
            case "create:label": WorkspaceManager.Validate(Create(r => r with { Labels = new Dictionary<string, string> { ["a b"] = "c" } }), Host); break;
            case "create:seed": WorkspaceManager.Validate(Create(r => r with { SeedPath = "/nonexistent/seed" }), Host); break;
            default: throw new ArgumentException(how);
        }
    }));

    /// <summary>A CLI flag (<c>--vcpu-count</c>) or a CLI command (<c>'pyro workspace list'</c>, <c>pyro env pull</c>).</summary>
    [GeneratedRegex(@"(?<![\w-])--[a-z]|\bpyro (run|env|workspace|mcp|doctor|demo)\b")]
    private static partial Regex CliWords();

    private static void AssertSdkTerms(string code, PyroException ex)
    {
        Assert.Equal(code, ex.Code);
        Assert.DoesNotMatch(CliWords(), ex.Message);
        if (ex is PyroInputException { Field: { } field })
        {
            Assert.NotNull(typeof(RunRequest).GetProperty(field) ?? typeof(WorkspaceCreateRequest).GetProperty(field));
        }
    }

    [Theory]
    [MemberData(nameof(SdkErrors))]
    public void SdkMessagesNameNoCliFlagOrCommand(string code, string how) => AssertSdkTerms(code, Trigger(how));

    [Theory]
    [MemberData(nameof(CreateErrors))]
    public void WorkspaceCreateMessagesNameNoCliFlag(string code, string how) => AssertSdkTerms(code, Trigger(how));

    [Theory]
    [MemberData(nameof(SdkErrors))]
    [MemberData(nameof(CreateErrors))]
    public void TheCliAndMcpHintsNameTheirOwnFlagsAndParameters(string code, string how)
    {
        var ex = Trigger(how);
        var field = (ex as PyroInputException)?.Field;
        if (code == "invalid_accelerator")
        {
            return; // Only PYRO_ACCEL reaches the parser unchecked; the --accel option says its words in --help.
        }

        var cli = ErrorHints.For(code, field, null);
        Assert.NotNull(cli);
        Assert.Matches(@"--[a-z]|'pyro |pyro [a-z]|ENVIRONMENT", cli);

        if (code == "kvm_unavailable")
        {
            return; // The operator's choice, not the model's: MCP has no parameter for it.
        }

        var mcp = ToolErrorHints.For(code, field);
        Assert.NotNull(mcp);
        Assert.DoesNotMatch(CliWords(), mcp);
    }

    [Fact]
    public void CliHintsNameTheFlagAndMcpTheParameter()
    {
        Assert.Equal("--vcpu-count takes 1 to 32", ErrorHints.For("invalid_vcpu_count", nameof(RunRequest.VcpuCount), null));
        Assert.Equal("vcpu_count must be between 1 and 32", ToolErrorHints.For("invalid_vcpu_count", nameof(RunRequest.VcpuCount)));
        Assert.Equal("see 'pyro workspace list'", ErrorHints.For("workspace_not_found", null, null));
        Assert.Contains("pyro workspace start WORKSPACE", ErrorHints.For("workspace_not_running", null, null));
        Assert.Contains("workspace_start", ToolErrorHints.For("workspace_not_running", null));
        Assert.Equal("vcpu_count", ToolErrorHints.Parameter(nameof(WorkspaceCreateRequest.VcpuCount)));
        Assert.Equal("seed_path", ToolErrorHints.Parameter(nameof(WorkspaceCreateRequest.SeedPath)));
        Assert.Equal("--ttl-seconds", ErrorHints.Flag(nameof(WorkspaceCreateRequest.TtlSeconds)));
        Assert.Equal("--label", ErrorHints.Flag(nameof(WorkspaceCreateRequest.Labels)));
        Assert.Null(ErrorHints.For("some_new_code", null, null));
        Assert.Equal("check --mem-mib", ErrorHints.For("some_new_code", nameof(RunRequest.MemMib), null));
    }

    [Fact]
    public void EnumsSerializeAsTheWordsTheJsonAlwaysHad()
    {
        static string Word<T>(T value) => JsonSerializer.Serialize(value, (System.Text.Json.Serialization.Metadata.JsonTypeInfo<T>)PyroJsonContext.Default.GetTypeInfo(typeof(T))!);

        Assert.Equal("\"guest_virtio_serial\"", Word(ExecutionMode.Guest));
        Assert.Equal("\"host_compat\"", Word(ExecutionMode.HostCompat));
        Assert.Equal(["\"added\"", "\"modified\"", "\"deleted\"", "\"type_changed\""], Enum.GetValues<ChangeKind>().Select(Word));
        Assert.Equal(["\"file\"", "\"directory\"", "\"symlink\"", "\"other\""], Enum.GetValues<EntryKind>().Select(Word));
        Assert.Equal(["\"auto\"", "\"kvm\"", "\"tcg\""], Enum.GetValues<Accelerator>().Select(Word));

        var diff = new WorkspaceDiff { WorkspaceId = "w", Changes = [new DiffEntry("a", ChangeKind.TypeChanged, EntryKind.Symlink, false)] };
        var entry = JsonDocument.Parse(JsonSerializer.Serialize(diff, PyroJsonContext.Default.WorkspaceDiff)).RootElement.GetProperty("changes")[0];
        Assert.Equal("type_changed", entry.GetProperty("change").GetString());
        Assert.Equal("symlink", entry.GetProperty("kind").GetString());

        var file = JsonSerializer.Serialize(new FileEntry { Path = "a", Type = EntryKind.File, Size = 3, Mode = 420 }, PyroJsonContext.Default.FileEntry);
        Assert.Equal("""{"path":"a","type":"file","size":3,"mode":420,"link_target":null,"truncated":false}""", JsonDocument.Parse(file).RootElement.GetRawText().Replace(" ", "").Replace("\n", ""));
        var run = JsonDocument.Parse(JsonSerializer.Serialize(new WorkspaceExecResult { WorkspaceId = "w", Command = "true", Cwd = "/" }, PyroJsonContext.Default.WorkspaceExecResult)).RootElement;
        Assert.Equal("guest_virtio_serial", run.GetProperty("execution_mode").GetString());
    }

    [Fact]
    public void ThePublicSurfaceExposesNoProtocolType()
    {
        var leaks = new List<string>();
        foreach (var type in typeof(Pyro).Assembly.GetExportedTypes())
        {
            void Check(Type? used, string where)
            {
                foreach (var t in Expand(used))
                {
                    if (t.Namespace is { } ns && (ns == "PyroMcp.Protocol" || ns.StartsWith("PyroMcp.Protocol.", StringComparison.Ordinal)))
                    {
                        leaks.Add($"{type.FullName}.{where}: {t.FullName}");
                    }
                }
            }

            Check(type.BaseType, "(base)");
            foreach (var i in type.GetInterfaces())
            {
                Check(i, "(interface)");
            }

            const BindingFlags Visible = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
            foreach (var member in type.GetMembers(Visible))
            {
                switch (member)
                {
                    case FieldInfo f when f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly:
                        Check(f.FieldType, f.Name);
                        break;
                    case PropertyInfo p when p.GetAccessors(nonPublic: true).Any(a => a.IsPublic || a.IsFamily || a.IsFamilyOrAssembly):
                        Check(p.PropertyType, p.Name);
                        break;
                    case MethodBase m when m.IsPublic || m.IsFamily || m.IsFamilyOrAssembly:
                        if (m is MethodInfo mi)
                        {
                            Check(mi.ReturnType, m.Name);
                        }

                        foreach (var parameter in m.GetParameters())
                        {
                            Check(parameter.ParameterType, $"{m.Name}({parameter.Name})");
                        }

                        break;
                    case EventInfo e when e.AddMethod is { IsPublic: true } or { IsFamily: true }:
                        Check(e.EventHandlerType, e.Name);
                        break;
                }
            }
        }

        Assert.True(leaks.Count == 0, "public SDK members expose wire types:\n" + string.Join('\n', leaks));
    }

    /// <summary>A type and every type it is built from: element types and generic arguments.</summary>
    private static IEnumerable<Type> Expand(Type? type)
    {
        if (type is null)
        {
            yield break;
        }

        yield return type;
        if (type.HasElementType)
        {
            foreach (var t in Expand(type.GetElementType()))
            {
                yield return t;
            }
        }

        if (type.IsGenericType)
        {
            foreach (var t in type.GetGenericArguments().SelectMany(Expand))
            {
                yield return t;
            }
        }
    }
}
