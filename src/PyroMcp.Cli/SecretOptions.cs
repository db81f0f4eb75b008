using System.CommandLine;

namespace PyroMcp.Cli;

/// <summary>
/// The secret flags: <c>--secret NAME=VALUE</c> and <c>--secret-file NAME=PATH</c> at create, and
/// <c>--secret-env NAME[=ENV_VAR]</c> on exec, shell open and service start. A malformed flag is
/// refused without quoting it back: it may hold a value.
/// </summary>
internal static class SecretOptions
{
    internal static Option<string[]> Secret() => new("--secret")
    {
        Description = "Secret NAME=VALUE the workspace keeps (repeatable): /run/pyro-secrets/NAME in the guest, redacted from all output. Prefer --secret-file: a value on a command line can be seen by other processes.",
    };

    internal static Option<string[]> SecretFile() => new("--secret-file")
    {
        Description = "Secret NAME=PATH read from a host file (repeatable; one trailing newline is dropped).",
    };

    internal static Option<string[]> SecretEnv() => new("--secret-env")
    {
        Description = "Put workspace secret NAME in this call's environment, as NAME or as ENV_VAR (NAME=ENV_VAR; repeatable).",
    };

    internal static IReadOnlyList<WorkspaceSecret>? Secrets(string[]? literal, string[]? files)
    {
        var secrets = new List<WorkspaceSecret>();
        foreach (var pair in literal ?? [])
        {
            var (name, value) = Split(pair, "--secret", "NAME=VALUE");
            secrets.Add(new WorkspaceSecret { Name = name, Value = value });
        }

        foreach (var pair in files ?? [])
        {
            var (name, path) = Split(pair, "--secret-file", "NAME=PATH");
            secrets.Add(new WorkspaceSecret { Name = name, FilePath = path });
        }

        return secrets.Count == 0 ? null : secrets;
    }

    internal static IReadOnlyDictionary<string, string?>? Env(string[]? mappings)
    {
        if (mappings is not { Length: > 0 })
        {
            return null;
        }

        var result = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var mapping in mappings)
        {
            var eq = mapping.IndexOf('=');
            var name = eq < 0 ? mapping : mapping[..eq];
            if (name.Length == 0 || !result.TryAdd(name, eq < 0 ? null : mapping[(eq + 1)..]))
            {
                throw new CliUsageException("secret_env_invalid", "--secret-env takes NAME or NAME=ENV_VAR, each secret once");
            }
        }

        return result;
    }

    private static (string Name, string Value) Split(string pair, string option, string shape)
    {
        var eq = pair.IndexOf('=');
        return eq <= 0
            ? throw new CliUsageException("secret_invalid", $"{option} takes {shape} (the argument is not shown: it may hold a value)")
            : (pair[..eq], pair[(eq + 1)..]);
    }
}
