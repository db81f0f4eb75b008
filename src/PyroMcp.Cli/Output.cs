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

    /// <summary>The word an enum value is in JSON (<c>guest_virtio_serial</c>, <c>added</c>), so text output says what --json says.</summary>
    internal static string Word<T>(T value) where T : struct, Enum
        => JsonSerializer.SerializeToElement(value, (JsonTypeInfo<T>)PyroJsonContext.Default.GetTypeInfo(typeof(T))!).GetString()!;

    internal static void WriteJson(JsonNode node) => Console.Out.WriteLine(node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

    /// <summary>
    /// Runs an action and turns pyro's errors into a message, a hint that names the flag or command
    /// to use next (<see cref="ErrorHints"/>), and an exit code. <paramref name="hint"/> lets a
    /// command give its own hint first, for what only it knows.
    /// </summary>
    internal static async Task<int> GuardAsync(bool json, Func<Task<int>> action, Func<PyroException, string?>? hint = null)
    {
        try
        {
            return await action();
        }
        catch (PyroException ex)
        {
            var field = (ex as PyroInputException)?.Field;
            return Fail(json, ex.Code, ex.Message, ex is PyroInputException ? CliApp.ExitUsage : CliApp.ExitFailure,
                hint?.Invoke(ex) ?? ErrorHints.For(ex.Code, field, CliApp.Parsed));
        }
        catch (CliUsageException ex)
        {
            return Fail(json, ex.Code, ex.Message, CliApp.ExitUsage, ErrorHints.For(ex.Code, null, CliApp.Parsed));
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

    /// <summary>Reports an error on stderr (and as <c>{"error": {code, message, hint}}</c> on stdout with --json); returns <paramref name="exitCode"/>.</summary>
    internal static int Fail(bool json, string code, string message, int exitCode, string? hint = null)
    {
        Console.Error.WriteLine($"pyro: error: {message}");
        if (hint is not null)
        {
            Console.Error.WriteLine($"pyro: hint: {hint}");
        }

        Console.Error.WriteLine($"pyro: error code: {code}");
        if (json)
        {
            var error = new JsonObject { ["code"] = code, ["message"] = message };
            if (hint is not null)
            {
                error["hint"] = hint;
            }

            WriteJson(new JsonObject { ["error"] = error });
        }

        return exitCode;
    }
}
