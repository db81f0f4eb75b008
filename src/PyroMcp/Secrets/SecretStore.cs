using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using PyroMcp.Protocol.Secrets;

namespace PyroMcp.Secrets;

/// <summary>
/// The one place a workspace's secret values live on the host: <c>secrets.json</c>, mode 0600, in
/// the workspace's own 0700 directory. Not in the database, the command history, snapshots,
/// exports, logs or any process's arguments: the supervisor reads the file and hands the values
/// to the guest agent over its channel after each boot.
/// </summary>
internal static partial class SecretStore
{
    internal const string FileName = "secrets.json";
    internal const int MaxSecrets = 32;
    internal const int MinValueBytes = 4;
    internal const int MaxValueBytes = 64 * 1024;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Checks the request's secrets and reads the files they name: name to value, in the given order.</summary>
    internal static IReadOnlyDictionary<string, string> Resolve(IReadOnlyList<WorkspaceSecret>? secrets)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        if (secrets is null)
        {
            return values;
        }

        const string field = nameof(WorkspaceCreateRequest.Secrets);
        if (secrets.Count > MaxSecrets)
        {
            throw new PyroInputException("secret_limit", $"a workspace holds at most {MaxSecrets} secrets (got {secrets.Count})", field);
        }

        foreach (var secret in secrets)
        {
            if (secret is null || !IsValidName(secret.Name))
            {
                // The name is not quoted back: a value pasted where the name goes must not be echoed.
                throw new PyroInputException("secret_name_invalid",
                    $"invalid secret name ({secret?.Name?.Length ?? 0} characters): use letters, digits and '_', not starting with a digit, at most 64 characters", field);
            }

            if (values.ContainsKey(secret.Name))
            {
                throw new PyroInputException("secret_duplicate", $"secret {secret.Name} is given twice: give each name once", field);
            }

            if ((secret.Value is null) == (secret.FilePath is null))
            {
                throw new PyroInputException("secret_invalid", $"secret {secret.Name}: give either a value or a file path, not {(secret.Value is null ? "neither" : "both")}", field);
            }

            var value = secret.Value ?? ReadFile(secret.Name, secret.FilePath!);
            var bytes = Encoding.UTF8.GetByteCount(value);
            if (bytes < MinValueBytes || bytes > MaxValueBytes)
            {
                // Shorter values would redact ordinary words from every output.
                throw new PyroInputException("secret_value_invalid",
                    $"secret {secret.Name}: a value is {MinValueBytes} to {MaxValueBytes} bytes (got {bytes})", field);
            }

            if (value.Contains('\0'))
            {
                throw new PyroInputException("secret_value_invalid", $"secret {secret.Name}: a value cannot hold a NUL character (it could not be an environment variable)", field);
            }

            values[secret.Name] = value;
        }

        return values;
    }

    internal static bool IsValidName(string? name) => name is not null && NamePattern().IsMatch(name);

    /// <summary>Writes the file, readable by its owner only from the moment it exists.</summary>
    internal static void Write(string workspaceDir, IReadOnlyDictionary<string, string> secrets)
    {
        if (secrets.Count == 0)
        {
            return;
        }

        var path = Path.Combine(workspaceDir, FileName);
        using var file = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        });
        JsonSerializer.Serialize(file, secrets, InternalJsonContext.Default.IReadOnlyDictionaryStringString);
        file.Flush(flushToDisk: true);
    }

    /// <summary>The workspace's secrets, name to value; empty when it has none.</summary>
    internal static IReadOnlyDictionary<string, string> Read(string workspaceDir)
    {
        var path = Path.Combine(workspaceDir, FileName);
        try
        {
            using var file = File.OpenRead(path);
            return JsonSerializer.Deserialize(file, InternalJsonContext.Default.IReadOnlyDictionaryStringString)
                ?? new Dictionary<string, string>();
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return new Dictionary<string, string>();
        }
        catch (JsonException)
        {
            // Never quote the file: it holds the values.
            throw new WorkspaceStateException("secret_store_damaged", $"the secret store {path} is damaged; delete the workspace and create it again with its secrets");
        }
    }

    /// <summary>The names only, sorted, for status.</summary>
    internal static IReadOnlyList<string> Names(string workspaceDir)
        => File.Exists(Path.Combine(workspaceDir, FileName)) ? [.. Read(workspaceDir).Keys.Order(StringComparer.Ordinal)] : [];

    /// <summary>A redactor for everything that leaves the workspace; <see cref="SecretRedactor.None"/> without secrets.</summary>
    internal static SecretRedactor Redactor(string workspaceDir)
        => File.Exists(Path.Combine(workspaceDir, FileName)) && Read(workspaceDir) is { Count: > 0 } secrets ? new SecretRedactor(secrets) : SecretRedactor.None;

    private static string ReadFile(string name, string path)
    {
        const string field = nameof(WorkspaceCreateRequest.Secrets);
        var info = new FileInfo(path);
        if (!info.Exists || info.Attributes.HasFlag(FileAttributes.Directory))
        {
            throw new PyroInputException("secret_file_not_found", $"secret {name}: {path} is not a file: give the path of a file holding the value", field);
        }

        if (info.Length > MaxValueBytes + 2)
        {
            throw new PyroInputException("secret_value_invalid", $"secret {name}: {path} holds {info.Length} bytes; a value is at most {MaxValueBytes}", field);
        }

        string text;
        try
        {
            text = StrictUtf8.GetString(File.ReadAllBytes(path));
        }
        catch (DecoderFallbackException)
        {
            throw new PyroInputException("secret_value_invalid", $"secret {name}: {path} is not UTF-8 text; give a text file (base64-encode binary values)", field);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new PyroInputException("secret_file_not_found", $"secret {name}: cannot read {path}: {ex.Message}", field);
        }

        return text.EndsWith("\r\n", StringComparison.Ordinal) ? text[..^2] : text.EndsWith('\n') ? text[..^1] : text;
    }

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
    private static partial Regex NamePattern();
}
