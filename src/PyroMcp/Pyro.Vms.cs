namespace PyroMcp;

/// <summary>
/// VMs: bare workspaces (no seed files) labeled <see cref="VmLabels.Kind"/>=<see cref="VmLabels.Vm"/>,
/// for one command each. <see cref="ExecVmAsync"/> deletes the VM after its command, so these
/// methods refuse a workspace that is not a VM (<c>not_a_vm</c>) rather than delete a user's work.
/// </summary>
/// <example><code>
/// var vm = await pyro.CreateVmAsync(new VmCreateRequest { Environment = "debian:12" });
/// var result = await pyro.ExecVmAsync(vm.WorkspaceId, ["git", "--version"]);
/// // result.AutoDeleted: the VM is gone.
/// </code></example>
public sealed partial class Pyro
{
    /// <summary>
    /// Boots a VM that waits for one command (<see cref="ExecVmAsync"/>). Its id is its
    /// <see cref="WorkspaceInfo.WorkspaceId"/>; it is deleted after that command, by
    /// <see cref="DeleteVmAsync"/>, or when <see cref="VmCreateRequest.TtlSeconds"/> run out.
    /// All or nothing, like <see cref="CreateWorkspaceAsync"/>.
    /// </summary>
    /// <exception cref="PyroInputException">Bad request (unknown environment, sizes, lifetime); nothing was created.</exception>
    /// <exception cref="HostRequirementException">The host cannot boot guests; the message names the fix.</exception>
    /// <exception cref="VmBootException">The guest did not boot; nothing of it remains.</exception>
    public Task<WorkspaceInfo> CreateVmAsync(VmCreateRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        return CreateWorkspaceAsync(new WorkspaceCreateRequest
        {
            Environment = request.Environment,
            Labels = new Dictionary<string, string> { [VmLabels.Kind] = VmLabels.Vm },
            TtlSeconds = request.TtlSeconds,
            VcpuCount = request.VcpuCount,
            MemMib = request.MemMib,
            NetworkPolicy = request.Network ? NetworkPolicy.Egress : NetworkPolicy.Off,
            Progress = request.Progress,
        }, cancellationToken);
    }

    /// <summary>The VM's network: its policy, the address, gateway and DNS its guest got, and its published ports.</summary>
    /// <exception cref="PyroInputException"><c>workspace_not_found</c> when there is no such VM; <c>not_a_vm</c> when it is a workspace.</exception>
    public async Task<VmNetworkInfo> GetVmNetworkInfoAsync(string vmId, CancellationToken cancellationToken = default)
    {
        var info = await GetVmAsync(vmId, cancellationToken).ConfigureAwait(false);
        return new VmNetworkInfo
        {
            VmId = info.WorkspaceId,
            NetworkPolicy = info.NetworkPolicy,
            State = info.State,
            Network = info.Network,
            NetworkError = info.NetworkError,
            PublishedPorts = info.PublishedPorts,
        };
    }

    /// <summary>A VM's state, checked against the processes that really exist, like <see cref="GetWorkspaceAsync"/>.</summary>
    /// <exception cref="PyroInputException"><c>workspace_not_found</c> when there is no such VM; <c>not_a_vm</c> when it is a workspace.</exception>
    public async Task<WorkspaceInfo> GetVmAsync(string vmId, CancellationToken cancellationToken = default)
    {
        var info = await GetWorkspaceAsync(vmId, cancellationToken).ConfigureAwait(false);
        return IsVm(info)
            ? info
            : throw new PyroInputException("not_a_vm", $"'{vmId}' is a workspace, not a VM: the VM operations act only on VMs (workspaces labeled {VmLabels.Kind}={VmLabels.Vm}), because running a command in a VM deletes it. Use the workspace operations for it.");
    }

    /// <summary>Boots a stopped or crashed VM again from its disk; a running VM is returned as it is.</summary>
    /// <exception cref="PyroInputException"><c>workspace_not_found</c> or <c>not_a_vm</c>.</exception>
    /// <exception cref="WorkspaceStateException">The VM is in a state it cannot be started from (failed, resetting).</exception>
    public async Task<WorkspaceInfo> StartVmAsync(string vmId, CancellationToken cancellationToken = default)
    {
        var info = await GetVmAsync(vmId, cancellationToken).ConfigureAwait(false);
        return info.State == WorkspaceState.Running ? info : await StartWorkspaceAsync(info.WorkspaceId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs one command in a VM made by <see cref="CreateVmAsync"/> (in <c>/workspace</c>), then deletes
    /// the VM whatever happened: success, non-zero exit, timeout, a broken guest channel or
    /// cancellation. When this returns or throws, the VM is gone; to run several commands in one
    /// machine use a workspace.
    /// </summary>
    /// <param name="vmId">The VM, as <see cref="WorkspaceInfo.WorkspaceId"/> of <see cref="CreateVmAsync"/>'s result.</param>
    /// <param name="command">The command, with the same argv/shell rule as <see cref="RunRequest.Command"/>.</param>
    /// <param name="timeoutSeconds">Seconds before the command's whole process group is killed (exit 124), 1 to 86400.</param>
    /// <param name="cancellationToken">Stops waiting for the command; the VM is deleted all the same.</param>
    /// <exception cref="PyroInputException"><c>workspace_not_found</c> or <c>not_a_vm</c> (nothing was deleted), or a bad command or timeout (the VM was deleted).</exception>
    public async Task<VmExecResult> ExecVmAsync(string vmId, IReadOnlyList<string> command, int timeoutSeconds = 30, CancellationToken cancellationToken = default)
    {
        var info = await GetVmAsync(vmId, cancellationToken).ConfigureAwait(false);
        WorkspaceExecResult result;
        try
        {
            result = await ExecWorkspaceAsync(info.WorkspaceId, new WorkspaceExecRequest { Command = command, TimeoutSeconds = timeoutSeconds }, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await DeleteWorkspaceAsync(info.WorkspaceId, CancellationToken.None).ConfigureAwait(false);
        }

        return new VmExecResult(result, info.WorkspaceId);
    }

    /// <summary>Powers a VM off cleanly; its disk is kept for <see cref="StartVmAsync"/>.</summary>
    /// <exception cref="PyroInputException"><c>workspace_not_found</c> or <c>not_a_vm</c>.</exception>
    public async Task<WorkspaceInfo> StopVmAsync(string vmId, CancellationToken cancellationToken = default)
    {
        var info = await GetVmAsync(vmId, cancellationToken).ConfigureAwait(false);
        return await StopWorkspaceAsync(info.WorkspaceId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Deletes a VM: its process, disk and history. Expired VMs go with <see cref="ReapExpiredWorkspacesAsync"/>.</summary>
    /// <exception cref="PyroInputException"><c>workspace_not_found</c> or <c>not_a_vm</c> (nothing was deleted).</exception>
    public async Task<bool> DeleteVmAsync(string vmId, CancellationToken cancellationToken = default)
    {
        var info = await GetVmAsync(vmId, cancellationToken).ConfigureAwait(false);
        return await DeleteWorkspaceAsync(info.WorkspaceId, cancellationToken).ConfigureAwait(false);
    }

    private static bool IsVm(WorkspaceInfo info)
        => info.Labels.TryGetValue(VmLabels.Kind, out var kind) && kind == VmLabels.Vm;
}
