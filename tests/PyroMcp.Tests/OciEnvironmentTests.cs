using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Oci;

namespace PyroMcp.Tests;

/// <summary>
/// Publish and pull of pyro environments through a real registry, without a guest: a small
/// sparse root disk stands in for debian:12 (the guest suite does the real one).
/// </summary>
public sealed class OciEnvironmentTests
{
    private static readonly EnvironmentSpec Spec = EnvironmentCatalog.Resolve("debian:12-base");

    private static OciClientOptions Oci => new() { Username = RegistryLab.User, Password = RegistryLab.Password, AuthFiles = [], ChunkSize = 1024 * 1024 };

    private static PyroOptions Options(string cache, string? registry = null) => PyroScratch.Options with
    {
        EnvironmentCacheDir = cache,
        EnvironmentRegistry = registry,
        EnvironmentCatalogFile = null,
        Oci = Oci,
    };

    /// <summary>Installs a stand-in environment: a 64 MiB sparse disk with two random 4 MiB extents.</summary>
    internal static void FakeInstall(string cache, int randomMib = 4)
    {
        var dir = Path.Combine(cache, "linux-x86_64", Spec.DirectoryName);
        Directory.CreateDirectory(dir);
        var rootfs = Path.Combine(dir, "rootfs.ext4");
        using (var file = new FileStream(rootfs, FileMode.Create))
        {
            var random = new byte[randomMib * 1024 * 1024];
            RandomNumberGenerator.Fill(random);
            file.Write(random);
            file.Position = 32L * 1024 * 1024;
            file.Write(random);
            file.SetLength(64L * 1024 * 1024);
        }

        var manifest = new EnvironmentManifest
        {
            Name = Spec.Name,
            Version = Spec.Version,
            Distribution = Spec.Distribution,
            Packages = Spec.Packages,
            RootfsSha256 = FileIntegrity.HashAndStamp(rootfs, Path.Combine(dir, "rootfs.stamp")),
            RootfsBytes = new FileInfo(rootfs).Length,
            Source = "test stand-in",
            BuiltAt = DateTimeOffset.UtcNow,
        };
        File.WriteAllText(Path.Combine(dir, "environment.json"), JsonSerializer.Serialize(manifest, InternalJsonContext.Default.EnvironmentManifest));
    }

    private static List<PyroProgress> Log(out IProgress<PyroProgress> progress)
    {
        var list = new List<PyroProgress>();
        progress = new SyncProgress<PyroProgress>(p => { lock (list) { list.Add(p); } });
        return list;
    }

    [Fact]
    public async Task PublishThenPullRoundTripsSparseAndVerifiedAndSkopeoReadsTheArtifact()
    {
        await using var lab = await RegistryLab.StartAsync();
        using var a = new TempDir("pyro-env-a-");
        using var b = new TempDir("pyro-env-b-");
        FakeInstall(a.Path);
        var registry = $"{lab.Host}/pyro";
        var source = new EnvironmentStore(Options(a.Path, registry));
        var original = source.Inspect(Spec);
        Assert.Equal($"{lab.Host}/pyro/debian-12-base:{Spec.Version}", original.OciSource);

        var published = await source.PublishAsync(Spec, original.OciSource!, null, default);
        Assert.Equal((2, 0), (published.BlobsUploaded, published.BlobsSkipped));
        Assert.True(published.LayerBytes < 16 * 1024 * 1024, $"a 64 MiB disk with 8 MiB of data compressed to {published.LayerBytes} bytes");
        var again = Log(out var againProgress);
        var republished = await source.PublishAsync(Spec, original.OciSource!, againProgress, default);
        Assert.Equal((0, 2), (republished.BlobsUploaded, republished.BlobsSkipped));
        Assert.Equal(published.ManifestDigest, republished.ManifestDigest);
        Assert.Contains(again, p => p.ToString().Contains("skipped=present"));

        // Tools nobody here wrote: inspect --raw (plain inspect refuses any non-image artifact) and copy to a layout.
        var creds = $"{RegistryLab.User}:{RegistryLab.Password}";
        var raw = await Processes.RunAsync("skopeo", ["inspect", "--raw", "--tls-verify=false", "--creds", creds, $"docker://{original.OciSource}"]);
        Assert.True(raw.ExitCode == 0, raw.ToString());
        Assert.Contains(OciMediaTypes.EnvironmentConfig, raw.Stdout);
        var layout = Path.Combine(b.Path, "layout");
        var copy = await Processes.RunAsync("skopeo", ["copy", "--src-tls-verify=false", "--src-creds", creds, $"docker://{original.OciSource}", $"oci:{layout}:env"]);
        Assert.True(copy.ExitCode == 0, copy.ToString());
        Assert.True(File.Exists(Path.Combine(layout, "blobs", "sha256", OciDigest.Hex(published.LayerDigest))));

        // Pull on "another machine": a fresh cache pointed at the registry.
        var cache = Path.Combine(b.Path, "cache");
        var target = new EnvironmentStore(Options(cache, registry));
        Assert.Equal("not_installed", target.Inspect(Spec).State);
        var log = Log(out var progress);
        var pulled = await target.PullAsync(Spec, progress, default);
        Assert.True(pulled.Installed);
        Assert.Equal(original.RootfsSha256, pulled.RootfsSha256);
        Assert.Equal(published.ManifestDigest, pulled.OciManifestDigest);
        Assert.Equal(published.LayerDigest, pulled.OciLayerDigest);
        Assert.Equal("oci:" + original.OciSource, pulled.Source);
        var lines = log.Select(p => p.ToString()).ToList();
        Assert.Contains(lines, l => l.StartsWith("[pull] phase=download", StringComparison.Ordinal) && l.Contains($"source=oci:{original.OciSource}") && l.Contains($"bytes={published.LayerBytes}"));
        Assert.DoesNotContain(lines, l => l.Contains("phase=bootstrap"));
        Assert.DoesNotContain(lines, l => l.Contains(RegistryLab.Password));
        var blocks = await Processes.RunAsync("stat", ["-c", "%b", pulled.RootfsImage]);
        var allocated = long.Parse(blocks.Stdout.Trim(), CultureInfo.InvariantCulture) * 512;
        Assert.True(allocated < 24L * 1024 * 1024, $"the pulled 64 MiB disk takes {allocated} bytes: the holes were written out");
        Assert.True(File.Exists(Path.Combine(cache, "blobs", "sha256", OciDigest.Hex(published.LayerDigest))));

        // Prune keeps what the installed environment references, and removes it once nothing does.
        var kept = target.Prune();
        Assert.DoesNotContain(kept.Removed, r => r.Contains("blobs", StringComparison.Ordinal));
        Directory.Delete(pulled.InstallDir, recursive: true);
        var pruned = target.Prune();
        Assert.Contains(pruned.Removed, r => r.EndsWith(OciDigest.Hex(published.LayerDigest), StringComparison.Ordinal));
        Assert.Empty(Directory.GetFiles(Path.Combine(cache, "blobs", "sha256")));
    }

    [Fact]
    public async Task TwoConcurrentPullsDownloadOnce()
    {
        await using var lab = await RegistryLab.StartAsync();
        using var a = new TempDir("pyro-env-a-");
        using var b = new TempDir("pyro-env-b-");
        FakeInstall(a.Path, randomMib: 8);
        var published = await new EnvironmentStore(Options(a.Path)).PublishAsync(Spec, $"{lab.Host}/pyro/debian-12-base:{Spec.Version}", null, default);
        using var proxy = new FaultProxy(lab.Port);
        var log = Log(out var progress);
        var pulls = Enumerable.Range(0, 2).Select(_ => Task.Run(() => new EnvironmentStore(Options(b.Path, $"{proxy.Host}/pyro")).PullAsync(Spec, progress, default))).ToList();
        var results = await Task.WhenAll(pulls);
        Assert.All(results, r => Assert.True(r.Installed));
        Assert.True(proxy.BytesToClient < published.LayerBytes * 3 / 2, $"{proxy.BytesToClient} bytes downloaded for a {published.LayerBytes}-byte layer by two pulls");
        Assert.Single(log, p => p.Phase == "decompress");
        Figures.Record("oci concurrent pulls", $"2 pulls, {proxy.BytesToClient} bytes downloaded for a {published.LayerBytes}-byte layer");
    }

    [Fact]
    public async Task ADamagedLayerIsRefusedAndNothingIsInstalled()
    {
        await using var lab = await RegistryLab.StartAsync();
        using var a = new TempDir("pyro-env-a-");
        using var b = new TempDir("pyro-env-b-");
        FakeInstall(a.Path);
        await new EnvironmentStore(Options(a.Path)).PublishAsync(Spec, $"{lab.Host}/pyro/debian-12-base:{Spec.Version}", null, default);
        using var proxy = new FaultProxy(lab.Port) { FlipDownloadAt = 100 * 1024 };
        var store = new EnvironmentStore(Options(b.Path, $"{proxy.Host}/pyro"));
        var ex = await Assert.ThrowsAsync<OciException>(() => store.PullAsync(Spec, null, default));
        Assert.Equal("oci_digest_mismatch", ex.Code);
        Assert.Equal("not_installed", store.Inspect(Spec).State);
        Assert.Empty(Directory.GetDirectories(Path.Combine(b.Path, "linux-x86_64")));
        Assert.Empty(Directory.GetFiles(Path.Combine(b.Path, "blobs", "sha256")));
        Figures.Record("oci environment digest", $"{proxy.Flips} damaged layer(s) tried, 0 installed");
    }

    [Fact]
    public async Task APullKilledMidDownloadLeavesTheCacheAsItWasAndTheNextPullInstalls()
    {
        await using var lab = await RegistryLab.StartAsync();
        using var a = new TempDir("pyro-env-a-");
        using var b = new TempDir("pyro-env-b-");
        FakeInstall(a.Path, randomMib: 24);
        var registry = $"{lab.Host}/pyro";
        var published = await new EnvironmentStore(Options(a.Path)).PublishAsync(Spec, $"{registry}/debian-12-base:{Spec.Version}", null, default);

        // The real CLI, killed with SIGKILL as soon as it reports its download; no guest agent, so no template boot after.
        var env = new Dictionary<string, string>(RegistryLab.Credentials)
        {
            ["PYRO_ENVIRONMENT_CACHE_DIR"] = b.Path,
            ["PYRO_ENVIRONMENT_REGISTRY"] = registry,
            ["PYRO_AGENT_PATH"] = Path.Combine(b.Path, "no-agent"),
            ["PYRO_OCI_UPLOAD_CHUNK_SIZE_BYTES"] = "1048576",
        };
        using (var cli = PyroCli.Start(["env", "pull", Spec.Name], env))
        {
            cli.StandardInput.Close();
            string? line;
            while ((line = await cli.StandardError.ReadLineAsync()) is not null && !(line.Contains("phase=download") && line.Contains("bytes=")))
            {
            }

            Assert.True(line is not null, "the pull ended before it reported a download");
            cli.Kill(entireProcessTree: true);
            await cli.WaitForExitAsync();
        }

        var store = new EnvironmentStore(Options(b.Path, registry));
        Assert.Equal("not_installed", store.Inspect(Spec).State);
        var partial = Directory.GetFiles(Path.Combine(b.Path, "blobs", "sha256"), "*.partial").Select(f => new FileInfo(f).Length).SingleOrDefault();
        using var proxy = new FaultProxy(lab.Port);
        var pulled = await new EnvironmentStore(Options(b.Path, $"{proxy.Host}/pyro")).PullAsync(Spec, null, default);
        Assert.True(pulled.Installed);
        Assert.Equal(published.RootfsSha256, pulled.RootfsSha256);
        // What the killed pull had on disk was not fetched again.
        Assert.True(proxy.BytesToClient < published.LayerBytes - partial + 256 * 1024, $"the re-pull downloaded {proxy.BytesToClient} bytes with {partial} of {published.LayerBytes} already on disk");
        Assert.Empty(Directory.GetDirectories(Path.Combine(b.Path, "linux-x86_64"), ".staging-*"));
        Assert.Empty(Directory.GetFiles(Path.Combine(b.Path, "blobs", "sha256"), "*.partial"));
        Figures.Record("oci pull kill -9", $"killed mid-download with {partial} of {published.LayerBytes} bytes on disk; cache unchanged, the next pull fetched {proxy.BytesToClient} bytes and installed");
    }

    [Fact]
    public async Task WithoutAnOciSourceThePullBuildsLocallyAndInspectSaysSo()
    {
        using var a = new TempDir("pyro-env-a-");
        var store = new EnvironmentStore(Options(a.Path));
        Assert.Null(store.Inspect(Spec).OciSource);
        var catalog = Path.Combine(a.Path, "catalog.json");
        File.WriteAllText(catalog, """{"debian:12-base": {"oci_source": "127.0.0.1:5000/team/base:7"}}""");
        var fromFile = new EnvironmentStore(Options(a.Path, "127.0.0.1:6000/pyro") with { EnvironmentCatalogFile = catalog });
        Assert.Equal("127.0.0.1:5000/team/base:7", fromFile.Inspect(Spec).OciSource);
        Assert.Equal("127.0.0.1:6000/pyro/debian-12:1.0.0", fromFile.Inspect(EnvironmentCatalog.Resolve("debian:12")).OciSource);
        File.WriteAllText(catalog, """{"debian:12-base": "not an object"}""");
        Assert.Equal("environment_catalog_invalid", Assert.Throws<PyroInputException>(() => fromFile.Inspect(Spec)).Code);
        await Task.CompletedTask;
    }

    [Fact]
    public async Task AReferenceIsNotAnEnvironmentForRunsOrMcpAndReachesNoNetwork()
    {
        // A listener where the reference points: nothing may connect to it.
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var reference = $"127.0.0.1:{((System.Net.IPEndPoint)listener.LocalEndpoint).Port}/x:y";
        var pyro = new Pyro(PyroScratch.Options);
        var run = await Assert.ThrowsAsync<PyroInputException>(() => pyro.RunAsync(new RunRequest { Environment = reference, Command = ["true"] }));
        Assert.Equal("unknown_environment", run.Code);
        var create = await Assert.ThrowsAsync<PyroInputException>(() => pyro.CreateWorkspaceAsync(new WorkspaceCreateRequest { Environment = reference }));
        Assert.Equal("unknown_environment", create.Code);
        await using (var mcp = await InProcessMcp.StartAsync("workspace-full"))
        {
            await mcp.ErrorAsync("vm_run", "unknown_environment", new() { ["environment"] = reference, ["command"] = "true" });
            await mcp.ErrorAsync("workspace_create", "unknown_environment", new() { ["environment"] = reference });
            var tools = await mcp.Client.ListToolsAsync();
            Assert.DoesNotContain(tools, t => t.Name.Contains("publish", StringComparison.Ordinal) || t.Name.Contains("pull", StringComparison.Ordinal) || t.Name.Contains("import", StringComparison.Ordinal));
        }

        Assert.False(listener.Pending(), "something connected to the registry address");
    }

    [Fact]
    public async Task BadOciSettingsAndReferencesAreClearCliErrors()
    {
        using var a = new TempDir("pyro-env-a-");
        var env = new Dictionary<string, string> { ["PYRO_ENVIRONMENT_CACHE_DIR"] = a.Path, ["PYRO_OCI_UPLOAD_CHUNK_SIZE_BYTES"] = "lots" };
        var chunk = await PyroCli.RunAsync(["env", "publish", "debian:12-base", "127.0.0.1:1/x:1", "--json"], env);
        Assert.Equal(2, chunk.ExitCode);
        Assert.Contains("oci_setting_invalid", chunk.Stdout);
        env.Remove("PYRO_OCI_UPLOAD_CHUNK_SIZE_BYTES");
        var reference = await PyroCli.RunAsync(["env", "publish", "debian:12-base", "debian:12", "--json"], env);
        Assert.Equal(2, reference.ExitCode);
        Assert.Contains("oci_reference_invalid", reference.Stdout);
        var notInstalled = await PyroCli.RunAsync(["env", "publish", "debian:12-base", "127.0.0.1:1/x:1", "--json"], env);
        Assert.Equal(1, notInstalled.ExitCode);
        Assert.Contains("environment_unavailable", notInstalled.Stdout);
    }

    [Fact]
    public async Task ADiskThatFillsIsOciDiskFullAndNothingIsLeft()
    {
        using var dir = new TempDir("pyro-env-full-");
        var data = new byte[256 * 1024];
        RandomNumberGenerator.Fill(data);
        var descriptor = new OciDescriptor("x", OciDigest.Of(data), data.Length);
        var destination = Path.Combine(dir.Path, "blob");
        // The partial file is /dev/full: every write fails with ENOSPC.
        File.CreateSymbolicLink(destination + ".partial", "/dev/full");
        var ex = await Assert.ThrowsAsync<OciException>(() => OciBlobFiles.WriteVerifiedAsync(new MemoryStream(data), descriptor, destination + ".partial", destination, 0, null, null, default));
        Assert.Equal("oci_disk_full", ex.Code);
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }
}
