using System.Collections.Concurrent;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace PyroMcp.GuestTests;

/// <summary>
/// Marks a test whose guest work may run in a lane beside the class's other tests: it must use
/// scratch (run and state directories) of its own and check that scratch clean itself, because
/// the other tests' leftover checks only look at this run's shared scratch. <see cref="Order"/>
/// places it among the class's tests (the others are 0): a lane that starts first and is awaited
/// last (order &gt; 0) overlaps the whole class; lanes awaited first (order &lt; 0) overlap each other.
/// <see cref="When"/>, if set, limits a theory to the rows with an argument that contains it.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class LaneAttribute(int order) : Attribute
{
    public int Order { get; } = order;

    public string? When { get; set; }
}

/// <summary>
/// Puts a class's test cases in <see cref="LaneAttribute.Order"/> (stable otherwise) and records
/// which lanes this run selected, so that <see cref="Lanes"/> starts only those.
/// </summary>
public sealed class LaneOrderer : ITestCaseOrderer
{
    private static readonly ConcurrentDictionary<string, IReadOnlyList<string>> Selected = new();

    public const string Name = "PyroMcp.GuestTests.LaneOrderer";

    public const string Assembly = "PyroMcp.GuestTests";

    /// <summary>The lanes of <paramref name="testClass"/> this run will run, in order (empty if no run was ordered by this orderer).</summary>
    internal static IReadOnlyList<string> SelectedLanes(Type testClass) => Selected.GetValueOrDefault(testClass.FullName!, []);

    /// <summary>The key a lane is known by: the method name, then a theory row's arguments.</summary>
    internal static string Key(string method, params object?[] arguments) => string.Join('\u001f', [method, .. arguments.Select(a => a?.ToString() ?? "")]);

    public IEnumerable<TTestCase> OrderTestCases<TTestCase>(IEnumerable<TTestCase> testCases) where TTestCase : ITestCase
    {
        var ordered = testCases.Select(c => (Case: c, Order: OrderOf(c))).OrderBy(c => c.Order).ToList();
        if (ordered.Count > 0)
        {
            Selected[ordered[0].Case.TestMethod.TestClass.Class.Name] =
                [.. ordered.Where(c => c.Order != 0).Select(c => Key(c.Case.TestMethod.Method.Name, c.Case.TestMethodArguments ?? []))];
        }

        return ordered.Select(c => c.Case);
    }

    private static int OrderOf(ITestCase testCase)
    {
        var lane = testCase.TestMethod.Method.GetCustomAttributes(typeof(LaneAttribute)).FirstOrDefault();
        if (lane is null)
        {
            return 0;
        }

        var when = lane.GetNamedArgument<string?>(nameof(LaneAttribute.When));
        if (when is not null && !(testCase.TestMethodArguments ?? []).Any(a => a?.ToString()?.Contains(when, StringComparison.Ordinal) == true))
        {
            return 0;
        }

        return lane.GetConstructorArguments().Cast<int>().Single();
    }
}

/// <summary>
/// Runs a class's lanes two at a time (guests use one vCPU; two on two cores give about 1.6 times
/// the throughput of one). Every lane the run selected starts with the class's first test; each
/// test awaits its own lane, so a lane's failure is its own test's failure.
/// </summary>
public sealed class Lanes : IAsyncLifetime
{
    private readonly SemaphoreSlim _gate = new(2);
    private readonly Lock _lock = new();
    private Dictionary<string, Task>? _started;

    /// <summary>Starts the selected lanes of <paramref name="testClass"/> once; <paramref name="bodies"/> maps a lane key to its work.</summary>
    internal void Begin(Type testClass, Func<string, Func<Task>> bodies)
    {
        lock (_lock)
        {
            _started ??= LaneOrderer.SelectedLanes(testClass).ToDictionary(key => key, key => Gated(bodies(key)));
        }
    }

    /// <summary>The lane <paramref name="key"/>: the one already started, or (when no orderer selected it) started now.</summary>
    internal Task RunAsync(string key, Func<Task> body)
    {
        lock (_lock)
        {
            return _started is not null && _started.TryGetValue(key, out var task) ? task : Gated(body);
        }
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        // Every lane is awaited by its own test, which reports its failure; this only makes sure
        // nothing is still running when the class is done.
        foreach (var task in (IEnumerable<Task>?)_started?.Values ?? [])
        {
            try
            {
                await task;
            }
            catch (Exception)
            {
            }
        }
    }

    private async Task Gated(Func<Task> body)
    {
        await _gate.WaitAsync();
        try
        {
            await body();
        }
        finally
        {
            _gate.Release();
        }
    }
}

/// <summary>Run and state directories of one lane, checked clean (no QEMU, no supervisor, no VM directory) and removed at the end.</summary>
internal sealed class LaneScratch : IAsyncDisposable
{
    internal LaneScratch(string name)
    {
        Root = Directory.CreateTempSubdirectory($"pyro-lane-{name}-").FullName;
        // pyro makes these itself, private (0700), as it insists.
        RunDir = Path.Combine(Root, "run");
        StateDir = Path.Combine(Root, "state");
    }

    internal string Root { get; }

    internal string RunDir { get; }

    internal string StateDir { get; }

    /// <summary>The variables that point a child pyro at this lane's scratch.</summary>
    internal Dictionary<string, string> Env => new() { ["PYRO_RUN_DIR"] = RunDir, ["PYRO_STATE_DIR"] = StateDir };

    /// <summary>Asserts nothing of the lane is left; call it at the end of the lane's work.</summary>
    internal Task AssertCleanAsync() => Leftovers.AssertNoneAsync(RunDir, StateDir);

    public ValueTask DisposeAsync()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }

        return ValueTask.CompletedTask;
    }
}
