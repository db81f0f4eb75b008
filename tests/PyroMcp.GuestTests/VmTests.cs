namespace PyroMcp.GuestTests;

/// <summary>The SDK's VM methods against a real guest: one VM, booted once, used for one command and gone after it.</summary>
public sealed class VmTests : GuestTest
{
    [Fact]
    public async Task CreateStatusStartThenExecRunsInTheGuestAndDeletesTheVm()
    {
        var pyro = new Pyro(PyroScratch.Options);
        var phases = new List<string>();
        var vm = await pyro.CreateVmAsync(new VmCreateRequest { Environment = "debian:12", TtlSeconds = 300, Progress = new SyncProgress<PyroProgress>(p => phases.Add(p.Phase)) });
        var id = vm.WorkspaceId;
        var deleted = false;
        try
        {
            Assert.Equal(VmLabels.Vm, vm.Labels[VmLabels.Kind]);
            Assert.Equal(WorkspaceState.Running, vm.State);
            Assert.Equal(300, vm.TtlSeconds);
            Assert.Contains("start", phases);

            var status = await pyro.GetVmAsync(id);
            Assert.Equal(WorkspaceState.Running, status.State);
            // Starting a running VM returns it as it is: same supervisor, no second boot.
            var started = await pyro.StartVmAsync(id);
            Assert.Equal(WorkspaceState.Running, started.State);
            Assert.Equal(status.SupervisorPid, started.SupervisorPid);

            // Guest-only facts: the command runs in /workspace of a Debian guest whose kernel pyro booted.
            var result = await pyro.ExecVmAsync(id, ["pwd; cat /etc/debian_version >/dev/null && echo in-guest; echo oops >&2; exit 3"]);
            deleted = true;
            Assert.Equal(3, result.ExitCode);
            Assert.Equal("/workspace\nin-guest\n", result.Stdout);
            Assert.Equal("oops\n", result.Stderr);
            Assert.False(result.TimedOut);
            Assert.Equal(id, result.VmId);
            Assert.Equal(id, result.WorkspaceId);
            Assert.Equal(1, result.Sequence);
            Assert.Equal("/workspace", result.Cwd);
            Assert.Equal(ExecutionMode.Guest, result.ExecutionMode);
            Assert.True(result.AutoDeleted);
            Assert.Equal(3, Assert.Throws<CommandFailedException>(() => result.ThrowOnFailure()).Result.ExitCode);

            // Gone: no VM, no workspace, nothing left running (the base class checks processes and directories).
            Assert.Equal("workspace_not_found", (await Assert.ThrowsAsync<PyroInputException>(() => pyro.GetVmAsync(id))).Code);
            Assert.Equal("workspace_not_found", (await Assert.ThrowsAsync<PyroInputException>(() => pyro.GetWorkspaceAsync(id))).Code);
            Assert.Equal("workspace_not_found", (await Assert.ThrowsAsync<PyroInputException>(() => pyro.ExecVmAsync(id, ["true"]))).Code);
        }
        finally
        {
            // ExecVmAsync deletes the VM even when it throws; only a failure before it leaves one behind.
            if (!deleted && (await pyro.ListWorkspacesAsync()).Any(w => w.WorkspaceId == id))
            {
                await pyro.DeleteWorkspaceAsync(id);
            }
        }
    }
}
