using System.Collections.Concurrent;
using System.Security.Cryptography;
using PyroMcp.Vmm;

namespace PyroMcp.GuestTests;

/// <summary>
/// Warm starts against real guests: VMs restored from one template are each their own VM (host
/// name, RNG, clock), two callers at once build one template, a damaged template is rebuilt and
/// never resumed, and a cold boot is there when asked for. Its own template cache, so the damage
/// it does races no other test.
/// </summary>
public sealed class WarmStartTests : GuestTest
{
    private const string Probe = "hostname; cut -d' ' -f22 /proc/1/stat; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s";

    [Fact]
    public async Task RestoredVmsAreTheirOwnAndADamagedTemplateIsRebuiltNotRestored()
    {
        using var templates = new TempDir("pyro-test-templates-");
        var pyro = new Pyro(PyroScratch.Options with { TemplateCacheDir = templates.Path });
        var events = new ConcurrentQueue<PyroProgress>();
        RunRequest Run(bool cold = false) => new()
        {
            Environment = "debian:12",
            Command = ["sh", "-c", Probe],
            Cold = cold,
            Progress = new SyncProgress<PyroProgress>(events.Enqueue),
        };

        // Two callers at once and no template yet: one builds it, the other waits; both restore from it.
        var both = await Task.WhenAll(pyro.RunAsync(Run()), pyro.RunAsync(Run()));
        Assert.Single(events, e => e is { Operation: "template", Phase: "build" });
        var probes = both.Select(Parse).ToList();
        foreach (var (result, probe) in both.Zip(probes))
        {
            Assert.True(result.ExitCode == 0, result.Stderr);
            Assert.Equal("warm", result.StartMode);
            Assert.Null(result.ColdStartReason);
            Assert.Null(result.BootPhasesMs);
            Assert.Equal("pyro-" + result.VmId, probe.Hostname);
            var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            Assert.InRange(probe.UnixTime, now - 120, now);
        }

        // Clones of one boot (their init started at the same tick of the same boot), yet no two
        // share their RNG: the resume reseeded each.
        Assert.Equal(probes[0].InitStart, probes[1].InitStart);
        var distinct = probes.Select(p => p.Random).Distinct(StringComparer.Ordinal).Count();
        Figures.Record("warm start", $"2 VMs restored at once from one template (1 build): one boot's init, {distinct} distinct RNG outputs of 2, {probes.Select(p => p.Hostname).Distinct().Count()} host names of 2");
        Assert.Equal(2, distinct);
        Assert.Equal(64, probes[0].Random.Length);

        // One flipped byte in the memory image, size unchanged: the restore's digest check catches it,
        // the template is built again, and the run restores from the new one.
        var dir = Assert.Single(Directory.GetDirectories(templates.Path), d => !Path.GetFileName(d).StartsWith('.'));
        var memory = Path.Combine(dir, QemuVm.MemoryFileName);
        var damagedSha = FlipAByte(memory);
        events.Clear();
        var after = await pyro.RunAsync(Run());
        Assert.Equal(0, after.ExitCode);
        Assert.Contains(events, e => e.Phase == "template_damaged");
        Assert.Single(events, e => e is { Operation: "template", Phase: "build" });
        Assert.Equal("warm", after.StartMode);
        var rebuilt = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(memory)));
        Assert.NotEqual(damagedSha, rebuilt);
        Assert.Contains(rebuilt, File.ReadAllText(Path.Combine(dir, "template.json")));

        // A cold boot when asked for: booted (boot phases), and it says why.
        var cold = await pyro.RunAsync(Run(cold: true));
        Assert.Equal("cold", cold.StartMode);
        Assert.NotNull(cold.BootPhasesMs);
        Assert.Equal("a cold boot was asked for", cold.ColdStartReason);
        Figures.Record("warm start", "1 damaged memory image (1 byte flipped): 0 restored, 1 rebuilt");
    }

    private static string FlipAByte(string path)
    {
        using (var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
        {
            file.Position = file.Length / 2;
            var b = file.ReadByte();
            file.Position = file.Length / 2;
            file.WriteByte((byte)(b ^ 0x40));
        }

        return Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));
    }

    private static (string Hostname, string InitStart, string Random, long UnixTime) Parse(RunResult result)
    {
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 4, result.Stdout + result.Stderr);
        return (lines[0], lines[1], lines[2], long.Parse(lines[3], System.Globalization.CultureInfo.InvariantCulture));
    }
}
