using System.Text.Json.Serialization;

namespace PyroMcp;

/// <summary>
/// Where a workspace is in its life. The states ending in -ing are transitions in progress, each
/// owned by one process; a crash of that process is repaired by the next call that looks at the
/// workspace. JSON and the CLI spell them in lower case ("running").
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<WorkspaceState>))]
public enum WorkspaceState
{
    /// <summary>Being created: disk, boot, seed and baseline. Becomes running, or is removed whole if creation fails.</summary>
    [JsonStringEnumMemberName("creating")] Creating,
    /// <summary>Booting again from its disk.</summary>
    [JsonStringEnumMemberName("starting")] Starting,
    /// <summary>The VM is up and its supervisor serves clients.</summary>
    [JsonStringEnumMemberName("running")] Running,
    /// <summary>Flushing the guest's file systems and powering off.</summary>
    [JsonStringEnumMemberName("stopping")] Stopping,
    /// <summary>The VM is down, its disk kept: starting it boots it again.</summary>
    [JsonStringEnumMemberName("stopped")] Stopped,
    /// <summary>Being reset to its baseline or a snapshot.</summary>
    [JsonStringEnumMemberName("resetting")] Resetting,
    /// <summary>Being deleted.</summary>
    [JsonStringEnumMemberName("deleting")] Deleting,
    /// <summary>The supervisor or QEMU died unexpectedly; the disk is kept: start, reset or delete it.</summary>
    [JsonStringEnumMemberName("crashed")] Crashed,
    /// <summary>A reset failed or was interrupted; the reason says at which step. Reset or delete it.</summary>
    [JsonStringEnumMemberName("failed")] Failed,
}

/// <summary>The lower-case names of <see cref="WorkspaceState"/>, as JSON, the CLI and the state database spell them.</summary>
public static class WorkspaceStateNames
{
    /// <summary>"running" for <see cref="WorkspaceState.Running"/>, and so on.</summary>
    public static string ToName(this WorkspaceState state) => state switch
    {
        WorkspaceState.Creating => "creating",
        WorkspaceState.Starting => "starting",
        WorkspaceState.Running => "running",
        WorkspaceState.Stopping => "stopping",
        WorkspaceState.Stopped => "stopped",
        WorkspaceState.Resetting => "resetting",
        WorkspaceState.Deleting => "deleting",
        WorkspaceState.Crashed => "crashed",
        WorkspaceState.Failed => "failed",
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, null),
    };

    /// <summary>The state a lower-case name stands for.</summary>
    /// <exception cref="ArgumentException">The name is not a state.</exception>
    public static WorkspaceState Parse(string name)
        => Enum.GetValues<WorkspaceState>().FirstOrDefault(s => s.ToName() == name, (WorkspaceState)(-1)) is var state && state >= 0
            ? state
            : throw new ArgumentException($"'{name}' is not a workspace state", nameof(name));
}
