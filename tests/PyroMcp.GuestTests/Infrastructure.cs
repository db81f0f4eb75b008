namespace PyroMcp.GuestTests;

/// <summary>
/// Once per run: the host must be able to boot guests and debian:12 must be in the cache.
/// A host that cannot is a failure with the doctor's words, never a silent skip.
/// </summary>
public sealed class GuestFixture : IAsyncLifetime
{
    public async Task InitializeAsync()
    {
        Assert.True(File.Exists(Repo.Cli), $"the native CLI is not published at {Repo.Cli}: run ./test.sh");
        var doctor = await PyroCli.RunAsync("doctor");
        Assert.True(doctor.ExitCode == 0, "this host cannot boot guests; pyro doctor says:\n" + doctor);
        var pull = await PyroCli.RunAsync(["env", "pull", "debian:12"], timeout: TimeSpan.FromMinutes(10));
        Assert.True(pull.ExitCode == 0, "could not build debian:12:\n" + pull);
    }

    public Task DisposeAsync()
    {
        Repo.DeleteScratch();
        return Task.CompletedTask;
    }
}

[CollectionDefinition("guest")]
public sealed class GuestCollection : ICollectionFixture<GuestFixture>;

/// <summary>
/// Base for guest tests: a host directory of the test's own, the workspaces it created deleted
/// after it, and then nothing of it may remain.
/// </summary>
[Collection("guest")]
public abstract class GuestTest : IAsyncLifetime
{
    private readonly List<(string Id, IDictionary<string, string>? Env)> _workspaces = [];
    private TempDir? _host;

    /// <summary>A host directory of this test's own, made on first use and removed after the test.</summary>
    internal string HostDir => (_host ??= new TempDir($"pyro-{GetType().Name.ToLowerInvariant()}-")).Path;

    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual async Task DisposeAsync()
    {
        await DeleteWorkspacesAsync();
        _host?.Dispose();
        await Leftovers.AssertNoneAsync();
    }

    /// <summary>Creates a debian:12 workspace with <c>pyro workspace create --id-only</c>; it is deleted after the test.</summary>
    internal async Task<string> CreateWorkspaceAsync(IEnumerable<string>? extra = null, IDictionary<string, string>? env = null)
    {
        var result = await PyroCli.RunAsync(["workspace", "create", "debian:12", "--id-only", .. extra ?? []], env, TimeSpan.FromMinutes(5));
        Assert.True(result.ExitCode == 0, result.ToString());
        var id = result.Stdout.Trim();
        DeleteAfterwards(id, env);
        return id;
    }

    /// <summary>Deletes <paramref name="id"/> (with the same environment it was made with) after the test.</summary>
    internal void DeleteAfterwards(string id, IDictionary<string, string>? env = null) => _workspaces.Add((id, env));

    /// <summary>The test deleted <paramref name="id"/> itself.</summary>
    internal void Forget(string id) => _workspaces.RemoveAll(w => w.Id == id);

    /// <summary>Deletes every workspace still to be deleted now, ignoring failures: cleanup, not a check.</summary>
    internal async Task DeleteWorkspacesAsync()
    {
        foreach (var (id, env) in _workspaces)
        {
            await PyroCli.RunAsync(["workspace", "delete", id], env);
        }

        _workspaces.Clear();
    }
}

/// <summary>
/// Base for guest tests whose guests have a network: each test gets a <see cref="NetLab"/> of its
/// own, pyro runs inside it, and its workspaces are deleted before the lab goes.
/// </summary>
public abstract class LabGuestTest : GuestTest
{
    private NetLab? _lab;

    internal NetLab Lab => _lab ?? throw new InvalidOperationException("no lab yet");

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        _lab = await NetLab.StartAsync();
    }

    public override async Task DisposeAsync()
    {
        // Workspaces first (their supervisors live in the lab), then the lab, then the leftovers check.
        await DeleteWorkspacesAsync();
        if (_lab is not null)
        {
            await _lab.DisposeAsync();
        }

        await base.DisposeAsync();
    }
}
