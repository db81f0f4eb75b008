using ModelContextProtocol.Protocol;
using PyroMcp.Server;

namespace PyroMcp.GuestTests;

/// <summary>
/// The model calling the tools is untrusted: no argument may turn isolation off or reach host
/// paths outside the roots the operator allowed. Every call here is one a steered model could
/// make; the test counts host executions (a marker file the command would create on the host)
/// and host writes outside the allowed root (a sentinel tree and the targets named).
/// </summary>
public sealed class HostileMcpTests : GuestTest
{
    private readonly List<string> _created = [];
    private int _calls;
    private int _hostExecutions;

    private string Project => Path.Combine(HostDir, "project");

    private string Outside => Path.Combine(HostDir, "outside");

    public override async Task DisposeAsync()
    {
        await PyroScratch.DeleteWorkspacesAsync(_created);
        await base.DisposeAsync();
    }

    [Fact]
    public async Task NoToolArgumentRunsOnTheHostOrTouchesHostPathsOutsideTheAllowedRoot()
    {
        Directory.CreateDirectory(Path.Combine(Project, "repo"));
        File.WriteAllText(Path.Combine(Project, "repo", "README"), "project file\n");
        Directory.CreateDirectory(Path.Combine(Outside, "profile.d"));
        File.WriteAllText(Path.Combine(Outside, "id_ed25519"), "PRIVATE KEY\n");
        File.CreateSymbolicLink(Path.Combine(Project, "link-out"), Outside);
        File.CreateSymbolicLink(Path.Combine(Project, "key-link"), Path.Combine(Outside, "id_ed25519"));
        var sentinel = Snapshot(Outside);

        var policy = new McpServerPolicy { AllowedPaths = [Project] };
        await using (var mcp = await InProcessMcp.StartAsync("workspace-full", policy))
        {
            // Host compat is the operator's choice: asking for it on a server that does not allow it is refused.
            foreach (var (tool, args) in new (string, Dictionary<string, object?>)[]
            {
                ("vm_run", new() { ["environment"] = "debian:12", ["command"] = HostMarkerCommand(), ["allow_host_compat"] = true }),
                ("vm_create", new() { ["environment"] = "debian:12", ["allow_host_compat"] = true }),
                ("workspace_create", new() { ["environment"] = "debian:12", ["allow_host_compat"] = true }),
            })
            {
                Assert.Contains("--allow-host-compat", await Refused(mcp, tool, "host_compat_disabled", args));
            }

            // Host paths outside the allowed root, named directly, through ~, .., or a symlink in the root.
            foreach (var seed in new[] { "~", "~/.ssh", "/etc", Outside, "../outside", "link-out", "key-link", Path.Combine(Project, "link-out", "profile.d") })
            {
                await Refused(mcp, "workspace_create", "path_not_allowed", new() { ["environment"] = "debian:12", ["seed_path"] = seed });
            }

            Assert.Equal(0, (await mcp.OkAsync("workspace_list")).GetProperty("count").GetInt32());

            var created = await mcp.OkAsync("workspace_create", new() { ["environment"] = "debian:12", ["seed_path"] = "repo" });
            var id = created.GetProperty("workspace_id").GetString()!;
            _created.Add(id);
            _calls++;
            await mcp.OkAsync("workspace_exec", new() { ["workspace_id"] = id, ["command"] = "mkdir -p /workspace/out && echo payload > /workspace/out/evil.sh" });
            _calls++;

            foreach (var source in new[] { "/etc", "~", "link-out", "key-link", "../outside/id_ed25519" })
            {
                await Refused(mcp, "workspace_sync_push", "path_not_allowed", new() { ["workspace_id"] = id, ["source_path"] = source });
            }

            foreach (var output in new[]
            {
                Path.Combine(Outside, "profile.d", "pyro.sh"), "~/.bashrc.d", "/etc/profile.d/pyro-evil.sh",
                "link-out/profile.d/evil", "../outside/new", Path.Combine(Project, "link-out", "written"),
            })
            {
                await Refused(mcp, "workspace_export", "path_not_allowed", new() { ["workspace_id"] = id, ["path"] = "out/evil.sh", ["output_path"] = output });
            }

            // Inside the root, everything still works.
            var exported = await mcp.OkAsync("workspace_export", new() { ["workspace_id"] = id, ["path"] = "out", ["output_path"] = "exported" });
            _calls++;
            Assert.Equal(Path.Combine(Project, "exported"), exported.GetProperty("host_path").GetString());
            Assert.Equal("payload\n", File.ReadAllText(Path.Combine(Project, "exported", "evil.sh")));
            var seen = await mcp.OkAsync("workspace_exec", new() { ["workspace_id"] = id, ["command"] = "cat README" });
            _calls++;
            Assert.Equal("project file\n", seen.GetProperty("stdout").GetString());
        }

        // An operator who allows host compat still gets a VM when the host can boot one: a guest
        // that fails to boot (here: a boot deadline no guest can meet) is an error, never a reason
        // to run on the host.
        var failing = PyroScratch.Options with { BootTimeout = TimeSpan.FromMilliseconds(200) };
        await using (var mcp = await InProcessMcp.StartAsync("vm-run", new McpServerPolicy { AllowHostCompat = true, AllowedPaths = [Project] }, failing))
        {
            await Refused(mcp, "vm_run", "boot_timeout", new() { ["environment"] = "debian:12", ["command"] = HostMarkerCommand(), ["allow_host_compat"] = true });
            // More memory or vCPUs than the host has is refused up front, not "fixed" by running on the host.
            await Refused(mcp, "vm_run", "mem_exceeds_host", new() { ["environment"] = "debian:12", ["command"] = HostMarkerCommand(), ["allow_host_compat"] = true, ["mem_mib"] = MoreMemoryThanTheHost() });
            await Refused(mcp, "vm_run", "vcpu_count_exceeds_host", new() { ["environment"] = "debian:12", ["command"] = HostMarkerCommand(), ["allow_host_compat"] = true, ["vcpu_count"] = Environment.ProcessorCount + 1 });
        }

        _hostExecutions = Directory.GetFiles(HostDir, "host-executed-*").Length;
        var home = Environment.GetEnvironmentVariable("HOME") ?? "/root";
        var writesOutside = Diff(sentinel, Snapshot(Outside))
            + new[] { "/etc/profile.d/pyro-evil.sh", Path.Combine(home, ".bashrc.d") }.Count(p => File.Exists(p) || Directory.Exists(p));
        Figures.Record("hostile MCP arguments", $"{_calls} calls, {_hostExecutions} host executions, {writesOutside} host writes outside");
        Assert.Equal(0, _hostExecutions);
        Assert.Equal(0, writesOutside);
    }

    /// <summary>MemTotal plus a little, within the tools' 65536 MiB range (this suite's hosts have far less).</summary>
    private static int MoreMemoryThanTheHost()
    {
        var kib = long.Parse(File.ReadLines("/proc/meminfo").First(l => l.StartsWith("MemTotal:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
        var mib = (int)(kib / 1024) + 1;
        Assert.True(mib <= 65536, "this host has more memory than a tool call can ask for; the refusal cannot be shown here");
        return mib;
    }

    private string HostMarkerCommand() => $"touch {Path.Combine(HostDir, "host-executed-" + Guid.NewGuid().ToString("N"))}";

    private async Task<string> Refused(InProcessMcp mcp, string tool, string code, Dictionary<string, object?> args)
    {
        _calls++;
        return await mcp.ErrorAsync(tool, code, args);
    }

    private static Dictionary<string, string> Snapshot(string root)
        => Directory.EnumerateFileSystemEntries(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
            .ToDictionary(p => p, p => File.Exists(p) ? File.ReadAllText(p) + "|" + File.GetLastWriteTimeUtc(p).Ticks : "dir");

    private static int Diff(Dictionary<string, string> before, Dictionary<string, string> after)
        => after.Count(a => !before.TryGetValue(a.Key, out var v) || v != a.Value) + before.Keys.Count(k => !after.ContainsKey(k));
}
