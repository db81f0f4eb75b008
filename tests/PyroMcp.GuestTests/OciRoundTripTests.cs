using PyroMcp.Oci;

namespace PyroMcp.GuestTests;

/// <summary>
/// The debian:12 round trip through a real registry: publish the installed environment, pull it
/// into an empty cache as another machine would, and run a command in it.
/// </summary>
public sealed class OciRoundTripTests : GuestTest
{
    [Fact]
    public async Task Debian12PublishedThenPulledIntoAnEmptyCacheRuns()
    {
        await using var lab = await RegistryLab.StartAsync();
        var registry = $"{lab.Host}/pyro";
        var publisher = new Dictionary<string, string>(RegistryLab.Credentials) { ["PYRO_ENVIRONMENT_REGISTRY"] = registry };

        var inspect = await PyroCli.OkAsync(publisher, "env", "inspect", "debian:12", "--json");
        var source = inspect.Json.GetProperty("oci_source").GetString()!;
        Assert.Equal($"{registry}/debian-12:1.0.0", source);
        var human = await PyroCli.OkAsync(publisher, "env", "inspect", "debian:12");
        Assert.Contains($"OCI source: {source}", human.Stdout);

        var published = await PyroCli.RunAsync(["env", "publish", "debian:12", source, "--json"], publisher, TimeSpan.FromMinutes(10));
        Assert.True(published.ExitCode == 0, published.ToString());
        var layer = published.Json.GetProperty("layer_digest").GetString()!;
        Figures.Record("oci debian:12", $"rootfs {published.Json.GetProperty("rootfs_bytes").GetInt64()} bytes published as a {published.Json.GetProperty("layer_bytes").GetInt64()}-byte zstd layer");
        Assert.DoesNotContain(RegistryLab.Password, published.Stdout + published.Stderr);
        try
        {
            // Another machine: an empty environment cache pointed at the registry.
            var other = new Dictionary<string, string>(publisher) { ["PYRO_ENVIRONMENT_CACHE_DIR"] = Path.Combine(HostDir, "cache") };
            var pull = await PyroCli.RunAsync(["env", "pull", "debian:12"], other, TimeSpan.FromMinutes(15));
            Assert.True(pull.ExitCode == 0, pull.ToString());
            Assert.Contains($"[pull] phase=download environment=debian:12 source=oci:{source}", pull.Stderr);
            Assert.DoesNotContain("phase=bootstrap", pull.Stderr);
            Assert.DoesNotContain(RegistryLab.Password, pull.Stdout + pull.Stderr);
            var pulled = (await PyroCli.OkAsync(other, "env", "inspect", "debian:12", "--json")).Json;
            Assert.Equal(inspect.Json.GetProperty("rootfs_sha256").GetString(), pulled.GetProperty("rootfs_sha256").GetString());
            Assert.Equal(layer, pulled.GetProperty("oci_layer_digest").GetString());

            var run = await PyroCli.RunAsync(["run", "debian:12", "--", "git", "--version"], other, TimeSpan.FromMinutes(10));
            Assert.True(run.ExitCode == 0, run.ToString());
            Assert.StartsWith("git version 2.", run.Stdout);
        }
        finally
        {
            // The publish left its compressed layer in the shared cache; it is this test's, not the cache's.
            var blob = Path.Combine(new PyroOptions().EnvironmentCacheDir, "blobs", "sha256", OciDigest.Hex(layer));
            File.Delete(blob);
        }
    }
}
