using System.Diagnostics;
using System.Text;
using System.Text.Json;
using PyroMcp.Server;
using PyroMcp.TestKit;

namespace PyroMcp.GuestTests;

/// <summary>
/// A canary secret through a whole workspace life, on a state directory of its own: exec, shell
/// and service use it, the guest prints it in every encoding, it is read back through files and a
/// diff, then snapshot, reset, the offline disk tools on the stopped workspace (list, read, an
/// exported image checked with e2fsck and searched for a service log's marker), start, export
/// and delete. Every output and every file pyro wrote is searched for it: only the secret store
/// may hold it.
/// </summary>
public sealed class SecretTests : GuestTest
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);
    private const string Redacted = "[REDACTED:CANARY]";

    private readonly string _canary = "pyro-canary-" + Guid.NewGuid().ToString("N");
    private readonly List<string> _outputs = [];
    private Dictionary<string, string> _env = [];

    [Fact]
    public async Task ACanarySecretIsUsableInTheGuestAndFoundNowhereOnTheHostOutsideItsStore()
    {
        var began = DateTime.UtcNow;
        var state = Path.Combine(HostDir, "state");
        var run = Path.Combine(HostDir, "run");
        _env = new() { ["PYRO_STATE_DIR"] = state, ["PYRO_RUN_DIR"] = run };
        var tokenFile = Path.Combine(HostDir, "token.txt");
        await File.WriteAllTextAsync(tokenFile, _canary + "\n");

        // Bad secrets are refused before anything boots, without quoting a value back.
        var bad = await Cli(false, "workspace", "create", "debian:12", "--secret", "no-equals-" + _canary, "--json");
        Assert.Equal("secret_invalid", bad.Json.GetProperty("error").GetProperty("code").GetString());
        var shortValue = await Cli(false, "workspace", "create", "debian:12", "--secret", "X=abc", "--json");
        Assert.Equal("secret_value_invalid", shortValue.Json.GetProperty("error").GetProperty("code").GetString());

        var created = await Cli(true, "workspace", "create", "debian:12", "--secret-file", $"CANARY={tokenFile}", "--secret", "OTHER=other-value-1234", "--json");
        var id = created.Json.GetProperty("workspace_id").GetString()!;
        DeleteAfterwards(id, _env);
        Assert.Equal(["CANARY", "OTHER"], created.Json.GetProperty("secrets").EnumerateArray().Select(e => e.GetString()));
        Assert.Contains("Secrets: CANARY, OTHER", (await Cli(true, "workspace", "status", id)).Stdout);

        // In the guest: a 0400 file on a tmpfs, whose value is the canary, and one call's environment.
        var facts = await Exec(id, ["--secret-env", "CANARY=TOKEN"],
            "stat -c '%a %U' /run/pyro-secrets/CANARY; stat -f -c %T /run/pyro-secrets; " +
            "test \"$TOKEN\" = \"$(cat /run/pyro-secrets/CANARY)\" && echo same-value; " +
            "echo \"plain $TOKEN\"; printf %s \"$TOKEN\" | base64 -w0; echo; printf 'xy%s' \"$TOKEN\" | base64 -w0; echo; " +
            "printf %s \"$TOKEN\" | od -An -tx1 | tr -d ' \\n'; echo; echo \"$TOKEN\" >&2");
        Assert.Contains("400 root", facts.Stdout);
        Assert.Contains("tmpfs", facts.Stdout);
        Assert.Contains("same-value", facts.Stdout);
        Assert.Contains("plain " + Redacted, facts.Stdout);
        Assert.Equal(4, CountOf(facts.Stdout, Redacted));
        Assert.Contains(Redacted, facts.Stderr);
        var unmapped = await Exec(id, [], "echo \"[${TOKEN:-unset}] [${CANARY:-unset}]\"");
        Assert.Contains("[unset] [unset]", unmapped.Stdout);
        await Cli(false, "workspace", "exec", id, "--secret-env", "NOPE", "--json", "--", "true");

        // A value typed into a command line is kept out of the history.
        await Exec(id, [], $"echo typed {_canary} >/dev/null");
        var history = await Cli(true, "workspace", "logs", id, "--json");
        Assert.Contains(history.Json.EnumerateArray(), c => c.GetProperty("command").GetString()!.Contains(Redacted, StringComparison.Ordinal));

        // A shell: the value whole, and split across two writes of the terminal, is never shown.
        var shell = (await Cli(true, "workspace", "shell", "open", id, "--secret-env", "CANARY", "--json")).Json.GetProperty("shell_id").GetString()!;
        await Cli(true, "workspace", "shell", "write", id, shell, "--input", "echo \"whole $CANARY\"; printf 'split %s' \"${CANARY:0:20}\"; sleep 2; printf '%s end-%s\\n' \"${CANARY:20}\" $((6*7))");
        var shown = await ReadShellUntilAsync(id, shell, "end-42");
        Assert.Contains("whole " + Redacted, shown);
        Assert.Contains("split " + Redacted + " end-42", shown);
        await Cli(true, "workspace", "shell", "close", id, shell);

        // A service: its logs are redacted on the way out, and in the guest before they reach its disk.
        await Cli(true, "workspace", "service", "start", id, "web", "--secret-env", "CANARY=API_TOKEN", "--ready-file", ".web-ready", "--",
            "sh", "-c", "echo \"svc $API_TOKEN\"; printf %s \"$API_TOKEN\" | base64; touch .web-ready; exec sleep 600");
        var logs = (await Cli(true, "workspace", "service", "logs", id, "web", "--json")).Json.GetProperty("stdout").GetString()!;
        Assert.Contains("svc " + Redacted, logs);
        var onDisk = await Exec(id, [], "cat /var/lib/pyro/services/web/stdout.log | grep -c REDACTED:CANARY; rm -f .web-ready");
        Assert.StartsWith("2", onDisk.Stdout.Trim());

        // Files and the diff: a file holding the value (on a tmpfs in the guest, so it never reaches the disk).
        await Exec(id, [], "mkdir -p /workspace/mem && mount -t tmpfs tmpfs /workspace/mem && cat /run/pyro-secrets/CANARY > /workspace/mem/leak.txt");
        var read = await Cli(true, "workspace", "file", "read", id, "mem/leak.txt", "--content-only");
        Assert.Contains(Redacted, read.Stdout);
        var diff = await Cli(true, "workspace", "diff", id, "--json");
        Assert.Contains(Redacted, diff.Json.GetProperty("patch").GetString());
        await Exec(id, [], "umount /workspace/mem && rmdir /workspace/mem");

        // MCP: the same value mapped by secret_env, redacted in the tool result.
        var options = new PyroOptions
        {
            StateDir = state, RunDir = run, AgentPath = Repo.AgentPath,
            SupervisorPath = Repo.SupervisorPath,
        };
        await using (var mcp = await InProcessMcp.StartAsync("workspace-full", new McpServerPolicy { AllowedPaths = [HostDir] }, options))
        {
            var result = await mcp.OkAsync("workspace_exec", new() { ["workspace_id"] = id, ["command"] = "echo mcp $T", ["secret_env"] = new Dictionary<string, object?> { ["CANARY"] = "T" } });
            _outputs.Add(result.ToString());
            Assert.Contains("mcp " + Redacted, result.GetProperty("stdout").GetString());
            var missing = await mcp.ErrorAsync("workspace_exec", "secret_not_found", new() { ["workspace_id"] = id, ["command"] = "true", ["secret_env"] = new[] { "NOPE" } });
            _outputs.Add(missing);
        }

        // No process pyro started carries a value in its arguments or environment.
        var processes = PyroProcesses(id, state);
        Assert.NotEmpty(processes);
        foreach (var pid in processes)
        {
            _outputs.Add(SafeRead($"/proc/{pid}/cmdline"));
            _outputs.Add(SafeRead($"/proc/{pid}/environ"));
        }

        // The rest of the life: snapshot, reset, stop and start; the secret is back after each boot.
        await Cli(true, "workspace", "snapshot", "create", id, "clean");
        await Cli(true, "workspace", "reset", id);
        Assert.Contains("same", (await Exec(id, ["--secret-env", "CANARY"], "test \"$CANARY\" = \"$(cat /run/pyro-secrets/CANARY)\" && echo same")).Stdout);

        // Offline disk tools on the stopped workspace: its files are there, its runtime state
        // (the agent's service records and logs, the secrets' tmpfs) is not, and the exported
        // image is a clean ext4 that the canary search below covers too.
        var marker = "PYRO-DISK-MARKER-" + Guid.NewGuid().ToString("N")[..12];
        var keep = "PYRO-DISK-KEEP-" + Guid.NewGuid().ToString("N")[..12];
        await Exec(id, [], $"mkdir -p tree/a/b && echo {keep} > tree/a/b/deep.txt && printf 'x\\n' > \"$(printf 'new\\nline')\" && sync");
        await Cli(true, "workspace", "service", "start", id, "marker", "--", "sh", "-c", $"echo {marker}; exec sleep 1000");
        var running = await Cli(false, "workspace", "disk", "list", id, "--json");
        Assert.Equal("workspace_not_stopped", running.Json.GetProperty("error").GetProperty("code").GetString());
        await Cli(true, "workspace", "stop", id);
        var listed = await Cli(true, "workspace", "disk", "list", id, "--recursive");
        Assert.Contains("tree/a/b/deep.txt", listed.Stdout);
        Assert.Contains("new?line", listed.Stdout);
        Assert.Equal(keep + "\n", (await Cli(true, "workspace", "disk", "read", id, "tree/a/b/deep.txt", "--content-only")).Stdout);
        var scrubbed = await Cli(false, "workspace", "disk", "list", id, "/var/lib/pyro", "--json");
        Assert.Equal("disk_path_scrubbed", scrubbed.Json.GetProperty("error").GetProperty("code").GetString());
        var exportDir = Path.Combine(HostDir, "exported");
        Directory.CreateDirectory(exportDir);
        var image = Path.Combine(exportDir, "disk.ext4");
        var exported = await Cli(true, "workspace", "disk", "export", id, "--output", image);
        Assert.StartsWith($"[workspace-disk-export] workspace_id={id} output=", exported.Stdout);
        var fsck = await Processes.RunAsync("/usr/sbin/e2fsck", ["-fn", image]);
        Assert.True(fsck.ExitCode == 0, fsck.ToString());
        var markers = CountIn(image, Encoding.ASCII.GetBytes(marker));
        var kept = CountIn(image, Encoding.ASCII.GetBytes(keep));
        Figures.Record("disk export of a real guest", $"{markers} service-log marker occurrences in the exported image, kept file found {kept} times, e2fsck -fn exit {fsck.ExitCode}");
        Assert.Equal(0, markers);
        Assert.True(kept > 0, "the search would not find a marker that is there");

        // The disk boots again after it was read, with its secret back.
        await Cli(true, "workspace", "start", id);
        Assert.Contains("same", (await Exec(id, ["--secret-env", "CANARY"], "test \"$CANARY\" = \"$(cat /run/pyro-secrets/CANARY)\" && cat tree/a/b/deep.txt && echo same")).Stdout);
        await Exec(id, [], "mkdir -p out && echo exported > out/a.txt");
        await Cli(true, "workspace", "export", id, "out", "--output", Path.Combine(exportDir, "out"));
        await Cli(true, "workspace", "stop", id);

        // Everything pyro wrote (state, run and export directories, the guest's disk and snapshots
        // among them) and everything it returned; the secret store is the one place allowed.
        var store = Path.Combine(state, "workspaces", id, "secrets.json");
        Assert.True(File.Exists(store), "the secret store is missing");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(store));
        var before = SearchAll([state, run, exportDir], store);
        await Cli(true, "workspace", "delete", id);
        Forget(id);
        var after = SearchAll([state, run, exportDir], store);
        // The shared caches (environments, runtime bundles) too: whatever in them was written during this test.
        var defaults = new PyroOptions();
        var cached = SearchAll([defaults.EnvironmentCacheDir, defaults.RuntimeCacheDir], store, since: began);
        after = (after.Places + cached.Places, [.. after.Hits, .. cached.Hits]);
        var places = before.Places + after.Places;
        var hits = before.Hits.Concat(after.Hits).ToList();
        Figures.Record("secret canary", $"{places} places searched (files pyro wrote, outputs, process arguments and environments), {hits.Count} canary hits outside the secret store");
        Assert.True(hits.Count == 0, "the canary leaked into:\n" + string.Join('\n', hits));
        Assert.False(File.Exists(store), "delete left the secret store behind");
    }

    private async Task<ProcessResult> Cli(bool ok, params string[] args)
    {
        var result = await PyroCli.RunAsync(args, _env, TimeSpan.FromMinutes(5));
        _outputs.Add(result.Stdout);
        _outputs.Add(result.Stderr);
        Assert.True(ok ? result.ExitCode == 0 : result.ExitCode != 0, $"pyro {string.Join(' ', args)}: {result}");
        return result;
    }

    private async Task<(string Stdout, string Stderr)> Exec(string id, string[] flags, string script)
    {
        var result = await Cli(true, ["workspace", "exec", id, .. flags, "--json", "--timeout-seconds", "120", "--", "bash", "-c", script]);
        return (result.Json.GetProperty("stdout").GetString()!, result.Json.GetProperty("stderr").GetString()!);
    }

    private async Task<string> ReadShellUntilAsync(string id, string shell, string text)
    {
        var seen = "";
        long cursor = 0;
        var clock = Stopwatch.StartNew();
        while (!seen.Contains(text, StringComparison.Ordinal))
        {
            Assert.True(clock.Elapsed < Deadline, "the shell never showed " + text + ": " + seen);
            var read = (await Cli(true, "workspace", "shell", "read", id, shell, "--cursor", cursor.ToString(System.Globalization.CultureInfo.InvariantCulture), "--plain", "--json")).Json;
            seen += read.GetProperty("output").GetString();
            cursor = read.GetProperty("next_cursor").GetInt64();
            // No read may show the first part of the value while the rest is still being written.
            Assert.DoesNotContain(_canary[..20], seen);
            await Task.Delay(300);
        }

        return seen;
    }

    private static int CountOf(string text, string part)
    {
        var count = 0;
        for (var at = text.IndexOf(part, StringComparison.Ordinal); at >= 0; at = text.IndexOf(part, at + 1, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    /// <summary>The supervisor, QEMU and passt of the workspace: processes whose command line names its state directory or id.</summary>
    private static List<int> PyroProcesses(string id, string state)
    {
        var found = new List<int>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(dir), out var pid) && SafeRead(Path.Combine(dir, "cmdline")) is { } line
                && (line.Contains(state, StringComparison.Ordinal) || line.Contains(id, StringComparison.Ordinal)))
            {
                found.Add(pid);
            }
        }

        return found;
    }

    private static string SafeRead(string path)
    {
        try
        {
            return Encoding.Latin1.GetString(File.ReadAllBytes(path)).Replace('\0', ' ');
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    /// <summary>The canary as raw text, base64 and hex, in every file under <paramref name="roots"/> but the store, and in every output kept.</summary>
    private (int Places, List<string> Hits) SearchAll(IEnumerable<string> roots, string store, DateTime? since = null)
    {
        var value = Encoding.UTF8.GetBytes(_canary);
        byte[][] forms =
        [
            value,
            Encoding.ASCII.GetBytes(Convert.ToBase64String(value)[..40]),
            Encoding.ASCII.GetBytes(Convert.ToHexString(value).ToLowerInvariant()),
        ];
        var places = 0;
        var hits = new List<string>();
        foreach (var root in roots.Where(Directory.Exists))
        {
            foreach (var file in Directory.EnumerateFiles(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }))
            {
                var info = new FileInfo(file);
                if (file == store || info.LinkTarget is not null || file.EndsWith(".sock", StringComparison.Ordinal) || (since is { } from && info.LastWriteTimeUtc < from))
                {
                    continue;
                }

                places++;
                if (FileHolds(file, forms))
                {
                    hits.Add(file);
                }
            }
        }

        foreach (var (output, i) in _outputs.Select((o, i) => (o, i)))
        {
            places++;
            var bytes = Encoding.UTF8.GetBytes(output);
            if (forms.Any(f => bytes.AsSpan().IndexOf(f) >= 0))
            {
                hits.Add($"output {i}: {output[..Math.Min(200, output.Length)]}");
            }
        }

        _outputs.Clear();
        return (places, hits);
    }

    /// <summary>Occurrences of <paramref name="needle"/> in a (sparse, possibly large) file, read in overlapping chunks.</summary>
    private static int CountIn(string file, byte[] needle)
    {
        var count = 0;
        var buffer = new byte[(4 << 20) + needle.Length];
        var carry = 0;
        using var stream = File.OpenRead(file);
        int n;
        while ((n = stream.Read(buffer, carry, buffer.Length - carry)) > 0)
        {
            var length = carry + n;
            var last = 0;
            int at;
            while ((at = buffer.AsSpan(last, length - last).IndexOf(needle)) >= 0)
            {
                count++;
                last += at + needle.Length;
            }

            carry = Math.Min(needle.Length - 1, length - last);
            buffer.AsSpan(length - carry, carry).CopyTo(buffer);
        }

        return count;
    }

    private static bool FileHolds(string path, byte[][] forms)
    {
        const int Chunk = 4 * 1024 * 1024;
        var overlap = forms.Max(f => f.Length);
        var buffer = new byte[Chunk + overlap];
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var kept = 0;
            int read;
            while ((read = file.Read(buffer, kept, Chunk)) > 0)
            {
                var length = kept + read;
                foreach (var form in forms)
                {
                    if (buffer.AsSpan(0, length).IndexOf(form) >= 0)
                    {
                        return true;
                    }
                }

                kept = Math.Min(overlap, length);
                buffer.AsSpan(length - kept, kept).CopyTo(buffer);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // A file that went away between the listing and the read holds nothing now.
        }

        return false;
    }
}
