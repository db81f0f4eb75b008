using System.Text;
using PyroMcp.TestKit;

namespace PyroMcp.GuestTests;

/// <summary>
/// The offline disk tools on a real guest's disk: files and a service log written in a booted
/// workspace, the workspace stopped, its disk listed, read and exported through the CLI, the
/// export checked with e2fsck and searched for the service's marker; then the workspace boots again.
/// </summary>
public sealed class DiskTests : GuestTest
{
    [Fact]
    public async Task AStoppedWorkspacesDiskIsListedReadAndExportedWithoutItsRuntimeState()
    {
        var id = await CreateWorkspaceAsync();
        var marker = "PYRO-DISK-MARKER-" + Guid.NewGuid().ToString("N")[..12];
        var keep = "PYRO-DISK-KEEP-" + Guid.NewGuid().ToString("N")[..12];
        await PyroCli.OkAsync("workspace", "exec", id, "--", "sh", "-c",
            $"mkdir -p tree/a/b && echo {keep} > tree/a/b/deep.txt && printf 'x\\n' > \"$(printf 'new\\nline')\" && sync");
        // The agent keeps service state and logs in /var/lib/pyro: runtime-only, never exported.
        await PyroCli.OkAsync("workspace", "service", "start", id, "marker", "--", "sh", "-c", $"echo {marker}; exec sleep 1000");
        var running = await PyroCli.RunAsync("workspace", "disk", "list", id, "--json");
        Assert.NotEqual(0, running.ExitCode);
        Assert.Contains("workspace_not_stopped", running.Stdout + running.Stderr);
        await PyroCli.OkAsync("workspace", "stop", id);

        var list = await PyroCli.OkAsync("workspace", "disk", "list", id, "--recursive");
        Assert.Contains("tree/a/b/deep.txt", list.Stdout);
        Assert.Contains("new?line", list.Stdout);
        var read = await PyroCli.OkAsync("workspace", "disk", "read", id, "tree/a/b/deep.txt", "--content-only");
        Assert.Equal(keep + "\n", read.Stdout);
        var scrubbed = await PyroCli.RunAsync("workspace", "disk", "list", id, "/var/lib/pyro");
        Assert.Contains("disk_path_scrubbed", scrubbed.Stdout + scrubbed.Stderr);

        var output = Path.Combine(HostDir, "disk.ext4");
        var export = await PyroCli.RunAsync(["workspace", "disk", "export", id, "--output", output], timeout: TimeSpan.FromMinutes(5));
        Assert.True(export.ExitCode == 0, export.ToString());
        Assert.StartsWith($"[workspace-disk-export] workspace_id={id} output=", export.Stdout);
        var fsck = await Processes.RunAsync("/usr/sbin/e2fsck", ["-fn", output]);
        Assert.True(fsck.ExitCode == 0, fsck.ToString());
        var markers = await CountAsync(output, Encoding.ASCII.GetBytes(marker));
        var kept = await CountAsync(output, Encoding.ASCII.GetBytes(keep));
        Figures.Record("disk export of a real guest", $"{markers} service-log marker occurrences in the exported image, kept file found {kept} times, e2fsck -fn exit {fsck.ExitCode}");
        Assert.Equal(0, markers);
        Assert.True(kept > 0, "the search would not find a marker that is there");

        await PyroCli.OkAsync("workspace", "start", id);
        var exec = await PyroCli.OkAsync("workspace", "exec", id, "--", "cat", "tree/a/b/deep.txt");
        Assert.Contains(keep, exec.Stdout);
    }

    /// <summary>Occurrences of <paramref name="needle"/> in a (sparse, possibly large) file, read in overlapping chunks.</summary>
    private static async Task<int> CountAsync(string file, byte[] needle)
    {
        var count = 0;
        var buffer = new byte[(4 << 20) + needle.Length];
        var carry = 0;
        await using var stream = File.OpenRead(file);
        int n;
        while ((n = await stream.ReadAsync(buffer.AsMemory(carry, buffer.Length - carry))) > 0)
        {
            var span = buffer.AsSpan(0, carry + n);
            var last = 0;
            int at;
            while ((at = span[last..].IndexOf(needle)) >= 0)
            {
                count++;
                last += at + needle.Length;
            }

            carry = Math.Min(needle.Length - 1, span.Length - last);
            span[^carry..].CopyTo(buffer);
        }

        return count;
    }
}
