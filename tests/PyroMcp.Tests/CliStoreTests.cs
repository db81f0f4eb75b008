namespace PyroMcp.Tests;

/// <summary>The environment cache and the workspace store through the CLI, where nothing boots: unknown names, half-written entries, refused requests.</summary>
public sealed class CliStoreTests : NoGuestTest
{
    [Fact]
    public async Task UnknownEnvironmentsListTheKnownOnes()
    {
        var result = await PyroCli.RunAsync("env", "inspect", "ubuntu:24.04");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("unknown environment 'ubuntu:24.04'", result.Stderr);
        Assert.Contains("debian:12, debian:12-base, debian:12-build", result.Stderr);
    }

    [Fact]
    public async Task AHalfWrittenEntryIsReportedAndPruned()
    {
        var cache = Directory.CreateTempSubdirectory("pyro-test-cache-").FullName;
        var env = new Dictionary<string, string> { ["PYRO_ENVIRONMENT_CACHE_DIR"] = cache };
        try
        {
            // What a pull killed mid-way leaves: an entry without its manifest, and a staging directory.
            var entry = Path.Combine(cache, "linux-x86_64", "debian_12-1.0.0");
            Directory.CreateDirectory(entry);
            await File.WriteAllTextAsync(Path.Combine(entry, "rootfs.ext4"), "half");
            var staging = Path.Combine(cache, "linux-x86_64", ".staging-debian_12-1.0.0-999999");
            Directory.CreateDirectory(staging);
            var oldVersion = Path.Combine(cache, "linux-x86_64", "debian_12-0.9.0");
            Directory.CreateDirectory(oldVersion);

            var inspect = (await PyroCli.RunAsync(["env", "inspect", "debian:12", "--json"], env)).Json;
            Assert.Equal("incomplete", inspect.GetProperty("state").GetString());
            Assert.False(inspect.GetProperty("installed").GetBoolean());
            Assert.Contains("debian:12 [incomplete]", (await PyroCli.RunAsync(["env", "list"], env)).Stdout);

            var prune = await PyroCli.RunAsync(["env", "prune", "--json"], env);
            Assert.True(prune.ExitCode == 0, prune.ToString());
            var removed = prune.Json.GetProperty("removed").EnumerateArray().Select(e => e.GetString()).ToHashSet();
            Assert.Equal(new HashSet<string?> { entry, staging, oldVersion }, removed);
            Assert.Empty(Directory.GetDirectories(Path.Combine(cache, "linux-x86_64")));
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }

    [Fact]
    public async Task BadRequestsSayWhatToDo()
    {
        var unknown = await PyroCli.RunAsync("workspace", "exec", "nope", "--", "true");
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("no workspace 'nope'", unknown.Stderr);
        Assert.Contains("pyro: hint: see 'pyro workspace list'", unknown.Stderr);

        var seed = await PyroCli.RunAsync("workspace", "create", "debian:12", "--seed-path", "/nonexistent/repo");
        Assert.Equal(2, seed.ExitCode);
        Assert.Contains("seed_not_found", seed.Stderr);

        var name = await PyroCli.RunAsync("workspace", "create", "debian:12", "--name", "bad name!");
        Assert.Equal(2, name.ExitCode);
        Assert.Contains("invalid_name", name.Stderr);
        Assert.Empty((await PyroCli.OkAsync("workspace", "list", "--json")).Json.EnumerateArray());
    }
}
