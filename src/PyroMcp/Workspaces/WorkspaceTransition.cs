namespace PyroMcp.Workspaces;

/// <summary>
/// One allowed change of a workspace's state. The instances below are the whole transition table;
/// the constructor is private and <see cref="WorkspaceStore.TryMove"/> takes nothing else, so a
/// change the table does not list cannot be written, not merely fails a check. Each move is a
/// compare-and-set (<c>UPDATE ... WHERE state = @from</c>): of two callers, only one wins.
/// </summary>
internal sealed class WorkspaceTransition
{
    private WorkspaceTransition(string name, WorkspaceState to, params WorkspaceState[] from)
    {
        Name = name;
        To = to;
        From = from;
    }

    internal string Name { get; }
    internal WorkspaceState To { get; }
    internal IReadOnlyList<WorkspaceState> From { get; }

    /// <summary>Seed and baseline are in place: the workspace is usable.</summary>
    internal static readonly WorkspaceTransition CreateCompleted = new("create completed", WorkspaceState.Running, WorkspaceState.Creating);
    internal static readonly WorkspaceTransition StartBegins = new("start begins", WorkspaceState.Starting, WorkspaceState.Stopped, WorkspaceState.Crashed);
    internal static readonly WorkspaceTransition StartCompleted = new("start completed", WorkspaceState.Running, WorkspaceState.Starting);
    /// <summary>The VM did not come up (or its starter died): the disk is as it was.</summary>
    internal static readonly WorkspaceTransition StartFailed = new("start failed", WorkspaceState.Stopped, WorkspaceState.Starting);
    internal static readonly WorkspaceTransition StopBegins = new("stop begins", WorkspaceState.Stopping, WorkspaceState.Running, WorkspaceState.Crashed);
    internal static readonly WorkspaceTransition StopCompleted = new("stop completed", WorkspaceState.Stopped, WorkspaceState.Stopping);
    /// <summary>The supervisor was told to end by a signal (host shutdown) and powered the guest off cleanly.</summary>
    internal static readonly WorkspaceTransition SupervisorStopped = new("supervisor stopped", WorkspaceState.Stopped, WorkspaceState.Running);
    /// <summary>QEMU or the supervisor died under a running workspace.</summary>
    internal static readonly WorkspaceTransition Crash = new("crash", WorkspaceState.Crashed, WorkspaceState.Running);
    internal static readonly WorkspaceTransition ResetBegins = new("reset begins", WorkspaceState.Resetting,
        WorkspaceState.Running, WorkspaceState.Stopped, WorkspaceState.Crashed, WorkspaceState.Failed);
    internal static readonly WorkspaceTransition ResetCompleted = new("reset completed", WorkspaceState.Running, WorkspaceState.Resetting);
    internal static readonly WorkspaceTransition ResetFailed = new("reset failed", WorkspaceState.Failed, WorkspaceState.Resetting);
    /// <summary>Anything but a delete already under way may be deleted; the row goes when the files are gone.</summary>
    internal static readonly WorkspaceTransition DeleteBegins = new("delete begins", WorkspaceState.Deleting,
        WorkspaceState.Creating, WorkspaceState.Starting, WorkspaceState.Running, WorkspaceState.Stopping, WorkspaceState.Stopped,
        WorkspaceState.Resetting, WorkspaceState.Crashed, WorkspaceState.Failed);

    /// <summary>The whole table, for the docs and the tests.</summary>
    internal static IReadOnlyList<WorkspaceTransition> All { get; } =
    [
        CreateCompleted, StartBegins, StartCompleted, StartFailed, StopBegins, StopCompleted, SupervisorStopped, Crash,
        ResetBegins, ResetCompleted, ResetFailed, DeleteBegins,
    ];

    /// <summary>States that are an operation in progress, owned by whoever holds the workspace's operation lock.</summary>
    internal static bool IsInProgress(WorkspaceState state)
        => state is WorkspaceState.Creating or WorkspaceState.Starting or WorkspaceState.Stopping or WorkspaceState.Resetting or WorkspaceState.Deleting;

    /// <summary>States in which a supervisor is launched for the workspace (and may register itself).</summary>
    internal static bool IsLaunching(WorkspaceState state)
        => state is WorkspaceState.Creating or WorkspaceState.Starting or WorkspaceState.Resetting;

    /// <summary>States in which a live supervisor belongs to the workspace.</summary>
    internal static bool HasSupervisor(WorkspaceState state)
        => IsLaunching(state) || state is WorkspaceState.Running or WorkspaceState.Stopping or WorkspaceState.Deleting;

    public override string ToString() => $"{Name}: {string.Join("|", From.Select(s => s.ToName()))} -> {To.ToName()}";
}
