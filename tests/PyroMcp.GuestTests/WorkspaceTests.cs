using System.Diagnostics;
using System.Formats.Tar;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace PyroMcp.GuestTests;

/// <summary><c>pyro workspace ...</c> against real guests: every command, its failures, concurrency, faults.</summary>
[TestCaseOrderer(LaneOrderer.Name, LaneOrderer.Assembly)]
public sealed class WorkspaceTests(Lanes lanes) : GuestTest, IClassFixture<Lanes>
{
    public override Task InitializeAsync()
    {
        lanes.Begin(GetType(), key => key == nameof(ExpiredWorkspacesAreReapedBySupervisorOrByReap) ? ExpiryLaneAsync : throw new ArgumentException($"no lane {key}", nameof(key)));
        return base.InitializeAsync();
    }

    private async Task<string> CreateAsync(params string[] extra)
    {
        var id = await CreateWorkspaceAsync(extra);
        Assert.Matches("^[0-9a-f]{12}$", id);
        return id;
    }

    private static Task<ProcessResult> Ok(params string[] args) => PyroCli.OkAsync(args);

    private string Seed()
    {
        var seed = Path.Combine(HostDir, "repo");
        Directory.CreateDirectory(Path.Combine(seed, "src"));
        File.WriteAllText(Path.Combine(seed, "note.txt"), "hello from the seed\n");
        File.WriteAllText(Path.Combine(seed, "src", "app.py"), "def main():\n    print('v1')\n\nmain()\n");
        File.WriteAllText(Path.Combine(seed, "remove-me.txt"), "short-lived\n");
        File.CreateSymbolicLink(Path.Combine(seed, "link-to-note"), "note.txt");
        return seed;
    }

    /// <summary>
    /// One seeded, named and labelled guest through its whole life, for six scenarios that used to
    /// boot a workspace each: created, exec'd, logged and listed while its command log is fresh; run
    /// beside a second workspace; snapshots and resets; a failed sync and reset; files, sync,
    /// patch, diff and export; deleted. Each scenario after the first starts from the seed's
    /// baseline (the resets return it there), so none sees another's files, and the counts that
    /// only a fresh workspace has (command log, reset count) are checked where it is fresh.
    /// </summary>
    [Fact]
    public async Task OneSeededWorkspaceThroughCreateExecSnapshotsResetsFailuresFilesAndDelete()
    {
        var id = await CreateAsync("--seed-path", Seed(), "--name", "wt-life", "--label", "team=core", "--label", "tier=test");
        await CreateExecLogsStatusAndListAsync(id);
        await TwoClientsExecAtOnceAndWorkspacesRunSideBySideAsync(id);
        await SnapshotsAndResetGiveAFreshSandboxWithTheSameIdAndBaselineAsync(id);
        await FailedSyncAndResetSayWhatStateTheWorkspaceIsInAsync(id);
        await FilesSyncPatchDiffAndExportAsync(id);
        await DeleteAsync(id);
    }

    /// <summary>Status, exec, logs and list of <paramref name="id"/> (named wt-life, labelled team=core) while its command log is empty.</summary>
    private static async Task CreateExecLogsStatusAndListAsync(string id)
    {
        var status = (await Ok("workspace", "status", "wt-life", "--json")).Json;
        Assert.Equal(id, status.GetProperty("workspace_id").GetString());
        Assert.Equal("running", status.GetProperty("state").GetString());
        Assert.Equal("/workspace", status.GetProperty("workspace_path").GetString());
        Assert.Equal("directory", status.GetProperty("seed_mode").GetString());
        Assert.Equal("guest_virtio_serial", status.GetProperty("execution_mode").GetString());
        // The status block under the reference's labels, with the channel pyro really uses.
        var block = (await Ok("workspace", "status", id)).Stdout;
        Assert.Contains($"Workspace ID: {id}\n", block);
        Assert.Contains("Environment: debian:12\nState: running\nWorkspace: /workspace\nWorkspace seed: directory from ", block);
        Assert.Contains("\nNetwork policy: off\nExecution mode: guest_virtio_serial\nResources: 1 vCPU / 1024 MiB", block);
        Assert.Contains("\nCommand count: 0\nReset count: 0\n", block);

        var exec = await PyroCli.RunAsync("workspace", "exec", id, "--", "cat", "note.txt");
        Assert.Equal(0, exec.ExitCode);
        Assert.Equal("hello from the seed\n", exec.Stdout);
        Assert.Matches($@"\[workspace-exec\] workspace_id={id} sequence=1 cwd=/workspace execution_mode=guest_virtio_serial exit_code=0 duration_ms=\d+", exec.Stderr);
        Assert.Equal("note.txt", (await Ok("workspace", "exec", id, "--", "readlink", "link-to-note")).Stdout.Trim());

        var failing = await PyroCli.RunAsync("workspace", "exec", "wt-life", "--cwd", "src", "--", "sh", "-c", "pwd; exit 9");
        Assert.Equal(9, failing.ExitCode);
        Assert.Equal("/workspace/src\n", failing.Stdout);

        var logs = (await Ok("workspace", "logs", id, "--json")).Json.EnumerateArray().ToList();
        Assert.Equal([1, 2, 3], logs.Select(l => l.GetProperty("sequence").GetInt32()));
        Assert.Equal("cat note.txt", logs[0].GetProperty("command").GetString());
        Assert.Equal(9, logs[2].GetProperty("exit_code").GetInt32());
        Assert.Equal("/workspace/src", logs[2].GetProperty("cwd").GetString());
        Assert.Contains("$ cat note.txt", (await Ok("workspace", "logs", id)).Stdout);

        var listed = (await Ok("workspace", "list", "--label", "team=core", "--json")).Json.EnumerateArray().Select(w => w.GetProperty("workspace_id").GetString()).ToList();
        Assert.Contains(id, listed);
        Assert.Empty((await Ok("workspace", "list", "--label", "team=other", "--json")).Json.EnumerateArray());
    }

    /// <summary>Deletes <paramref name="id"/> by its name wt-life: gone from status and from the host.</summary>
    private async Task DeleteAsync(string id)
    {
        await Ok("workspace", "delete", "wt-life");
        Forget(id);
        var gone = await PyroCli.RunAsync("workspace", "status", id);
        Assert.Equal(2, gone.ExitCode);
        Assert.Contains("workspace_not_found", gone.Stderr);
        Assert.False(Directory.Exists(Path.Combine(Repo.StateDir, "workspaces", id)));
    }

    /// <summary>Files, sync, patch, diff and export on <paramref name="id"/>, seeded with <see cref="Seed"/> and at its baseline.</summary>
    private async Task FilesSyncPatchDiffAndExportAsync(string id)
    {
        // Binary-safe write and read.
        var binary = Path.Combine(HostDir, "all-bytes.bin");
        File.WriteAllBytes(binary, Enumerable.Range(0, 256).Select(i => (byte)i).ToArray());
        await Ok("workspace", "file", "write", id, "data/all-bytes.bin", "--file", binary);
        using (var read = PyroCli.Start(["workspace", "file", "read", id, "data/all-bytes.bin", "--content-only"]))
        {
            read.StandardInput.Close();
            using var bytes = new MemoryStream();
            await read.StandardOutput.BaseStream.CopyToAsync(bytes);
            await read.WaitForExitAsync();
            Assert.Equal(File.ReadAllBytes(binary), bytes.ToArray());
        }

        await Ok("workspace", "file", "write", id, "note.txt", "--text", "hello, changed\n");
        Assert.Contains("hello, changed", (await Ok("workspace", "file", "read", id, "note.txt")).Stdout);
        var listing = (await Ok("workspace", "file", "list", id, "--json")).Json.EnumerateArray().ToDictionary(e => e.GetProperty("path").GetString()!, e => e.GetProperty("type").GetString());
        Assert.Equal("directory", listing["src"]);
        Assert.Equal("symlink", listing["link-to-note"]);

        // Sync push into a subdirectory.
        var changes = Path.Combine(HostDir, "changes");
        Directory.CreateDirectory(changes);
        File.WriteAllText(Path.Combine(changes, "extra.txt"), "pushed later\n");
        var push = await Ok("workspace", "sync", "push", id, changes, "--dest", "src", "--json");
        Assert.Equal(1, push.Json.GetProperty("entries").GetInt64());
        Assert.Equal(13, push.Json.GetProperty("bytes").GetInt64());
        Assert.Equal("directory", push.Json.GetProperty("mode").GetString());
        Assert.Matches($@"\[workspace-sync\] workspace_id={id} mode=directory source={Regex.Escape(changes)} destination=/workspace/src entry_count=1 bytes_written=13 execution_mode=guest_virtio_serial skipped=0 duration_ms=\d+\n", push.Stderr);
        Assert.Equal("pushed later\n", (await Ok("workspace", "exec", id, "--", "cat", "src/extra.txt")).Stdout);

        // A patch over several files: modify, create, delete.
        var patch = Path.Combine(HostDir, "change.patch");
        File.WriteAllText(patch, """
            --- a/src/app.py
            +++ b/src/app.py
            @@ -1,4 +1,4 @@
             def main():
            -    print('v1')
            +    print('v2')
             
             main()
            --- /dev/null
            +++ b/docs/new.md
            @@ -0,0 +1,2 @@
            +# New
            +created by a patch
            --- a/remove-me.txt
            +++ /dev/null
            @@ -1 +0,0 @@
            -short-lived

            """);
        var applied = (await Ok("workspace", "patch", "apply", id, "--patch-file", patch, "--json")).Json;
        Assert.Equal(1, applied.GetProperty("created").GetInt32());
        Assert.Equal(1, applied.GetProperty("modified").GetInt32());
        Assert.Equal(1, applied.GetProperty("deleted").GetInt32());
        Assert.Equal("    print('v2')\n", (await Ok("workspace", "exec", id, "--", "grep", "print", "src/app.py")).Stdout);
        Assert.Equal(1, (await PyroCli.RunAsync("workspace", "exec", id, "--", "test", "-e", "remove-me.txt")).ExitCode);
        Assert.Equal("# New\ncreated by a patch\n", (await Ok("workspace", "file", "read", id, "docs/new.md", "--content-only")).Stdout);

        // A patch whose second hunk does not apply changes nothing, and says which hunk.
        var bad = Path.Combine(HostDir, "bad.patch");
        File.WriteAllText(bad, """
            --- a/note.txt
            +++ b/note.txt
            @@ -1 +1 @@
            -hello, changed
            +hello, patched
            --- a/src/app.py
            +++ b/src/app.py
            @@ -1,2 +1,2 @@
             def main():
            -    print('v9')
            +    print('v10')

            """);
        var refused = await PyroCli.RunAsync("workspace", "patch", "apply", id, "--patch-file", bad);
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("hunk 1 of src/app.py", refused.Stderr);
        Assert.Contains("Nothing was changed", refused.Stderr);
        Assert.Equal("hello, changed\n", (await Ok("workspace", "file", "read", id, "note.txt", "--content-only")).Stdout);

        // Diff against the baseline: counts and a unified diff of the text changes.
        var diff = (await Ok("workspace", "diff", id, "--json")).Json;
        // added: data/, data/all-bytes.bin, docs/, docs/new.md, src/extra.txt; modified: note.txt, src/app.py.
        Assert.Equal(5, diff.GetProperty("added").GetInt32());
        Assert.Equal(2, diff.GetProperty("modified").GetInt32());
        Assert.Equal(1, diff.GetProperty("deleted").GetInt32());
        Assert.Equal(0, diff.GetProperty("type_changed").GetInt32());
        Assert.Equal(5, diff.GetProperty("text_patched").GetInt32());
        Assert.Equal(1, diff.GetProperty("non_text").GetInt32());
        var unified = diff.GetProperty("patch").GetString()!;
        Assert.Contains("-    print('v1')\n+    print('v2')", unified);
        Assert.Contains("+++ b/docs/new.md", unified);
        Assert.Contains("diff --git a/data/all-bytes.bin b/data/all-bytes.bin\nnew file mode 100644\nindex 0000000000000000000000000000000000000000..", unified);
        Assert.Contains("GIT binary patch\nliteral 256\n", unified);
        Assert.Equal(8, diff.GetProperty("total").GetInt32());
        var human = await Ok("workspace", "diff", id);
        Assert.Matches($@"\[workspace-diff\] workspace_id={id} total=8 added=5 modified=2 deleted=1 type_changed=0 text_patched=5 non_text=1\n", human.Stderr);
        Assert.Contains("+++ b/docs/new.md", human.Stdout);

        // Export a file and a directory; export never overwrites.
        var noteOut = Path.Combine(HostDir, "out", "note.txt");
        var noteExport = await Ok("workspace", "export", id, "note.txt", "--output", noteOut);
        Assert.Equal("hello, changed\n", File.ReadAllText(noteOut));
        Assert.Matches($@"\[workspace-export\] workspace_id={id} workspace_path=/workspace/note.txt output_path={Regex.Escape(noteOut)} artifact_type=file entry_count=1 bytes_written=15 execution_mode=guest_virtio_serial skipped=0 duration_ms=\d+\n", noteExport.Stderr);
        var srcOut = Path.Combine(HostDir, "out", "src");
        var srcExport = await Ok("workspace", "export", id, "src", "--output", srcOut, "--json");
        Assert.Equal("directory", srcExport.Json.GetProperty("artifact_type").GetString());
        Assert.Matches($@"\[workspace-export\] workspace_id={id} workspace_path=/workspace/src output_path={Regex.Escape(srcOut)} artifact_type=directory entry_count=\d+ bytes_written=\d+ ", srcExport.Stderr);
        Assert.Equal("pushed later\n", File.ReadAllText(Path.Combine(srcOut, "extra.txt")));
        Assert.Contains("print('v2')", File.ReadAllText(Path.Combine(srcOut, "app.py")));
        var again = await PyroCli.RunAsync("workspace", "export", id, "note.txt", "--output", noteOut);
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("output_exists", again.Stderr);
    }

    /// <summary>Snapshots and resets of <paramref name="id"/>, seeded with <see cref="Seed"/>, never reset before; ends at its baseline.</summary>
    private static async Task SnapshotsAndResetGiveAFreshSandboxWithTheSameIdAndBaselineAsync(string id)
    {
        Assert.Equal(0, (await Ok("workspace", "status", id, "--json")).Json.GetProperty("reset_count").GetInt32());
        await Ok("workspace", "exec", id, "--", "sh", "-c", "echo step1 > state.txt");
        var created = await Ok("workspace", "snapshot", "create", id, "checkpoint", "--json");
        var snap = created.Json;
        Assert.Equal("checkpoint", snap.GetProperty("name").GetString());
        Assert.Equal("named", snap.GetProperty("kind").GetString());
        Assert.Matches($@"\[workspace-snapshot-create\] snapshot_name=checkpoint kind=named entry_count={snap.GetProperty("entries").GetInt64()} bytes_written={snap.GetProperty("bytes").GetInt64()}\n", created.Stderr);
        await Ok("workspace", "exec", id, "--", "sh", "-c", "echo step2 > state.txt; rm note.txt; echo outside > /root/outside.txt");
        Assert.Contains("checkpoint", (await Ok("workspace", "snapshot", "list", id)).Stdout);

        var resetRun = await Ok("workspace", "reset", id, "--snapshot", "checkpoint", "--json");
        var reset = resetRun.Json;
        Assert.Equal(id, reset.GetProperty("workspace_id").GetString());
        var restored = reset.GetProperty("reset");
        Assert.Equal("checkpoint", restored.GetProperty("snapshot").GetString());
        Assert.Equal("named", restored.GetProperty("kind").GetString());
        // What the reset restored is what the snapshot held.
        Assert.Equal(snap.GetProperty("entries").GetInt64(), restored.GetProperty("entries").GetInt64());
        Assert.Equal(snap.GetProperty("bytes").GetInt64(), restored.GetProperty("bytes").GetInt64());
        Assert.Matches($@"\[workspace-reset\] workspace_id={id} snapshot=checkpoint kind=named destination=/workspace entry_count={restored.GetProperty("entries").GetInt64()} bytes_written={restored.GetProperty("bytes").GetInt64()} reset_count=1\n", resetRun.Stderr);
        Assert.Equal(1, reset.GetProperty("reset_count").GetInt32());
        Assert.Equal(0, reset.GetProperty("command_count").GetInt32());
        Assert.Equal("step1\n", (await Ok("workspace", "exec", id, "--", "cat", "state.txt")).Stdout);
        Assert.Equal("hello from the seed\n", (await Ok("workspace", "exec", id, "--", "cat", "note.txt")).Stdout);
        // A fresh sandbox: what was written outside /workspace is gone too.
        Assert.Equal(1, (await PyroCli.RunAsync("workspace", "exec", id, "--", "test", "-e", "/root/outside.txt")).ExitCode);

        var toBaseline = await Ok("workspace", "reset", id);
        Assert.StartsWith($"Workspace reset from snapshot: baseline (baseline)\nWorkspace ID: {id}\n", toBaseline.Stdout);
        Assert.Contains("\nReset count: 2\n", toBaseline.Stdout);
        Assert.Matches($@"\[workspace-reset\] workspace_id={id} snapshot=baseline kind=baseline destination=/workspace entry_count=\d+ bytes_written=\d+ reset_count=2\n", toBaseline.Stderr);
        Assert.Equal(2, (await Ok("workspace", "status", id, "--json")).Json.GetProperty("reset_count").GetInt32());
        Assert.Equal(1, (await PyroCli.RunAsync("workspace", "exec", id, "--", "test", "-e", "state.txt")).ExitCode);
        var diff = (await Ok("workspace", "diff", id, "--json")).Json;
        Assert.Equal(0, diff.GetProperty("added").GetInt32() + diff.GetProperty("modified").GetInt32() + diff.GetProperty("deleted").GetInt32());

        await Ok("workspace", "snapshot", "delete", id, "checkpoint");
        var missing = await PyroCli.RunAsync("workspace", "reset", id, "--snapshot", "checkpoint");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("snapshot_not_found", missing.Stderr);
    }

    /// <summary>
    /// Two clients exec at once in a new workspace while <paramref name="second"/> (a running
    /// workspace whose command log is not checked) runs beside it; the new one is deleted after.
    /// </summary>
    private async Task TwoClientsExecAtOnceAndWorkspacesRunSideBySideAsync(string second)
    {
        var first = await CreateAsync();

        static string[] Loop(string id, string tag) => ["workspace", "exec", id, "--", "sh", "-c", $"for i in 1 2 3 4 5; do echo {tag}$i; sleep 0.2; done"];
        var results = await Task.WhenAll(PyroCli.RunAsync(Loop(first, "A")), PyroCli.RunAsync(Loop(first, "B")), PyroCli.RunAsync(Loop(second, "C")));

        Assert.Equal("A1\nA2\nA3\nA4\nA5\n", results[0].Stdout);
        Assert.Equal("B1\nB2\nB3\nB4\nB5\n", results[1].Stdout);
        Assert.Equal("C1\nC2\nC3\nC4\nC5\n", results[2].Stdout);
        var sequences = (await Ok("workspace", "logs", first, "--json")).Json.EnumerateArray().Select(l => l.GetProperty("sequence").GetInt32()).Order();
        Assert.Equal([1, 2], sequences);
        await Ok("workspace", "delete", first);
        Forget(first);
    }

    /// <summary>
    /// Mostly waiting for TTLs to run out, so it runs in a lane beside the class's other tests,
    /// with scratch of its own (reap is global to a state directory).
    /// </summary>
    [Fact]
    [Lane(1)]
    public Task ExpiredWorkspacesAreReapedBySupervisorOrByReap() => lanes.RunAsync(nameof(ExpiredWorkspacesAreReapedBySupervisorOrByReap), ExpiryLaneAsync);

    private static async Task ExpiryLaneAsync()
    {
        await using var scratch = new LaneScratch("expiry");
        var env = scratch.Env;
        var toDelete = new List<string>();
        async Task<string> CreateAsync(string ttl)
        {
            var created = await PyroCli.RunAsync(["workspace", "create", "debian:12", "--id-only", "--ttl-seconds", ttl], env, TimeSpan.FromMinutes(5));
            Assert.True(created.ExitCode == 0, created.ToString());
            var id = created.Stdout.Trim();
            Assert.Matches("^[0-9a-f]{12}$", id);
            toDelete.Add(id);
            return id;
        }

        Task<ProcessResult> Ok(params string[] args) => PyroCli.OkAsync(env, args);

        try
        {
            // Each TTL must outlast its own create on a slow CI machine, with the class's other
            // tests booting beside it: a TTL that runs out while the VM boots deletes the workspace
            // under its create (seen in CI with 10 s), and an orphan's TTL that ran out before the
            // kill below would be enforced by its live supervisor. The lane hides the wait.
            var bySupervisor = await CreateAsync("60");
            var orphan = await CreateAsync("90");
            var orphanPid = (await Ok("workspace", "status", orphan, "--json")).Json.GetProperty("supervisor_pid").GetInt32();
            Assert.Equal(0, Kill(orphanPid, 9));

            await WaitUntilAsync(async () => (await PyroCli.RunAsync(["workspace", "status", bySupervisor], env)).ExitCode == 2, TimeSpan.FromSeconds(150));
            toDelete.Remove(bySupervisor);
            var orphanStatus = (await Ok("workspace", "status", orphan, "--json")).Json;
            Assert.Equal("crashed", orphanStatus.GetProperty("state").GetString());
            // Nobody is left to enforce the orphan's TTL: once it has passed, only reap removes it.
            var expires = orphanStatus.GetProperty("expires_at").GetDateTimeOffset();
            await WaitUntilAsync(() => DateTimeOffset.UtcNow > expires.AddSeconds(1), TimeSpan.FromSeconds(150));
            Assert.Equal("crashed", (await Ok("workspace", "status", orphan, "--json")).Json.GetProperty("state").GetString());

            var reaped = (await Ok("workspace", "reap", "--json")).Json.EnumerateArray().Select(e => e.GetString()).ToList();
            Assert.Equal([orphan], reaped);
            toDelete.Remove(orphan);
            Assert.Equal(2, (await PyroCli.RunAsync(["workspace", "status", orphan], env)).ExitCode);
        }
        finally
        {
            // Cleanup, not a check: what a failed run left.
            foreach (var id in toDelete)
            {
                await PyroCli.RunAsync(["workspace", "delete", id], env);
            }
        }

        await scratch.AssertCleanAsync();
    }

    /// <summary>
    /// A hostile seed archive, a hostile guest tree exported, and then file calls on paths
    /// outside the workspace: one guest for all three, since none of them may change anything
    /// outside /workspace (which is what each checks).
    /// </summary>
    [Fact]
    public async Task AHostileSeedArchiveAndPathsOutsideTheWorkspaceWriteNothingOutsideIt()
    {
        var archive = Path.Combine(HostDir, "hostile.tar");
        await using (var file = File.Create(archive))
        await using (var tar = new TarWriter(file, TarEntryFormat.Pax))
        {
            void Add(TarEntryType type, string name, string? link = null, string? content = null)
            {
                var entry = new PaxTarEntry(type, name);
                if (link is not null)
                {
                    entry.LinkName = link;
                }

                if (content is not null)
                {
                    entry.DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content));
                }

                tar.WriteEntry(entry);
            }

            Add(TarEntryType.RegularFile, "ok.txt", content: "fine\n");
            Add(TarEntryType.RegularFile, "../escape-traversal.txt", content: "x");
            Add(TarEntryType.RegularFile, "/tmp/escape-absolute.txt", content: "x");
            Add(TarEntryType.SymbolicLink, "etc-link", "/etc");
            Add(TarEntryType.RegularFile, "etc-link/escape-through-link.txt", content: "x");
            Add(TarEntryType.HardLink, "hard-passwd", "/etc/passwd");
            Add(TarEntryType.CharacterDevice, "fake-null");
            Add(TarEntryType.Fifo, "fake-fifo");
        }

        var id = await CreateAsync("--seed-path", archive);
        var outside = await Ok("workspace", "exec", id, "--", "sh", "-c",
            "n=0; for f in /escape-traversal.txt /tmp/escape-absolute.txt /etc/escape-through-link.txt; do [ -e $f ] && n=$((n+1)); done; echo $n");
        Assert.Equal("0", outside.Stdout.Trim());
        Assert.Equal("fine\n", (await Ok("workspace", "exec", id, "--", "cat", "ok.txt")).Stdout);
        var kinds = await Ok("workspace", "exec", id, "--", "sh", "-c", "ls -A /workspace | sort | tr '\\n' ' '");
        Assert.Equal("etc-link ok.txt ", kinds.Stdout);
        // The link was kept as a link, never followed.
        Assert.Equal("/etc", (await Ok("workspace", "exec", id, "--", "readlink", "etc-link")).Stdout.Trim());
        Assert.False(File.Exists("/tmp/escape-absolute.txt"));

        // A hostile guest tree, exported: links out are not recreated, nothing lands outside --output.
        await Ok("workspace", "exec", id, "--", "sh", "-c", "mkdir -p deep && ln -s ../../../../../../tmp deep/up && ln -s note-target inside-link && echo t > note-target");
        var output = Path.Combine(HostDir, "export");
        var sentinel = Path.Combine(HostDir, "sentinel");
        Directory.CreateDirectory(sentinel);
        var exported = (await Ok("workspace", "export", id, ".", "--output", output, "--json")).Json;
        Assert.Empty(Directory.GetFileSystemEntries(sentinel));
        Assert.Equal("note-target", new FileInfo(Path.Combine(output, "inside-link")).LinkTarget);
        Assert.False(Path.Exists(Path.Combine(output, "deep", "up")));
        Assert.Contains(exported.GetProperty("skipped").EnumerateArray(), s => s.GetProperty("name").GetString()!.Contains("deep/up"));
        Assert.False(Path.Exists(Path.Combine(output, "etc-link")));

        await PathsOutsideTheWorkspaceAreRefusedAsync(id);
    }

    /// <summary>A failed sync and a failed reset of running <paramref name="id"/>, seeded with <see cref="Seed"/>; ends reset to its baseline.</summary>
    private async Task FailedSyncAndResetSayWhatStateTheWorkspaceIsInAsync(string id)
    {
        // An archive that is not one: the sync fails and says what may be left and how to recover.
        var corrupt = Path.Combine(HostDir, "corrupt.tar");
        await File.WriteAllBytesAsync(corrupt, Enumerable.Range(0, 4096).Select(i => (byte)(i * 7)).ToArray());
        var sync = await PyroCli.RunAsync("workspace", "sync", "push", id, corrupt);
        Assert.Equal(1, sync.ExitCode);
        Assert.Contains("may hold part of the tree", sync.Stderr);
        Assert.Contains("reset the workspace to return to the baseline", sync.Stderr);
        Assert.Contains($"pyro: hint: 'pyro workspace reset {id}' returns it to the baseline", sync.Stderr);
        Assert.Equal("running", (await Ok("workspace", "status", id, "--json")).Json.GetProperty("state").GetString());

        // A reset whose boot cannot succeed: the workspace is marked failed with the step, not left half-way unannounced.
        // A warm restore can make it in a second, so the reset gets an empty template cache: the
        // template cannot be built within the deadline, and the cold boot it falls back to fails.
        var noTemplates = Directory.CreateDirectory(Path.Combine(HostDir, "no-templates")).FullName;
        File.SetUnixFileMode(noTemplates, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var reset = await PyroCli.RunAsync(["workspace", "reset", id], new Dictionary<string, string> { ["PYRO_BOOT_TIMEOUT_SECONDS"] = "1", ["PYRO_TEMPLATE_CACHE_DIR"] = noTemplates });
        Assert.Equal(1, reset.ExitCode);
        Assert.Contains("reset failed while booting its VM", reset.Stderr);
        var failed = (await Ok("workspace", "status", id, "--json")).Json;
        Assert.Equal("failed", failed.GetProperty("state").GetString());
        Assert.Contains("reset it again, or delete it", failed.GetProperty("state_reason").GetString());
        var refused = await PyroCli.RunAsync("workspace", "exec", id, "--", "true");
        Assert.Contains("workspace_not_running", refused.Stderr);

        // Reset again, as the message says, and the workspace is whole.
        await Ok("workspace", "reset", id);
        Assert.Equal("hello from the seed\n", (await Ok("workspace", "exec", id, "--", "cat", "note.txt")).Stdout);
    }

    /// <summary>File reads and writes of paths outside running <paramref name="id"/> are refused and write nothing.</summary>
    private static async Task PathsOutsideTheWorkspaceAreRefusedAsync(string id)
    {
        // One guest for every path: a refused call changes nothing, so the cases cannot see each other.
        foreach (var (verb, path) in new[] { ("read", "../etc/passwd"), ("read", "/etc/passwd"), ("write", "/etc/pyro-was-here"), ("write", "../root/pyro-was-here") })
        {
            var args = verb == "read" ? new[] { "workspace", "file", "read", id, path } : ["workspace", "file", "write", id, path, "--text", "x"];

            var result = await PyroCli.RunAsync(args);

            Assert.True(result.ExitCode != 0, $"{verb} {path} was not refused:\n{result}");
            Assert.Matches("path_escapes_workspace|outside_workspace", result.Stderr);
            Assert.Equal(1, (await PyroCli.RunAsync("workspace", "exec", id, "--", "test", "-e", "/etc/pyro-was-here")).ExitCode);
            Assert.Equal(1, (await PyroCli.RunAsync("workspace", "exec", id, "--", "test", "-e", "/root/pyro-was-here")).ExitCode);
        }
    }

    private static int QemuOf(string id)
    {
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(dir), out var pid))
            {
                try
                {
                    var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline"));
                    if (cmdline.Contains("qemu-system") && cmdline.Contains(id))
                    {
                        return pid;
                    }
                }
                catch (IOException)
                {
                }
            }
        }

        throw new InvalidOperationException($"no QEMU for {id}");
    }

    private static Task WaitUntilAsync(Func<bool> condition, TimeSpan? limit = null) => WaitUntilAsync(() => Task.FromResult(condition()), limit);

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan? limit = null)
    {
        var deadline = DateTime.UtcNow + (limit ?? TimeSpan.FromSeconds(30));
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            await Task.Delay(250);
        }
    }

    [DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);
}
