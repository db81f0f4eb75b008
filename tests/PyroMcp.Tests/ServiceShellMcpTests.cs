using System.Text.Json;
using PyroMcp.Server;

namespace PyroMcp.Tests;

/// <summary>
/// The service and shell tools without a guest: their arguments are checked by the server, with the
/// right code, before any workspace is looked up (the workspace id here does not exist, so an argument
/// that got through would fail with workspace_not_found or worse instead).
/// </summary>
public sealed class ServiceShellMcpTests : NoGuestTest
{
    private const string Nowhere = "000000000000";

    private static JsonElement Parse(string json) => JsonDocument.Parse(json).RootElement.Clone();

    [Theory]
    [InlineData("""{"type": "http", "url": "http://127.0.0.1:8080/"}""", "http", "http://127.0.0.1:8080/")]
    [InlineData("""{"type": "tcp", "address": "127.0.0.1:5432"}""", "tcp", "127.0.0.1:5432")]
    [InlineData("""{"type": "file", "path": "ready.flag"}""", "file", "ready.flag")]
    [InlineData("""{"type": "command", "command": "pg_isready"}""", "command", "pg_isready")]
    [InlineData("""{"type": "http", "target": "http://localhost/"}""", "http", "http://localhost/")]
    [InlineData("""{"target": "127.0.0.1:1", "type": "tcp"}""", "tcp", "127.0.0.1:1")]
    public void ReadinessObjectsBecomeProbes(string json, string type, string target)
        => Assert.Equal(new ServiceReadiness(type, target), PyroTools.ParseReadiness(Parse(json)));

    [Fact]
    public void NoReadinessIsReadyOnceStarted()
    {
        Assert.Null(PyroTools.ParseReadiness(null));
        Assert.Null(PyroTools.ParseReadiness(Parse("null")));
    }

    [Theory]
    [InlineData("""["8080", "18081:8081", 9090, {"host_port": 18082, "guest_port": 8082}, {"guest_port": "8083"}]""", "8080,18081:8081,9090,18082:8082,8083")]
    [InlineData("[]", "")]
    [InlineData("null", "")]
    public void PublishedPortsBecomeSdkSpecs(string json, string expected)
        => Assert.Equal(expected, string.Join(',', PyroTools.ParsePublishedPorts(Parse(json))));

    public static TheoryData<string, string, Dictionary<string, object?>> Refused => new()
    {
        // readiness
        { "service_start", "readiness_invalid", Service(new() { ["readiness"] = Parse("""{"type": "smtp", "target": "x"}""") }) },
        { "service_start", "readiness_invalid", Service(new() { ["readiness"] = Parse("""{"url": "http://x/"}""") }) },
        { "service_start", "readiness_invalid", Service(new() { ["readiness"] = Parse("""{"type": "http"}""") }) },
        { "service_start", "readiness_invalid", Service(new() { ["readiness"] = Parse("""{"type": "http", "path": "x"}""") }) },
        { "service_start", "readiness_invalid", Service(new() { ["readiness"] = Parse("""{"type": "http", "url": "http://x/", "target": "http://y/"}""") }) },
        { "service_start", "readiness_invalid", Service(new() { ["readiness"] = Parse("""{"type": "http", "urll": "http://x/"}""") }) },
        { "service_start", "readiness_invalid", Service(new() { ["readiness"] = Parse("""{"type": "tcp", "address": ""}""") }) },
        { "service_start", "readiness_invalid", Service(new() { ["readiness"] = Parse("""{"type": 7, "address": "x:1"}""") }) },
        { "service_start", "readiness_invalid", Service(new() { ["readiness"] = Parse("""{"type": "tcp", "address": 8080}""") }) },
        { "service_start", "readiness_invalid", Service(new() { ["readiness"] = "http://127.0.0.1:8080/" }) },
        { "service_start", "readiness_invalid", Service(new() { ["readiness"] = Parse("""["http", "http://x/"]""") }) },
        { "service_start", "readiness_invalid", Service(new() { ["readiness"] = Parse($$"""{"type": "command", "command": "{{new string('x', 16 * 1024 + 1)}}"}""") }) },
        // readiness timing
        { "service_start", "readiness_invalid", Service(new() { ["ready_timeout_seconds"] = 0 }) },
        { "service_start", "readiness_invalid", Service(new() { ["ready_timeout_seconds"] = 601 }) },
        { "service_start", "readiness_invalid", Service(new() { ["ready_timeout_seconds"] = int.MaxValue }) },
        { "service_start", "readiness_invalid", Service(new() { ["ready_interval_ms"] = 49 }) },
        { "service_start", "readiness_invalid", Service(new() { ["ready_interval_ms"] = 60001 }) },
        // published ports
        { "service_start", "port_invalid", Service(new() { ["published_ports"] = Parse("""["80:8080"]""") }) },
        { "service_start", "port_invalid", Service(new() { ["published_ports"] = Parse("""["0"]""") }) },
        { "service_start", "port_invalid", Service(new() { ["published_ports"] = Parse("""["65536"]""") }) },
        { "service_start", "port_invalid", Service(new() { ["published_ports"] = Parse("""["1:2:3"]""") }) },
        { "service_start", "port_invalid", Service(new() { ["published_ports"] = Parse("""["-1"]""") }) },
        { "service_start", "port_invalid", Service(new() { ["published_ports"] = Parse("""["8080 "]""") }) },
        { "service_start", "port_invalid", Service(new() { ["published_ports"] = Parse("""[{"host_port": 18080}]""") }) },
        { "service_start", "port_invalid", Service(new() { ["published_ports"] = Parse("""[{"guest_port": 8080, "bind": "0.0.0.0"}]""") }) },
        { "service_start", "port_invalid", Service(new() { ["published_ports"] = Parse("""[{"guest_port": 8080, "host_port": 22}]""") }) },
        { "service_start", "port_invalid", Service(new() { ["published_ports"] = Parse("""[true]""") }) },
        { "service_start", "port_invalid", Service(new() { ["published_ports"] = "8080" }) },
        { "service_start", "port_limit", Service(new() { ["published_ports"] = Enumerable.Range(8000, 17).Select(p => p.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray() }) },
        // logs, shells
        { "service_logs", "invalid_tail_lines", new() { ["workspace_id"] = Nowhere, ["service_name"] = "web", ["tail_lines"] = 0 } },
        { "service_logs", "invalid_tail_lines", new() { ["workspace_id"] = Nowhere, ["service_name"] = "web", ["tail_lines"] = 5001 } },
        { "shell_open", "shell_size_invalid", new() { ["workspace_id"] = Nowhere, ["cols"] = 9 } },
        { "shell_open", "shell_size_invalid", new() { ["workspace_id"] = Nowhere, ["cols"] = 1001 } },
        { "shell_open", "shell_size_invalid", new() { ["workspace_id"] = Nowhere, ["rows"] = 4 } },
        { "shell_open", "shell_size_invalid", new() { ["workspace_id"] = Nowhere, ["rows"] = 100000 } },
        { "shell_read", "invalid_max_chars", new() { ["workspace_id"] = Nowhere, ["shell_id"] = "s", ["max_chars"] = 262145 } },
        { "shell_read", "invalid_max_chars", new() { ["workspace_id"] = Nowhere, ["shell_id"] = "s", ["max_chars"] = 0 } },
        { "shell_read", "invalid_cursor", new() { ["workspace_id"] = Nowhere, ["shell_id"] = "s", ["cursor"] = -1 } },
    };

    private static Dictionary<string, object?> Service(Dictionary<string, object?> extra)
    {
        var args = new Dictionary<string, object?> { ["workspace_id"] = Nowhere, ["service_name"] = "web", ["command"] = "python3 -m http.server 8080" };
        foreach (var (key, value) in extra)
        {
            args[key] = value;
        }

        return args;
    }

    /// <summary>Every refused argument comes back as a tool error with its code and a hint in the model's terms, and the server keeps serving.</summary>
    [Fact]
    public async Task OutOfRangeAndMalformedArgumentsAreRefusedBeforeAnyGuestWork()
    {
        await using var mcp = await InProcessMcp.StartAsync("workspace-full");
        var tried = 0;
        var refusedRight = 0;
        foreach (var row in Refused)
        {
            var (tool, code, args) = ((string)row[0], (string)row[1], (Dictionary<string, object?>)row[2]);
            var result = await mcp.CallAsync(tool, args);
            tried++;
            Assert.True(result.IsError == true, $"{tool} {JsonSerializer.Serialize(args.Keys)} should have failed with {code}: {InProcessMcp.Text(result)}");
            var error = result.StructuredContent!.Value.GetProperty("error");
            Assert.True(code == error.GetProperty("code").GetString(), $"{tool}: expected {code}, got {InProcessMcp.Text(result)}");
            Assert.False(string.IsNullOrEmpty(error.GetProperty("hint").GetString()), $"{code} needs a hint");
            Assert.DoesNotContain("--", error.GetProperty("hint").GetString()!);
            refusedRight++;
        }

        Assert.Equal(0, (await mcp.OkAsync("workspace_list")).GetProperty("count").GetInt32());
        Figures.Record("service/shell MCP arguments", $"{tried} malformed or out-of-range arguments tried, {refusedRight} refused with their code before any workspace lookup, {tried - refusedRight} reached the SDK");
    }

    [Fact]
    public async Task PublishingIsRefusedWhenTheOperatorCapsTheNetwork()
    {
        await using var mcp = await InProcessMcp.StartAsync("workspace-full", new McpServerPolicy { AllowedPaths = [Path.GetTempPath()], MaxNetworkPolicy = NetworkPolicy.Egress });
        var message = await mcp.ErrorAsync("service_start", "network_policy_not_allowed", Service(new() { ["published_ports"] = Parse("""["8080"]""") }));
        Assert.Contains("published_ports", message);
    }

    [Fact]
    public async Task ToolSchemasCarryDefaultsAndBounds()
    {
        await using var mcp = await InProcessMcp.StartAsync("workspace-full");
        var tools = (await mcp.Client.ListToolsAsync()).ToDictionary(t => t.Name);

        var start = tools["service_start"].JsonSchema;
        Assert.Equal(["workspace_id", "service_name", "command"], start.GetProperty("required").EnumerateArray().Select(e => e.GetString()));
        var properties = start.GetProperty("properties");
        Assert.Equal(["workspace_id", "service_name", "command", "cwd", "readiness", "ready_timeout_seconds", "ready_interval_ms", "published_ports", "secret_env"], properties.EnumerateObject().Select(p => p.Name));
        Assert.Equal(30, properties.GetProperty("ready_timeout_seconds").GetProperty("default").GetInt32());
        Assert.Equal(600, properties.GetProperty("ready_timeout_seconds").GetProperty("maximum").GetInt32());
        Assert.Equal("/workspace", properties.GetProperty("cwd").GetProperty("default").GetString());

        var read = tools["shell_read"].JsonSchema.GetProperty("properties");
        Assert.Equal(262144, read.GetProperty("max_chars").GetProperty("maximum").GetInt32());
        Assert.True(read.GetProperty("plain").GetProperty("default").GetBoolean());
        Assert.Equal("INT", tools["shell_signal"].JsonSchema.GetProperty("properties").GetProperty("signal_name").GetProperty("default").GetString());
        Assert.True(tools["shell_write"].JsonSchema.GetProperty("properties").GetProperty("append_newline").GetProperty("default").GetBoolean());
        Assert.Equal(200, tools["service_logs"].JsonSchema.GetProperty("properties").GetProperty("tail_lines").GetProperty("default").GetInt32());

        // The model is told which of exec, shell and service fits.
        foreach (var name in new[] { "service_start", "shell_open" })
        {
            Assert.Contains("workspace_exec for one command that ends", tools[name].Description);
            Assert.Contains("long-running process", tools[name].Description);
        }
    }

    [Fact]
    public async Task TheCoreProfileHasNoServiceOrShellTools()
    {
        await using var mcp = await InProcessMcp.StartAsync("workspace-core");
        var names = (await mcp.Client.ListToolsAsync()).Select(t => t.Name).ToList();
        Assert.DoesNotContain(names, n => n.StartsWith("service_", StringComparison.Ordinal) || n.StartsWith("shell_", StringComparison.Ordinal));
        await Assert.ThrowsAnyAsync<Exception>(() => mcp.CallAsync("service_list", new() { ["workspace_id"] = Nowhere }));
    }
}
