using System.Text;

namespace PyroMcp.GuestTests;

/// <summary>
/// <c>workspace fork</c> against real guests: copies start from the source's memory and disk (its
/// files, a running service, an open shell's state), each is its own VM with its own baseline, and
/// nothing one writes reaches another.
/// </summary>
public sealed class ForkTests : GuestTest
{
    private const string Probe = "hostname; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo";

    [Fact]
    public async Task CopiesKeepFilesServicesAndShellsAndGoTheirOwnWay()
    {
        var pyro = new Pyro(PyroScratch.Options);
        var source = await pyro.CreateWorkspaceAsync(new WorkspaceCreateRequest { Environment = "debian:12", TtlSeconds = 1200 });
        DeleteAfterwards(source.WorkspaceId);
        var id = source.WorkspaceId;
        await pyro.ExecWorkspaceAsync(id, new WorkspaceExecRequest { Command = ["sh", "-c", "echo prepared > state.txt; mkdir -p build; echo obj > build/a.o"] });
        await pyro.StartServiceAsync(id, new ServiceStartRequest { Name = "ticker", Command = "while true; do date +%s >> /tmp/ticks; sleep 1; done" });
        var shell = await pyro.OpenShellAsync(id);
        await pyro.WriteShellAsync(id, shell.ShellId, "export FORKVAR=kept-in-memory");

        var fork = await pyro.ForkWorkspaceAsync(id, new WorkspaceForkRequest { Count = 2, NamePrefix = "try" });
        foreach (var copy in fork.Workspaces)
        {
            DeleteAfterwards(copy.WorkspaceId);
        }

        Assert.Equal(id, fork.SourceWorkspaceId);
        Assert.Equal(["try-1", "try-2"], fork.Workspaces.Select(w => w.Name));
        var kept = 0;
        var randoms = new List<string>();
        foreach (var copy in fork.Workspaces)
        {
            Assert.Equal(WorkspaceState.Running, copy.State);
            Assert.Equal("fork", copy.StartMode);
            Assert.Equal(id, copy.Labels["pyro.fork-of"]);
            var c = copy.WorkspaceId;
            // The disk: the source's files; the baseline: the source's tree, so nothing differs yet.
            Assert.Equal("prepared\n", (await pyro.ExecWorkspaceAsync(c, new WorkspaceExecRequest { Command = ["cat", "state.txt"] })).Stdout);
            var diff = await pyro.DiffWorkspaceAsync(c);
            Assert.True(diff.Changes.Count == 0, string.Join(", ", diff.Changes.Select(x => x.Path)));
            // The memory: the service still runs (and keeps ticking), the shell still has its variable.
            var services = await pyro.ListServicesAsync(c);
            Assert.Contains(services.Services, s => s is { Name: "ticker", State: "running" });
            await pyro.WriteShellAsync(c, shell.ShellId, "echo value=$FORKVAR");
            var shellSaw = await ReadShellUntilAsync(pyro, c, shell.ShellId, "value=kept-in-memory");
            // Its own VM: host name and RNG.
            var probe = (await pyro.ExecWorkspaceAsync(c, new WorkspaceExecRequest { Command = ["sh", "-c", Probe] })).Stdout.Split('\n');
            Assert.Equal("pyro-" + c, probe[0]);
            randoms.Add(probe[1]);
            kept += shellSaw && services.Services.Any(s => s.Name == "ticker") ? 1 : 0;
        }

        randoms.Add((await pyro.ExecWorkspaceAsync(id, new WorkspaceExecRequest { Command = ["sh", "-c", Probe] })).Stdout.Split('\n')[1]);

        // Independent afterwards: a write in one copy is seen by no other copy and not by the source.
        var first = fork.Workspaces[0].WorkspaceId;
        await pyro.ExecWorkspaceAsync(first, new WorkspaceExecRequest { Command = ["sh", "-c", "echo only-here > mine.txt; rm state.txt"] });
        var leaks = 0;
        foreach (var other in new[] { fork.Workspaces[1].WorkspaceId, id })
        {
            var seen = await pyro.ExecWorkspaceAsync(other, new WorkspaceExecRequest { Command = ["sh", "-c", "test -e mine.txt && echo leak; test -e state.txt || echo gone"] });
            leaks += seen.Stdout.Length > 0 ? 1 : 0;
        }

        var firstDiff = await pyro.DiffWorkspaceAsync(first);
        Assert.Equal(1, firstDiff.Added);
        Assert.Equal(1, firstDiff.Deleted);
        var distinct = randoms.Distinct(StringComparer.Ordinal).Count();
        Figures.Record("workspace fork", $"2 copies of 1 workspace: {kept}/2 kept its file, service and shell; {leaks} writes seen across copies or in the source; {distinct} distinct RNG outputs of 3");
        Assert.Equal(2, kept);
        Assert.Equal(0, leaks);
        Assert.Equal(3, distinct);

        // The source runs on as it was.
        Assert.Equal("prepared\n", (await pyro.ExecWorkspaceAsync(id, new WorkspaceExecRequest { Command = ["cat", "state.txt"] })).Stdout);
        Assert.Equal(WorkspaceState.Running, (await pyro.GetWorkspaceAsync(id)).State);
    }

    [Fact]
    public async Task BadForkRequestsAreRefusedAndLeaveNothing()
    {
        var pyro = new Pyro(PyroScratch.Options);
        var before = (await pyro.ListWorkspacesAsync()).Count;
        var refused = 0;
        foreach (var (request, code) in new (WorkspaceForkRequest, string)[]
                 {
                     (new() { Count = 0 }, "invalid_fork_count"),
                     (new() { Count = 17 }, "invalid_fork_count"),
                     (new() { Count = 2, NamePrefix = "../etc" }, "invalid_name_prefix"),
                     (new() { Count = 1, NamePrefix = new string('a', 62) }, "invalid_name_prefix"),
                     (new() { Count = 1, TtlSeconds = 5 }, "invalid_ttl"),
                 })
        {
            var ex = await Assert.ThrowsAsync<PyroInputException>(() => pyro.ForkWorkspaceAsync("0123456789ab", request));
            Assert.Equal(code, ex.Code);
            refused++;
        }

        Assert.Equal("workspace_not_found", (await Assert.ThrowsAsync<PyroInputException>(() => pyro.ForkWorkspaceAsync("0123456789ab", new WorkspaceForkRequest()))).Code);
        Figures.Record("workspace fork", $"{refused} bad fork requests tried, {refused} refused, {(await pyro.ListWorkspacesAsync()).Count - before} workspaces made");
        Assert.Equal(before, (await pyro.ListWorkspacesAsync()).Count);
    }

    private static async Task<bool> ReadShellUntilAsync(Pyro pyro, string workspace, string shellId, string expected)
    {
        var seen = new StringBuilder();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        long cursor = 0;
        while (DateTime.UtcNow < deadline)
        {
            var read = await pyro.ReadShellAsync(workspace, shellId, cursor, plain: true);
            seen.Append(read.Output);
            cursor = read.NextCursor;
            if (seen.ToString().Contains(expected, StringComparison.Ordinal))
            {
                return true;
            }

            await Task.Delay(100);
        }

        Assert.Fail($"the shell never printed {expected}; it printed:\n{seen}");
        return false;
    }
}
