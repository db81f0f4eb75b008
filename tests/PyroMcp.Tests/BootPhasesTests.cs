using PyroMcp.Vmm;

namespace PyroMcp.Tests;

/// <summary>The host's placing of the guest's boot times on its own clock (Vmm.BootClock.Phases).</summary>
public sealed class BootPhasesTests
{
    [Fact]
    public void PhasesSplitSpawnToFirstExecBackToBack()
    {
        // Spawn at 0, hello seen at 3000, the guest up 2400 ms then: the kernel started at 600.
        var phases = BootClock.Phases(helloMs: 3000, firstExecMs: 3250, uptimeMs: 2400, initStartMs: 900, agentStartMs: 1700);

        Assert.Equal(new BootPhases(QemuStart: 600, Kernel: 900, Init: 800, Agent: 700, FirstExec: 250), phases);
    }

    [Theory]
    // Uptime beyond what the host saw (coarse clocks, or a lying guest): the kernel started at spawn.
    [InlineData(1000, 1100, 1010, 300, 500)]
    // PID 1 "after" the agent, the agent "after" hello.
    [InlineData(2000, 2100, 1500, 900, 800)]
    [InlineData(2000, 2100, 1500, 900, 1600)]
    // Negative figures and values that would overflow a naive sum.
    [InlineData(2000, 2100, -5, -5, -5)]
    [InlineData(2000, 2100, long.MaxValue, long.MaxValue, long.MinValue)]
    [InlineData(2000, 2100, long.MinValue, long.MaxValue, long.MaxValue)]
    // The first exec's clock reading before hello.
    [InlineData(2000, 1990, 1500, 300, 500)]
    public void ImplausibleFiguresClampToNonNegativePhasesWithinTheHostsTime(long hello, long firstExec, long uptime, long init, long agent)
    {
        var phases = BootClock.Phases(hello, firstExec, uptime, init, agent);

        Assert.NotNull(phases);
        long[] all = [phases.QemuStart, phases.Kernel, phases.Init, phases.Agent, phases.FirstExec];
        Assert.All(all, phase => Assert.InRange(phase, 0, hello));
        Assert.Equal(hello, phases.QemuStart + phases.Kernel + phases.Init + phases.Agent);
        Assert.Equal(Math.Max(0, firstExec - hello), phases.FirstExec);
    }

    [Fact]
    public void AnAgentThatReportsNoBootTimesGivesNoPhases()
    {
        Assert.Null(BootClock.Phases(3000, 3200, uptimeMs: null, initStartMs: 900, agentStartMs: 1700));
        Assert.Null(BootClock.Phases(3000, 3200, uptimeMs: 2400, initStartMs: null, agentStartMs: 1700));
        Assert.Null(BootClock.Phases(3000, 3200, uptimeMs: 2400, initStartMs: 900, agentStartMs: null));
    }
}
