namespace PyroMcp.Vmm;

/// <summary>Places the guest's boot times (ms since its kernel started) on the host's clock.</summary>
internal static class BootClock
{
    /// <summary>
    /// The phases from QEMU's spawn (host time 0) to the first exec's result. The guest's figures
    /// are claims: each point is clamped into [previous point, hello], so a lying or coarse guest
    /// can only shift time between boot phases, never make one negative or the boot longer than
    /// the host saw. Null guest figures (an older agent) give null.
    /// </summary>
    /// <param name="helloMs">Host ms from spawn to the hello reply.</param>
    /// <param name="firstExecMs">Host ms from spawn to the first exec's result.</param>
    /// <param name="uptimeMs">Guest ms since its kernel started, at hello.</param>
    /// <param name="initStartMs">Guest ms when PID 1 started.</param>
    /// <param name="agentStartMs">Guest ms when the agent process started.</param>
    internal static BootPhases? Phases(long helloMs, long firstExecMs, long? uptimeMs, long? initStartMs, long? agentStartMs)
    {
        if (uptimeMs is not { } uptime || initStartMs is not { } init || agentStartMs is not { } agent)
        {
            return null;
        }

        helloMs = Math.Max(0, helloMs);
        // The guest's uptime is read when it answers, a little before the host sees the answer,
        // and /proc/uptime and starttime tick at 10 ms: hence the clamps rather than exact sums.
        var kernelStart = Clamp(helloMs - Math.Clamp(uptime, 0, helloMs), 0, helloMs);
        var initStart = Clamp(kernelStart + Math.Clamp(init, 0, helloMs), kernelStart, helloMs);
        var agentStart = Clamp(kernelStart + Math.Clamp(agent, 0, helloMs), initStart, helloMs);
        return new BootPhases(
            QemuStart: kernelStart,
            Kernel: initStart - kernelStart,
            Init: agentStart - initStart,
            Agent: helloMs - agentStart,
            FirstExec: Math.Max(0, firstExecMs - helloMs));
    }

    private static long Clamp(long value, long low, long high) => Math.Min(Math.Max(value, low), high);
}
