namespace PyroMcp.Tests;

/// <summary>
/// Base for tests that drive the built CLI or the MCP server but never boot a guest: after each
/// test nothing of this run may remain (no QEMU or supervisor, no VM or workspace directory).
/// </summary>
public abstract class NoGuestTest : IAsyncLifetime
{
    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual async Task DisposeAsync() => await Leftovers.AssertNoneAsync();
}
