using System.Text.RegularExpressions;

namespace PyroMcp.GuestTests;

/// <summary>The guest agent's boot-time PTY set-up, in a real guest.</summary>
public sealed class AgentPtyGuestTests : GuestTest
{
    [Fact]
    public async Task TheAgentMountsDevptsSoTerminalsOpenInTheGuest()
    {
        var pyro = new Pyro(PyroScratch.Options);
        var vm = await pyro.CreateVmAsync(new VmCreateRequest { Environment = "debian:12", TtlSeconds = 300 });

        // The initramfs mounts devtmpfs only; without the agent's devpts no PTY can be opened.
        var result = await pyro.ExecVmAsync(vm.WorkspaceId, ["grep -c ' /dev/pts devpts ' /proc/mounts; script -qc tty /dev/null"]);

        Assert.True(result.ExitCode == 0, $"exit {result.ExitCode}: {result.Stdout} {result.Stderr}");
        Assert.Matches(new Regex(@"\A1\n/dev/pts/\d+\r?\n\z"), result.Stdout);
    }
}
