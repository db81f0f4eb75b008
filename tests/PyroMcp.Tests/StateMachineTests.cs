using System.Text.RegularExpressions;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>The transition table: what it allows, that each move is a compare-and-set, and that the architecture doc draws the same graph.</summary>
public sealed partial class StateMachineTests : IDisposable
{
    private readonly string _state = Directory.CreateTempSubdirectory("pyro-states-").FullName;

    public void Dispose() => Directory.Delete(_state, recursive: true);

    private static WorkspaceRecord Record(string id, WorkspaceState state) => new()
    {
        Id = id, Environment = "debian:12", VcpuCount = 1, MemMib = 512, TtlSeconds = 600,
        CreatedAt = DateTimeOffset.UtcNow, ExpiresAt = DateTimeOffset.UtcNow.AddMinutes(10), State = state,
    };

    [Fact]
    public void TheArchitectureDocDrawsExactlyTheTable()
    {
        var doc = File.ReadAllText(Path.Combine(Repo.Root, "docs", "architecture.md"));
        var drawn = Edge().Matches(doc).Select(m => (m.Groups[1].Value, m.Groups[2].Value, m.Groups[3].Value.Trim())).ToHashSet();
        var table = WorkspaceTransition.All.SelectMany(t => t.From.Select(f => (f.ToName(), t.To.ToName(), t.Name))).ToHashSet();
        Assert.Equal(table.Order(), drawn.Order());
    }

    [Fact]
    public void NothingLeavesDeletingAndEveryStateIsReachable()
    {
        Assert.DoesNotContain(WorkspaceTransition.All, t => t.From.Contains(WorkspaceState.Deleting));
        var reached = new HashSet<WorkspaceState> { WorkspaceState.Creating };
        for (var grew = true; grew;)
        {
            grew = false;
            foreach (var t in WorkspaceTransition.All.Where(t => t.From.Any(reached.Contains)))
            {
                grew |= reached.Add(t.To);
            }
        }

        Assert.Equal(Enum.GetValues<WorkspaceState>().Order(), reached.Order());
        // Every state but deleting can be deleted.
        Assert.Equal(Enum.GetValues<WorkspaceState>().Where(s => s != WorkspaceState.Deleting).Order(), WorkspaceTransition.DeleteBegins.From.Order());
    }

    [Fact]
    public void ANewWorkspaceCanOnlyBeginAsCreating()
    {
        var store = new WorkspaceStore(_state);
        Assert.Throws<ArgumentException>(() => store.Insert(Record("0000000000a1", WorkspaceState.Running)));
        store.Insert(Record("0000000000a1", WorkspaceState.Creating));
        Assert.Equal(WorkspaceState.Creating, store.Get("0000000000a1").State);
    }

    [Fact]
    public void AMoveFromAStateTheTableDoesNotListIsRefusedBeforeTheDatabaseIsAsked()
    {
        var store = new WorkspaceStore(_state);
        StoreSeed.Insert(store, Record("0000000000b1", WorkspaceState.Stopped));
        Assert.Throws<InvalidOperationException>(() => store.TryMove("0000000000b1", WorkspaceTransition.CreateCompleted, WorkspaceState.Stopped, null));
        // A legal transition from a state the row is not in changes nothing.
        Assert.False(store.TryMove("0000000000b1", WorkspaceTransition.StartCompleted, WorkspaceState.Starting, null));
        Assert.Equal(WorkspaceState.Stopped, store.Get("0000000000b1").State);
    }

    /// <summary>For every edge of the table: sixteen callers (each with its own store, as separate processes have) race the same move; exactly one wins.</summary>
    [Fact]
    public async Task EveryTransitionIsWonByExactlyOneOfManyCallers()
    {
        var races = 0;
        foreach (var transition in WorkspaceTransition.All)
        {
            foreach (var from in transition.From)
            {
                var id = $"{races++:x12}";
                StoreSeed.Insert(new WorkspaceStore(_state), Record(id, from));
                var wins = await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Task.Run(() => new WorkspaceStore(_state).TryMove(id, transition, from, "raced"))));
                Assert.True(wins.Count(w => w) == 1, $"{transition}: {wins.Count(w => w)} winners");
                Assert.Equal(transition.To, new WorkspaceStore(_state).Get(id).State);
            }
        }

        TestKit.Figures.Record("state machine", $"{races} transitions raced by 16 callers each, {races} single winners, 0 double moves");
    }

    [GeneratedRegex(@"^\s+([a-z]+) --> ([a-z]+): ([a-z ]+)$", RegexOptions.Multiline)]
    private static partial Regex Edge();
}
