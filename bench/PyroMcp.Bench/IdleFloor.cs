using System.Diagnostics;
using System.Globalization;
using System.Text;
using PyroMcp.Host;
using PyroMcp.Runtime;
using PyroMcp.Vmm;

/// <summary>
/// The idle-memory floor: a bare QEMU of the same size, kernel, initramfs and disk, with the
/// runtime's own command line, whose guest mounts the disk and sleeps (<c>pyro.bare=idle</c>): no
/// agent, no supervisor. Its RSS is read once it has been up as long as the workspace it is
/// compared with, since a guest's resident memory grows with its age (page cache, timers, slab).
/// </summary>
internal static class IdleFloor
{
    /// <summary>The QEMU among <paramref name="pids"/> (a supervisor's descendants).</summary>
    internal static int FindQemu(IEnumerable<int> pids)
        => pids.FirstOrDefault(IsQemu) is var pid and > 0 ? pid : throw new InvalidOperationException("no QEMU among the workspace's processes");

    /// <summary>Seconds since a process started, from its start time in /proc (clock ticks since boot).</summary>
    internal static double AgeSeconds(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        // Fields after the command name, which is in parentheses and may hold spaces: state is field 3, starttime field 22.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        var startTicks = double.Parse(fields[22 - 3], CultureInfo.InvariantCulture);
        var uptime = double.Parse(File.ReadAllText("/proc/uptime").Split(' ')[0], CultureInfo.InvariantCulture);
        // USER_HZ is 100 on every Linux the runtime supports (x86-64); sysconf is not worth a P/Invoke here.
        return uptime - (startTicks / 100);
    }

    /// <summary>
    /// Boots the bare idle guest, waits until its QEMU is <paramref name="ageSeconds"/> old, and
    /// returns that QEMU's RSS in MiB. QEMU is killed and its disk removed before this returns.
    /// </summary>
    internal static async Task<double> BareQemuIdleRssMibAsync(VmSpec spec, string rootfsImage, RuntimeBundle bundle, double ageSeconds, CancellationToken cancellationToken)
    {
        var dir = Directory.CreateTempSubdirectory("pyro-bench-idle-").FullName;
        Process? qemu = null;
        var stderr = new StringBuilder();
        try
        {
            var disk = Path.Combine(dir, "disk.qcow2");
            await QemuVm.CreateOverlayAsync(rootfsImage, disk, cancellationToken);
            var dropTo = HostTools.QemuDropUser();
            var launch = new QemuLaunch(QemuVm.NewId(), spec, bundle.KernelPath, bundle.InitramfsPath, disk, Path.Combine(dir, "agent.sock"), dropTo, Bare: true, BareIdle: true);
            // Tied to this process as the runtime's QEMUs are: a bench killed midway leaves no guest sleeping forever.
            qemu = await QemuVm.SpawnAsync(launch, dir);
            qemu.StandardInput.Close();
            _ = qemu.StandardOutput.BaseStream.CopyToAsync(Stream.Null, CancellationToken.None);
            var errors = Task.Run(async () =>
            {
                while (await qemu.StandardError.ReadLineAsync(CancellationToken.None) is { } line)
                {
                    lock (stderr)
                    {
                        stderr.AppendLine(line.Length > 500 ? line[..500] : line);
                    }
                }
            }, CancellationToken.None);

            var pid = 0;
            while (true)
            {
                if (qemu.HasExited)
                {
                    await Task.WhenAny(errors, Task.Delay(1000, CancellationToken.None));
                    lock (stderr)
                    {
                        throw new InvalidOperationException($"the bare idle QEMU exited ({qemu.ExitCode}) before it was {ageSeconds:0} s old: {stderr}");
                    }
                }

                pid = pid > 0 ? pid : new[] { qemu.Id }.Concat(Descendants(qemu.Id)).FirstOrDefault(IsQemu);
                if (pid > 0 && AgeSeconds(pid) >= ageSeconds)
                {
                    return ResidentMib(pid);
                }

                await Task.Delay(200, cancellationToken);
            }
        }
        finally
        {
            if (qemu is not null)
            {
                if (!qemu.HasExited)
                {
                    qemu.Kill();
                }

                await qemu.WaitForExitAsync(CancellationToken.None);
                qemu.Dispose();
            }

            Directory.Delete(dir, recursive: true);
        }
    }

    internal static double ResidentMib(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return double.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024.0;
    }

    private static bool IsQemu(int pid)
    {
        try
        {
            // comm is cut at 15 characters: "qemu-system-x86".
            return File.ReadAllText($"/proc/{pid}/comm").StartsWith("qemu-system", StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static IEnumerable<int> Descendants(int pid)
    {
        var queue = new Queue<int>([pid]);
        while (queue.TryDequeue(out var next))
        {
            string children;
            try
            {
                children = File.ReadAllText($"/proc/{next}/task/{next}/children");
            }
            catch (IOException)
            {
                continue;
            }

            foreach (var child in children.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(c => int.Parse(c, CultureInfo.InvariantCulture)))
            {
                yield return child;
                queue.Enqueue(child);
            }
        }
    }
}
