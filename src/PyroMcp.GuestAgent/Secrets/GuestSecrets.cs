using System.Text;
using System.Text.RegularExpressions;
using PyroMcp.Protocol.Secrets;

namespace PyroMcp.GuestAgent.Secrets;

/// <summary>
/// The workspace's secrets inside the guest: files <c>NAME</c> (mode 0400) in a directory of
/// their own on a tmpfs, so a value never reaches the workspace's disk, and the values in memory
/// for <c>secret_env</c> and for redacting service logs before they are written. The host sends
/// the whole set after every boot (<see cref="Protocol.AgentOps.SecretsPut"/>).
/// </summary>
internal sealed partial class GuestSecrets(AgentOptions options)
{
    private const int MaxSecrets = 32;
    private const int MaxValueBytes = 64 * 1024;
    private readonly Lock _gate = new();
    private IReadOnlyDictionary<string, string> _values = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>Redacts every value and its encodings; <see cref="SecretRedactor.None"/> until secrets arrive.</summary>
    internal SecretRedactor Redactor { get; private set; } = SecretRedactor.None;

    internal string Directory => options.SecretsDir ?? AgentOptions.DefaultSecretsDir;

    /// <summary>Replaces the set: writes each file, removes those of names no longer in it. Returns how many there are.</summary>
    internal int Put(IReadOnlyDictionary<string, string>? secrets)
    {
        secrets ??= new Dictionary<string, string>();
        if (secrets.Count > MaxSecrets)
        {
            throw new AgentFailure("secret_invalid", $"at most {MaxSecrets} secrets (got {secrets.Count})");
        }

        foreach (var (name, value) in secrets)
        {
            if (!NamePattern().IsMatch(name))
            {
                throw new AgentFailure("secret_invalid", "a secret name must be letters, digits and '_', not starting with a digit, at most 64 characters");
            }

            if (value.Length == 0 || Encoding.UTF8.GetByteCount(value) > MaxValueBytes)
            {
                throw new AgentFailure("secret_invalid", $"secret {name}: a value is 1 to {MaxValueBytes} bytes");
            }
        }

        lock (_gate)
        {
            var directory = Prepare();
            foreach (var (name, value) in secrets)
            {
                var path = Path.Combine(directory, name);
                var temporary = path + ".new";
                File.Delete(temporary);
                // Created 0400 at once: the value is never readable by anyone else, not even for a moment.
                using (var file = new FileStream(temporary, new FileStreamOptions
                {
                    Mode = FileMode.CreateNew,
                    Access = FileAccess.Write,
                    UnixCreateMode = UnixFileMode.UserRead,
                }))
                {
                    file.Write(Encoding.UTF8.GetBytes(value));
                }

                File.Move(temporary, path, overwrite: true);
            }

            foreach (var stale in System.IO.Directory.EnumerateFileSystemEntries(directory))
            {
                if (!secrets.ContainsKey(Path.GetFileName(stale)))
                {
                    File.Delete(stale);
                }
            }

            _values = new Dictionary<string, string>(secrets, StringComparer.Ordinal);
            Redactor = secrets.Count == 0 ? SecretRedactor.None : new SecretRedactor(secrets);
            return secrets.Count;
        }
    }

    /// <summary>Adds the requested secrets to a process environment: variable name to secret name.</summary>
    internal void AddTo(Dictionary<string, string> env, IReadOnlyDictionary<string, string>? secretEnv)
    {
        if (secretEnv is null)
        {
            return;
        }

        var values = _values;
        foreach (var (variable, name) in secretEnv)
        {
            if (variable.Length == 0 || variable.Contains('=') || variable.Contains('\0'))
            {
                throw new AgentFailure("bad_env", $"invalid environment variable name '{variable}'");
            }

            env[variable] = values.TryGetValue(name, out var value)
                ? value
                : throw new AgentFailure("secret_not_found", $"the guest holds no secret '{name}'");
        }
    }

    /// <summary>
    /// The secrets directory, made ready: the default one gets a tmpfs of its own (mode 0700); a
    /// path that is not a plain directory (a link someone left) is replaced.
    /// </summary>
    private string Prepare()
    {
        var directory = Directory;
        var info = new DirectoryInfo(directory);
        if (info.Exists && info.LinkTarget is not null || File.Exists(directory))
        {
            File.Delete(directory);
        }

        System.IO.Directory.CreateDirectory(directory);
        if (options.SecretsDir is null && !IsTmpfs(directory))
        {
            var errno = Interop.MountTmpfs(directory, "mode=0700,size=4m");
            if (errno != 0)
            {
                throw new AgentFailure("secret_store_failed", $"cannot mount a tmpfs on {directory} (errno {errno}): secrets are never written to the disk");
            }
        }

        File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return directory;
    }

    private static bool IsTmpfs(string directory)
        => File.ReadAllLines("/proc/self/mounts").Any(l => l.Split(' ') is [_, var target, "tmpfs", ..] && target == directory);

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
    private static partial Regex NamePattern();
}
