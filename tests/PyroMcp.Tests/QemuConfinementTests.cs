using System.Diagnostics;
using PyroMcp.Host;
using PyroMcp.Vmm;

namespace PyroMcp.Tests;

/// <summary>QEMU's command line (escaping, sandbox, privilege drop) and the owner tie of a program that drops privileges.</summary>
public sealed class QemuConfinementTests
{
    private static QemuLaunch Launch(string directory, string? runAs = null)
        => new("0123456789ab", new VmSpec(1, 512, Accelerator.Tcg), "/k/vmlinuz", "/k/initrd", Path.Combine(directory, "disk.qcow2"), Path.Combine(directory, "agent.sock"), runAs);

    /// <summary>Splits a QEMU option string the way QEMU does: a single comma separates, a doubled one is a literal comma.</summary>
    private static List<KeyValuePair<string, string>> ParseQemuOptions(string value)
    {
        var parts = new List<string>();
        var current = new System.Text.StringBuilder();
        for (var i = 0; i < value.Length; i++)
        {
            if (value[i] == ',' && i + 1 < value.Length && value[i + 1] == ',')
            {
                current.Append(',');
                i++;
            }
            else if (value[i] == ',')
            {
                parts.Add(current.ToString());
                current.Clear();
            }
            else
            {
                current.Append(value[i]);
            }
        }

        parts.Add(current.ToString());
        return parts.Select(p => p.Split('=', 2) is [var k, var v] ? new KeyValuePair<string, string>(k, v) : new KeyValuePair<string, string>(p, "")).ToList();
    }

    private static string ValueAfter(IReadOnlyList<string> args, string option, string startsWith)
    {
        for (var i = 0; i < args.Count - 1; i++)
        {
            if (args[i] == option && args[i + 1].StartsWith(startsWith, StringComparison.Ordinal))
            {
                return args[i + 1];
            }
        }

        throw new Xunit.Sdk.XunitException($"no {option} {startsWith}... in: {string.Join(' ', args)}");
    }

    [Fact]
    public void APathWithInjectedOptionsStaysOneValue()
    {
        string[] hostile =
        [
            "/tmp/a,b",
            "/tmp/x,readonly=off,file=/etc/shadow",
            "/tmp/x,,file=/etc/shadow",
            "/tmp/x,format=raw,file=/dev/sda",
            "/tmp/x,server=off,path=/run/other.sock",
            "/tmp/,,,,,",
            "/tmp/x,id=evil,if=virtio",
            "/tmp/end,",
        ];
        var injected = 0;
        foreach (var dir in hostile)
        {
            var args = QemuCommandLine.Build(Launch(dir));
            var drive = ParseQemuOptions(ValueAfter(args, "-drive", "id=root,"));
            var socket = ParseQemuOptions(ValueAfter(args, "-chardev", "socket,"));

            var driveKeys = drive.Select(p => p.Key).ToList();
            var socketKeys = socket.Select(p => p.Key).ToList();
            var clean = driveKeys.SequenceEqual(["id", "file", "format", "if", "discard"])
                && socketKeys.SequenceEqual(["socket", "id", "path", "server", "wait"])
                && drive.Single(p => p.Key == "file").Value == Path.GetFullPath(Path.Combine(dir, "disk.qcow2"))
                && socket.Single(p => p.Key == "path").Value == Path.GetFullPath(Path.Combine(dir, "agent.sock"))
                && drive.Single(p => p.Key == "format").Value == "qcow2";
            injected += clean ? 0 : 1;
            Assert.True(clean, $"{dir}: drive {string.Join(" | ", drive)}; socket {string.Join(" | ", socket)}");
        }

        Figures.Record("QEMU option escaping", $"{hostile.Length} hostile paths tried, {injected} injected options");
        Assert.Equal(0, injected);
    }

    [Fact]
    public void AValueQemuCannotCarryIsRefusedWithAClearError()
    {
        var ex = Assert.Throws<PyroInputException>(() => QemuCommandLine.Build(Launch("/tmp/line\nbreak")));
        Assert.Equal("unsupported_path", ex.Code);
        Assert.Contains("Choose a directory", ex.Message);
    }

    [Fact]
    public void TheSandboxIsAlwaysOnAndTheDropOnlyWhenAsked()
    {
        var caller = QemuCommandLine.Build(Launch("/tmp/vm"));
        Assert.Equal("on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny", ValueAfter(caller, "-sandbox", "on"));
        Assert.DoesNotContain("-runas", caller);

        var dropping = QemuCommandLine.Build(Launch("/tmp/vm", "pyro-qemu"));
        // elevateprivileges=deny kills QEMU 7.2 at its own setuid: only the drop path leaves it out.
        Assert.Equal("on,obsolete=deny,spawn=deny,resourcecontrol=deny", ValueAfter(dropping, "-sandbox", "on"));
        Assert.Equal("pyro-qemu", ValueAfter(dropping, "-runas", ""));
    }

    [Fact]
    public void AsRootQemuDropsToADedicatedUserOrNobody()
    {
        Assert.True(HostTools.RunningAsRoot, "this test checks the root path; the test suite runs as root here and in CI");
        var expected = HostTools.UserExists("pyro-qemu") ? "pyro-qemu" : "nobody";
        Assert.Equal(expected, HostTools.QemuDropUser());
        Assert.True(HostTools.UserExists("root"));
        Assert.False(HostTools.UserExists("no-such-user-" + Guid.NewGuid().ToString("N")[..8]));
    }

    /// <summary>A program tied in its own PID namespace that drops to nobody, like QEMU -runas does.</summary>
    private static Task<Process> StartDroppingSleeper(string marker, string exit = "sleep 600")
        => ProcessRunner.StartTiedToOwnerAsync(HostTools.Setpriv.Require(),
            ["--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-c", $"{exit} # {marker}"], ownPidNamespace: true);

    private static int? FindNobodyProcess(string marker)
    {
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
            {
                continue;
            }

            try
            {
                if (File.ReadAllText(Path.Combine(dir, "cmdline")).Contains(marker, StringComparison.Ordinal)
                    && File.ReadLines(Path.Combine(dir, "status")).Any(l => l.StartsWith("Uid:", StringComparison.Ordinal) && l.Split('\t', StringSplitOptions.RemoveEmptyEntries)[2] == "65534"))
                {
                    return pid;
                }
            }
            catch (IOException)
            {
            }
        }

        return null;
    }

    private static async Task<int> WaitForAsync(Func<int?> probe, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            if (probe() is { } pid)
            {
                return pid;
            }

            await Task.Delay(20);
        }

        throw new Xunit.Sdk.XunitException("timed out waiting for " + what);
    }

    [Fact]
    public async Task KillingTheLauncherTakesTheDroppedProgramDown()
    {
        Assert.True(HostTools.RunningAsRoot, "the PID-namespace launch is the root path; the test suite runs as root here and in CI");
        var marker = "pyro-test-" + Guid.NewGuid().ToString("N");
        using var launcher = await StartDroppingSleeper(marker);
        var inner = await WaitForAsync(() => FindNobodyProcess(marker), "the dropped program to start");
        // The innermost process is the dropped program's own (or its child): not the root launcher.
        var innermost = ProcessRunner.Innermost(launcher.Id);
        Assert.NotEqual(launcher.Id, innermost);
        Assert.Contains(File.ReadLines($"/proc/{innermost}/status"), l => l.StartsWith("Uid:\t65534", StringComparison.Ordinal));

        launcher.Kill();
        await launcher.WaitForExitAsync();
        await WaitForAsync(() => Directory.Exists($"/proc/{inner}") || Directory.Exists($"/proc/{innermost}") ? null : 0, "the dropped program to die with its launcher");
        Assert.Null(FindNobodyProcess(marker));
    }

    [Fact]
    public async Task TheDroppedProgramsExitCodeAndOutputComeThrough()
    {
        Assert.True(HostTools.RunningAsRoot, "the PID-namespace launch is the root path; the test suite runs as root here and in CI");
        using var launcher = await StartDroppingSleeper("exit-code", "echo out; echo err >&2; id -u; exit 7");
        launcher.StandardInput.Close();
        var stdout = launcher.StandardOutput.ReadToEndAsync();
        var stderr = launcher.StandardError.ReadToEndAsync();
        await launcher.WaitForExitAsync();
        Assert.Equal(7, launcher.ExitCode);
        Assert.Equal("out\n65534\n", await stdout);
        Assert.Equal("err\n", await stderr);
    }
}
