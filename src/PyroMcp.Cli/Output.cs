using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;

namespace PyroMcp.Cli;

/// <summary>How results and errors reach the terminal: stdout for results, stderr for progress and errors.</summary>
internal static class Output
{
    internal static readonly Option<bool> Json = new("--json") { Description = "Print one JSON document on stdout instead of text." };

    internal static IProgress<PyroProgress> StderrProgress { get; } = new SyncProgress<PyroProgress>(p => Console.Error.WriteLine(p.ToString()));

    internal static void WriteJson<T>(T value, JsonTypeInfo<T> typeInfo) => Console.Out.WriteLine(JsonSerializer.Serialize(value, typeInfo));

    internal static void WriteJson(JsonNode node) => Console.Out.WriteLine(node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

    /// <summary>Runs an action and turns pyro's errors into a message and an exit code.</summary>
    internal static async Task<int> GuardAsync(bool json, Func<Task<int>> action)
    {
        try
        {
            return await action();
        }
        catch (PyroException ex)
        {
            return Fail(json, ex.Code, ex.Message, ex is PyroInputException ? CliApp.ExitUsage : CliApp.ExitFailure);
        }
        catch (ArgumentException ex)
        {
            return Fail(json, "invalid_argument", ex.Message, CliApp.ExitUsage);
        }
        catch (OperationCanceledException)
        {
            var code = CliApp.SignalExitCode ?? 130;
            Console.Error.WriteLine($"pyro: interrupted by {(code == 143 ? "SIGTERM" : "SIGINT")}; the VM was torn down");
            return code;
        }
    }

    internal static int Fail(bool json, string code, string message, int exitCode)
    {
        Console.Error.WriteLine($"pyro: error: {message}");
        Console.Error.WriteLine($"pyro: error code: {code}");
        if (json)
        {
            WriteJson(new JsonObject { ["error"] = new JsonObject { ["code"] = code, ["message"] = message } });
        }

        return exitCode;
    }
}
