using System.Text.Json;

namespace PyroMcp.Server;

/// <summary>The secret arguments of workspace_create and of the calls that map a secret into one process.</summary>
public sealed partial class PyroTools
{
    private const string SecretsParameter = """
        Secrets the workspace keeps for its life, at most 32: a list of {"name": "API_TOKEN", "value": "..."} or
        {"name": "API_TOKEN", "file_path": "token.txt"} (a host file inside the directories the server allows). Each
        is the file /run/pyro-secrets/NAME (mode 0400, never on the disk) in the guest, and is replaced by
        [REDACTED:NAME] in everything pyro returns. Names: letters, digits, '_'; values 4 to 65536 bytes.
        """;

    private const string SecretEnvParameter = """
        Workspace secrets to put in this call's environment only: {"API_TOKEN": ""} (as API_TOKEN) or
        {"API_TOKEN": "TOKEN"} (as TOKEN), or a list of names ["API_TOKEN"].
        """;

    /// <summary>The secrets of a workspace_create call; file paths are confined to the allowed roots. Values are never quoted in errors.</summary>
    internal IReadOnlyList<WorkspaceSecret>? ParseSecrets(JsonElement? secrets)
    {
        if (secrets is not { } value || value.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined)
        {
            return null;
        }

        const string Forms = "give a list of {\"name\": NAME, \"value\": VALUE} or {\"name\": NAME, \"file_path\": PATH} objects";
        if (value.ValueKind != JsonValueKind.Array)
        {
            throw new ToolError("secret_invalid", $"secrets must be a list: {Forms}");
        }

        var parsed = new List<WorkspaceSecret>();
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Object
                || !item.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String
                || item.EnumerateObject().Any(p => p.Name is not ("name" or "value" or "file_path")))
            {
                throw new ToolError("secret_invalid", $"secret {parsed.Count + 1} is not an object with a name and a value or file_path: {Forms}");
            }

            var text = item.TryGetProperty("value", out var v) ? v : default;
            var file = item.TryGetProperty("file_path", out var f) ? f : default;
            if (text.ValueKind is not (JsonValueKind.String or JsonValueKind.Undefined) || file.ValueKind is not (JsonValueKind.String or JsonValueKind.Undefined))
            {
                throw new ToolError("secret_invalid", $"secret {parsed.Count + 1}: value and file_path are strings: {Forms}");
            }

            parsed.Add(new WorkspaceSecret
            {
                Name = name.GetString()!,
                Value = text.ValueKind == JsonValueKind.String ? text.GetString() : null,
                FilePath = file.ValueKind == JsonValueKind.String ? _roots.Confine(file.GetString()!, "file_path") : null,
            });
        }

        return parsed;
    }

    /// <summary>A secret_env argument: secret name to environment variable (null or empty: the same name).</summary>
    internal static IReadOnlyDictionary<string, string?>? ParseSecretEnv(JsonElement? secretEnv)
    {
        if (secretEnv is not { } value || value.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined)
        {
            return null;
        }

        const string Forms = "give {\"SECRET_NAME\": \"ENV_VAR\"} (\"\" keeps the name) or a list of secret names";
        var mapped = new Dictionary<string, string?>(StringComparer.Ordinal);
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in value.EnumerateObject())
                {
                    if (property.Value.ValueKind is not (JsonValueKind.String or JsonValueKind.Null) || !mapped.TryAdd(property.Name, property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString() : null))
                    {
                        throw new ToolError("secret_env_invalid", $"secret_env: {Forms}");
                    }
                }

                break;
            case JsonValueKind.Array:
                foreach (var item in value.EnumerateArray())
                {
                    if (item.ValueKind != JsonValueKind.String || !mapped.TryAdd(item.GetString()!, null))
                    {
                        throw new ToolError("secret_env_invalid", $"secret_env: {Forms}; each secret once");
                    }
                }

                break;
            default:
                throw new ToolError("secret_env_invalid", $"secret_env: {Forms}");
        }

        return mapped;
    }
}
