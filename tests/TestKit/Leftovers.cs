namespace PyroMcp.TestKit;

/// <summary>Checks that nothing a test started outlives it: no QEMU of this run, no VM scratch.</summary>
internal static class Leftovers
{
    internal static IReadOnlyList<string> QemuProcesses()
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
                if ((cmdline.Contains("qemu-system") || cmdline.Contains("pyro-supervisor")) && (cmdline.Contains(Repo.RunDir) || cmdline.Contains(Repo.StateDir)))
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

    internal static IReadOnlyList<string> VmDirectories()
    {
        var vms = Path.Combine(Repo.RunDir, "vms");
        var workspaces = Path.Combine(Repo.StateDir, "workspaces");
        return [.. Directory.Exists(vms) ? Directory.GetDirectories(vms) : [], .. Directory.Exists(workspaces) ? Directory.GetDirectories(workspaces) : []];
    }

    /// <summary>Asserts the machine is clean, giving a VM that is being torn down a moment to go.</summary>
    internal static async Task AssertNoneAsync()
    {
        for (var i = 0; i < 50 && (QemuProcesses().Count > 0 || VmDirectories().Count > 0); i++)
        {
            await Task.Delay(100);
        }

        Assert.Empty(QemuProcesses());
        Assert.Empty(VmDirectories());
    }
}
