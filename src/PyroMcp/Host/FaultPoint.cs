using System.Runtime.InteropServices;

namespace PyroMcp.Host;

/// <summary>
/// Named points where the fault-matrix tests kill a pyro process (SIGKILL to itself, so nothing
/// runs after: no finally, no flush). A point fires only when <c>PYRO_FAULT</c> names it. The
/// variable is for tests; whoever can set a process's environment can already kill it.
/// </summary>
internal static partial class FaultPoint
{
    private static readonly string? Armed = Environment.GetEnvironmentVariable("PYRO_FAULT") is { Length: > 0 } value ? value : null;

    /// <summary>Dies here, at once, if the tests armed this point.</summary>
    internal static void Hit(string name)
    {
        if (Armed is not null && string.Equals(Armed, name, StringComparison.Ordinal))
        {
            _ = Kill(Environment.ProcessId, 9);
        }
    }

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);
}
