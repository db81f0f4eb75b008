namespace PyroMcp.TestKit;

/// <summary>Checks that nothing a test started outlives it: no QEMU of this run, no VM scratch.</summary>
internal static class Leftovers
{
    internal static IReadOnlyList<string> QemuProcesses() => QemuProcesses(Repo.RunDir, Repo.StateDir);

    /// <summary>QEMU and supervisor processes whose command line names <paramref name="runDir"/> or <paramref name="stateDir"/>.</summary>
    internal static IReadOnlyList<string> QemuProcesses(string runDir, string stateDir)
    {
        var found = new List<string>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out _))
            {
                continue;
            }

            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                if ((cmdline.Contains("qemu-system") || cmdline.Contains("pyro-supervisor")) && (cmdline.Contains(runDir) || cmdline.Contains(stateDir)))
                {
                    found.Add(cmdline);
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return found;
    }

    internal static IReadOnlyList<string> VmDirectories() => VmDirectories(Repo.RunDir, Repo.StateDir);

    internal static IReadOnlyList<string> VmDirectories(string runDir, string stateDir)
    {
        var vms = Path.Combine(runDir, "vms");
        var workspaces = Path.Combine(stateDir, "workspaces");
        return [.. Directory.Exists(vms) ? Directory.GetDirectories(vms) : [], .. Directory.Exists(workspaces) ? Directory.GetDirectories(workspaces) : []];
    }

    /// <summary>Asserts the machine is clean, giving a VM that is being torn down a moment to go.</summary>
    internal static Task AssertNoneAsync() => AssertNoneAsync(Repo.RunDir, Repo.StateDir);

    /// <summary>The same, for scratch directories of a test's own.</summary>
    internal static async Task AssertNoneAsync(string runDir, string stateDir)
    {
        for (var i = 0; i < 50 && (QemuProcesses(runDir, stateDir).Count > 0 || VmDirectories(runDir, stateDir).Count > 0); i++)
        {
            await Task.Delay(100);
        }

        Assert.Empty(QemuProcesses(runDir, stateDir));
        Assert.Empty(VmDirectories(runDir, stateDir));
    }
}
