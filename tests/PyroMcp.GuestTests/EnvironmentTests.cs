using System.Text.Json;

namespace PyroMcp.GuestTests;

/// <summary>
/// <c>pyro env ...</c>: catalog, pulls, cache integrity. The two tests that build or boot run in
/// lanes, side by side, with scratch of their own.
/// </summary>
[TestCaseOrderer(LaneOrderer.Name, LaneOrderer.Assembly)]
public sealed class EnvironmentTests(Lanes lanes) : GuestTest, IClassFixture<Lanes>
{
    public override Task InitializeAsync()
    {
        lanes.Begin(GetType(), Lane);
        return base.InitializeAsync();
    }

    private static Func<Task> Lane(string key) => key switch
    {
        nameof(ConcurrentPullsTakeTurnsAndACorruptedImageIsRebuiltNeverBooted) => ConcurrentPullsLaneAsync,
        nameof(TheBuildEnvironmentHasItsToolchain) => ToolchainLaneAsync,
        _ => throw new ArgumentException($"no lane {key}", nameof(key)),
    };

    [Fact]
    public async Task ListShowsTheCatalogAndWhatIsInstalled()
    {
        var result = await PyroCli.RunAsync("env", "list");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Matches(@"^Catalog version: \d+\.\d+\.\d+\n", result.Stdout);
        Assert.Matches(@"debian:12 \[installed\] Debian 12 with Git", result.Stdout);
        Assert.Matches(@"debian:12-base \[(installed|not installed)\] Minimal Debian 12", result.Stdout);
        Assert.Matches(@"debian:12-build \[(installed|not installed)\] Debian 12 with Git and common build tools", result.Stdout);

        var json = (await PyroCli.RunAsync("env", "list", "--json")).Json;
        Assert.Equal(["debian:12", "debian:12-base", "debian:12-build"], json.EnumerateArray().Select(e => e.GetProperty("name").GetString()!).ToArray());
    }

    [Fact]
    public async Task PullIsIdempotent()
    {
        var before = (await PyroCli.RunAsync("env", "inspect", "debian:12", "--json")).Json;
        var rootfs = before.GetProperty("rootfs_image").GetString()!;
        var writtenBefore = File.GetLastWriteTimeUtc(rootfs);

        var again = await PyroCli.RunAsync("env", "pull", "debian:12");

        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains("[pull] phase=ready environment=debian:12 cached=yes", again.Stderr);
        Assert.DoesNotContain("phase=bootstrap", again.Stderr);
        Assert.Contains("Pulled: debian:12", again.Stdout);
        Assert.Contains("Installed: yes", again.Stdout);
        Assert.Equal(writtenBefore, File.GetLastWriteTimeUtc(rootfs));
        var after = (await PyroCli.RunAsync("env", "inspect", "debian:12", "--json")).Json;
        Assert.Equal(before.GetProperty("rootfs_sha256").GetString(), after.GetProperty("rootfs_sha256").GetString());
    }

    [Fact]
    [Lane(-1)]
    public Task TheBuildEnvironmentHasItsToolchain() => lanes.RunAsync(nameof(TheBuildEnvironmentHasItsToolchain), ToolchainLaneAsync);

    private static async Task ToolchainLaneAsync()
    {
        await using var scratch = new LaneScratch("toolchain");
        var result = await PyroCli.RunAsync(["run", "debian:12-build", "--", "sh", "-c", "gcc --version | head -1; make --version | head -1; python3 --version; pkg-config --version; curl --version | head -1; git --version"],
            scratch.Env, TimeSpan.FromMinutes(10));

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Matches(@"^gcc \(Debian 12\.", result.Stdout);
        Assert.Contains("GNU Make 4.3", result.Stdout);
        Assert.Matches(@"Python 3\.11\.\d+", result.Stdout);
        Assert.Matches(@"curl 7\.\d+", result.Stdout);
        Assert.Contains("git version", result.Stdout);
        await scratch.AssertCleanAsync();
    }

    [Fact]
    [Lane(-1)]
    public Task ConcurrentPullsTakeTurnsAndACorruptedImageIsRebuiltNeverBooted() => lanes.RunAsync(nameof(ConcurrentPullsTakeTurnsAndACorruptedImageIsRebuiltNeverBooted), ConcurrentPullsLaneAsync);

    private static async Task ConcurrentPullsLaneAsync()
    {
        await using var scratch = new LaneScratch("pulls");
        var cache = Directory.CreateTempSubdirectory("pyro-test-cache-").FullName;
        var env = new Dictionary<string, string>(scratch.Env) { ["PYRO_ENVIRONMENT_CACHE_DIR"] = cache };
        try
        {
            // Two pulls race in one empty cache: both succeed, one builds, the other waits for it.
            var first = PyroCli.RunAsync(["env", "pull", "debian:12-base"], env, TimeSpan.FromMinutes(10));
            var second = PyroCli.RunAsync(["env", "pull", "debian:12-base"], env, TimeSpan.FromMinutes(10));
            var results = await Task.WhenAll(first, second);
            Assert.All(results, r => Assert.True(r.ExitCode == 0, r.ToString()));
            Assert.Equal(1, results.Count(r => r.Stderr.Contains("phase=bootstrap")));
            Assert.Equal(1, results.Count(r => r.Stderr.Contains("cached=yes")));

            var inspect = (await PyroCli.RunAsync(["env", "inspect", "debian:12-base", "--json"], env)).Json;
            Assert.Equal("installed", inspect.GetProperty("state").GetString());
            var rootfs = inspect.GetProperty("rootfs_image").GetString()!;

            // Flip bytes in the middle of the image, as a disk error or a stray write would.
            await using (var file = new FileStream(rootfs, FileMode.Open, FileAccess.Write))
            {
                file.Position = 40 * 1024 * 1024;
                file.Write("corrupted by the test"u8);
            }

            var corrupt = await PyroCli.RunAsync(["env", "inspect", "debian:12-base"], env);
            Assert.Contains("State: corrupt", corrupt.Stdout);
            Assert.Contains("will not be booted", corrupt.Stdout);

            // A run must not boot it: it rebuilds first, then the guest starts from a verified image.
            var run = await PyroCli.RunAsync(["run", "debian:12-base", "--", "cat", "/etc/debian_version"], env, TimeSpan.FromMinutes(10));
            Assert.True(run.ExitCode == 0, run.ToString());
            Assert.Contains("[pull] phase=repair environment=debian:12-base reason=\"rootfs sha256 does not match its manifest\"", run.Stderr);
            Assert.True(run.Stderr.IndexOf("phase=repair", StringComparison.Ordinal) < run.Stderr.IndexOf("[run] phase=start", StringComparison.Ordinal));
            Assert.Matches(@"^12\.\d+", run.Stdout);
            var repaired = (await PyroCli.RunAsync(["env", "inspect", "debian:12-base", "--json"], env)).Json;
            Assert.Equal("installed", repaired.GetProperty("state").GetString());
            await scratch.AssertCleanAsync();
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }
}
