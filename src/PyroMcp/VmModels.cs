using System.Diagnostics.CodeAnalysis;
using System.Text.Json.Serialization;

namespace PyroMcp;

/// <summary>The label that tells a VM made by <see cref="Pyro.CreateVmAsync"/> from a workspace.</summary>
/// <remarks>
/// A VM is a workspace without seed files that carries <see cref="Kind"/>=<see cref="Vm"/>. The VM
/// methods act only on workspaces with this label, since <see cref="Pyro.ExecVmAsync"/> deletes the
/// machine it ran in; the workspace methods work on VMs too.
/// </remarks>
public static class VmLabels
{
    /// <summary>The label key, <c>pyro.kind</c>.</summary>
    public const string Kind = "pyro.kind";

    /// <summary>Its value on a VM, <c>vm</c>.</summary>
    public const string Vm = "vm";
}

/// <summary>What a new VM is made from (<see cref="Pyro.CreateVmAsync"/>).</summary>
public sealed record VmCreateRequest
{
    /// <summary>Catalog environment, e.g. <c>debian:12</c>.</summary>
    public required string Environment { get; init; }
    /// <summary>Virtual CPUs, 1 to 32. Default 1.</summary>
    public int VcpuCount { get; init; } = 1;
    /// <summary>Guest memory in MiB, 128 to 65536. Default 1024.</summary>
    public int MemMib { get; init; } = 1024;
    /// <summary>Lifetime in seconds (10 to 604800); when it runs out the VM is deleted. Default 600.</summary>
    public int TtlSeconds { get; init; } = 600;
    /// <summary>Give the guest outbound network (<see cref="NetworkPolicy.Egress"/>); off by default.</summary>
    public bool Network { get; init; }
    /// <summary>Receives <c>[workspace-create] phase=...</c> updates (and pull phases when the environment is built).</summary>
    public IProgress<PyroProgress>? Progress { get; init; }
}

/// <summary>
/// The outcome of <see cref="Pyro.ExecVmAsync"/>: the shared <see cref="ExecResult"/> fields, where the
/// command ran, and that the VM is gone.
/// </summary>
public sealed record VmExecResult : ExecResult
{
    /// <summary>An empty result, for callers that build one themselves (tests, fakes).</summary>
    public VmExecResult()
    {
    }

    /// <summary>What <paramref name="ran"/> returned, from VM <paramref name="vmId"/> that is now deleted.</summary>
    [SetsRequiredMembers]
    internal VmExecResult(WorkspaceExecResult ran, string vmId)
        : base(ran)
    {
        WorkspaceId = ran.WorkspaceId;
        Sequence = ran.Sequence;
        Command = ran.Command;
        Cwd = ran.Cwd;
        ExecutionMode = ran.ExecutionMode;
        VmId = vmId;
        AutoDeleted = true;
    }

    /// <summary>The VM's id as a workspace; the same as <see cref="VmId"/>.</summary>
    [JsonPropertyOrder(-5)]
    public required string WorkspaceId { get; init; }
    /// <summary>The command's place in the VM's history (1 unless workspace methods ran commands in it before).</summary>
    [JsonPropertyOrder(-4)]
    public int Sequence { get; init; }
    /// <summary>The command as given.</summary>
    [JsonPropertyOrder(-3)]
    public required override string Command { get; init; }
    /// <summary>Working directory it ran in (<c>/workspace</c>).</summary>
    [JsonPropertyOrder(-2)]
    public required string Cwd { get; init; }
    /// <summary>How it ran: always <see cref="ExecutionMode.Guest"/>.</summary>
    [JsonPropertyOrder(-1)]
    public override ExecutionMode ExecutionMode { get; init; } = ExecutionMode.Guest;
    /// <summary>The VM that ran it.</summary>
    [JsonPropertyOrder(1)]
    public required string VmId { get; init; }
    /// <summary>The VM was deleted after the command, as every <see cref="Pyro.ExecVmAsync"/> does: always true when a result is returned.</summary>
    [JsonPropertyOrder(2)]
    public bool AutoDeleted { get; init; }
}

/// <summary>A VM's network (<see cref="Pyro.GetVmNetworkInfoAsync"/>).</summary>
public sealed record VmNetworkInfo
{
    /// <summary>The VM.</summary>
    public required string VmId { get; init; }
    /// <summary>Its policy: <see cref="NetworkPolicy.Off"/> or <see cref="NetworkPolicy.Egress"/>.</summary>
    public NetworkPolicy NetworkPolicy { get; init; }
    /// <summary>Its state; the guest network exists only while it runs.</summary>
    public WorkspaceState State { get; init; }
    /// <summary>Address, gateway and DNS the guest got at boot; null without a network or while not running.</summary>
    public GuestNetwork? Network { get; init; }
    /// <summary>Why a guest that should have a network has none, if so.</summary>
    public string? NetworkError { get; init; }
    /// <summary>Guest ports published on the host's 127.0.0.1.</summary>
    public IReadOnlyList<PublishedPort> PublishedPorts { get; init; } = [];
}
