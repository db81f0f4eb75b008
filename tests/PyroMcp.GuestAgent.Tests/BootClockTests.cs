namespace PyroMcp.GuestAgent.Tests;

/// <summary>The agent's reading of /proc for its boot times (GuestAgent.BootClock).</summary>
public sealed class BootClockTests
{
    [Fact]
    public void StartTimeIsField22CountedFromTheLastParenthesisOfTheCommandName()
    {
        // A command name with spaces and parentheses must not shift the fields.
        const string stat = "1 (ti ni) (x)) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 137 1000 100 18446744073709551615";

        Assert.Equal(1370, BootClock.ParseStartMs(stat, ticksPerSecond: 100));
        Assert.Equal(137, BootClock.ParseStartMs(stat, ticksPerSecond: 1000));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("1 (init) S 0 1")]
    [InlineData("1 init S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 137")]
    [InlineData("1 (init) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 -137")]
    public void AnUnreadableStatGivesNull(string? stat)
    {
        Assert.Null(BootClock.ParseStartMs(stat, 100));
    }

    [Theory]
    [InlineData("2.53 1.90\n", 2530L)]
    [InlineData("0.00 0.00\n", 0L)]
    [InlineData("junk", null)]
    [InlineData(null, null)]
    public void UptimeIsTheFirstFieldInSeconds(string? text, long? expected)
    {
        Assert.Equal(expected, BootClock.ParseUptimeMs(text));
    }

    [Fact]
    public void ThisProcessStartedAfterPid1AndBeforeNow()
    {
        var uptime = BootClock.UptimeMs();
        var init = BootClock.ProcessStartMs("1");
        var self = BootClock.ProcessStartMs("self");

        Assert.NotNull(uptime);
        Assert.NotNull(init);
        Assert.NotNull(self);
        Assert.InRange(init.Value, 0, self.Value);
        Assert.InRange(self.Value, init.Value, uptime.Value + 10);
    }
}
