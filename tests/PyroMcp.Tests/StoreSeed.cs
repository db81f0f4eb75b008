using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>Puts rows into a store in any state the way pyro itself gets there: inserted as creating, then moved along the transition table.</summary>
internal static class StoreSeed
{
    internal static void Insert(WorkspaceStore store, WorkspaceRecord record)
    {
        store.Insert(record with { State = WorkspaceState.Creating });
        foreach (var (transition, from) in PathTo(record.State))
        {
            Assert.True(store.TryMove(record.Id, transition, from, null), $"{transition} did not apply");
        }
    }

    private static IEnumerable<(WorkspaceTransition, WorkspaceState)> PathTo(WorkspaceState state)
    {
        if (state is WorkspaceState.Creating)
        {
            yield break;
        }

        if (state is WorkspaceState.Deleting)
        {
            yield return (WorkspaceTransition.DeleteBegins, WorkspaceState.Creating);
            yield break;
        }

        yield return (WorkspaceTransition.CreateCompleted, WorkspaceState.Creating);
        switch (state)
        {
            case WorkspaceState.Stopped or WorkspaceState.Stopping or WorkspaceState.Starting:
                yield return (WorkspaceTransition.StopBegins, WorkspaceState.Running);
                if (state is not WorkspaceState.Stopping)
                {
                    yield return (WorkspaceTransition.StopCompleted, WorkspaceState.Stopping);
                }

                if (state is WorkspaceState.Starting)
                {
                    yield return (WorkspaceTransition.StartBegins, WorkspaceState.Stopped);
                }

                break;
            case WorkspaceState.Crashed:
                yield return (WorkspaceTransition.Crash, WorkspaceState.Running);
                break;
            case WorkspaceState.Resetting or WorkspaceState.Failed:
                yield return (WorkspaceTransition.ResetBegins, WorkspaceState.Running);
                if (state is WorkspaceState.Failed)
                {
                    yield return (WorkspaceTransition.ResetFailed, WorkspaceState.Resetting);
                }

                break;
        }
    }
}
