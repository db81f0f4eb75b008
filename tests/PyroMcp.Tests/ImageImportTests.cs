using System.Text.Json;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Images;
using PyroMcp.Protocol;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// <c>env import</c> without a guest, on images made by umoci and copied by skopeo (an OCI
/// layout, an OCI archive, zstd layers, and a registry as OCI and as Docker schema 2): the
/// environment lands in the cache with its digests and exec defaults, its disk holds the
/// image's files and the defaults file the agent reads, and it is listed, found and kept by prune.
/// </summary>
public sealed class ImageImportTests : IAsyncLifetime
{
    private readonly TempDir _cache = new("pyro-import-cache-");
    private ImageLab? _lab;

    private ImageLab Lab => _lab!;

    private PyroOptions Options => PyroScratch.Options with { EnvironmentCacheDir = _cache.Path };

    public async Task InitializeAsync() => _lab = await ImageLab.CreateAsync();

    public async Task DisposeAsync()
    {
        if (_lab is not null)
        {
            await _lab.DisposeAsync();
        }

        _cache.Dispose();
    }

    [Fact]
    public async Task ImagesFromEverySourceImportWithTheirDigestsAndExecDefaults()
    {
        var pyro = new Pyro(Options);
        var sources = new List<(string Reference, string Name, string MediaType)>
        {
            (Lab.LayoutRef, "layout:1.0", "application/vnd.oci.image.manifest.v1+json"),
            (await Lab.ArchiveAsync(), "image:1.0", "application/vnd.oci.image.manifest.v1+json"),
            (await Lab.ZstdLayoutAsync(), "zstd:1.0", "application/vnd.oci.image.manifest.v1+json"),
            (await Lab.PushAsync("team/busybox-oci", dockerV2s2: false), "busybox-oci:1.0", "application/vnd.oci.image.manifest.v1+json"),
            (await Lab.PushAsync("team/busybox-docker", dockerV2s2: true), "busybox-docker:1.0", "application/vnd.docker.distribution.manifest.v2+json"),
        };
        var progress = new List<string>();
        foreach (var (reference, name, mediaType) in sources)
        {
            var info = await pyro.ImportEnvironmentAsync(reference, progress: new Progress(progress), cancellationToken: CancellationToken.None);
            Assert.Equal(name, info.Name);
            Assert.True(info.Installed, $"{reference}: {info.State}");
            Assert.Equal("imported", info.Kind);
            var image = Assert.IsType<ImportedImage>(info.Image);
            Assert.Equal(reference, image.Reference);
            Assert.Equal(mediaType, image.ManifestMediaType);
            Assert.Equal(2, image.LayerDigests.Count);
            Assert.StartsWith("sha256:", image.ManifestDigest, StringComparison.Ordinal);
            Assert.Equal(ImageLab.WorkingDir, image.WorkingDir);
            Assert.Equal(ImageLab.User, image.User);
            Assert.Equal([ImageImporter.DefaultPath, .. ImageLab.Env], image.Env.Where(e => !e.StartsWith("PATH=", StringComparison.Ordinal) || e == ImageImporter.DefaultPath));
            Assert.Equal(0, image.SkippedEntries);

            // The disk: the image's files from both layers, the guest's mount points, and the defaults file.
            var defaults = ProtocolJsonContext.Decode<ImageExecDefaults>(await DebugFs(info.RootfsImage, "cat " + ImageExecDefaults.GuestPath));
            Assert.Equal(image.Env, defaults.Env);
            Assert.Equal(ImageLab.User, defaults.User);
            Assert.Equal("second layer\n", System.Text.Encoding.UTF8.GetString(await DebugFs(info.RootfsImage, "cat /etc/motd")));
            var listing = System.Text.Encoding.UTF8.GetString(await DebugFs(info.RootfsImage, "ls -l /"));
            foreach (var dir in new[] { "proc", "sys", "dev", "run", "tmp", "workspace", "srv", "bin", "etc" })
            {
                Assert.Contains(" " + dir, listing, StringComparison.Ordinal);
            }
        }

        Assert.Contains(progress, p => p.StartsWith("[import] phase=fetch", StringComparison.Ordinal) && p.Contains("layer=2/2", StringComparison.Ordinal));
        Assert.Contains(progress, p => p.StartsWith("[import] phase=flatten", StringComparison.Ordinal));

        // Listed, found by name, kept by prune; a catalog name or a bad name is refused.
        var names = (await pyro.ListEnvironmentsAsync()).Select(e => e.Name).ToList();
        Assert.Contains("busybox-docker:1.0", names);
        Assert.Equal("zstd:1.0", (await pyro.InspectEnvironmentAsync("zstd:1.0")).Name);
        Assert.True(EnvironmentCatalog.Resolve("layout:1.0", Options).Imported);
        var pruned = await pyro.PruneEnvironmentsAsync();
        Assert.DoesNotContain(pruned.Removed, r => r.Contains(ImportedEnvironments.DirectoryPrefix, StringComparison.Ordinal));
        Assert.True((await pyro.InspectEnvironmentAsync("layout:1.0")).Installed);

        // The same image again under its name is a no-op: the disk workspaces stand on is not replaced.
        var before = await pyro.InspectEnvironmentAsync("layout:1.0");
        var again = await pyro.ImportEnvironmentAsync(Lab.LayoutRef);
        Assert.Equal(before.BuiltAt, again.BuiltAt);
        Assert.Equal("environment_name_taken", (await Assert.ThrowsAsync<PyroInputException>(() => pyro.ImportEnvironmentAsync(Lab.LayoutRef, "debian:12"))).Code);
        Assert.Equal("environment_name_invalid", (await Assert.ThrowsAsync<PyroInputException>(() => pyro.ImportEnvironmentAsync(Lab.LayoutRef, "../Bad Name"))).Code);
        Assert.Empty(Directory.GetDirectories(Path.Combine(_cache.Path, "linux-x86_64"), ".staging-*"));
        Figures.Record("env import (host)", $"{sources.Count} sources imported (OCI layout, OCI archive, zstd layers, registry OCI and Docker schema 2), made by umoci and skopeo");
    }

    [Theory]
    [InlineData("127.0.0.1:5000/team/tools:1.2", "tools:1.2")]
    [InlineData("127.0.0.1:5000/team/tools", "tools:latest")]
    [InlineData("oci:/images/My_Layout:v1", "my_layout:v1")]
    [InlineData("oci-archive:/tmp/busybox.tar:1.36", "busybox:1.36")]
    [InlineData("/tmp/alpine.tar", "alpine")]
    public void DefaultNamesComeFromTheReference(string reference, string name) => Assert.Equal(name, ImportedEnvironments.DefaultName(reference));

    private static async Task<byte[]> DebugFs(string image, string command)
    {
        var result = await Processes.RunAsync("debugfs", ["-R", command, image], timeout: TimeSpan.FromMinutes(1));
        Assert.True(result.ExitCode == 0, result.ToString());
        return System.Text.Encoding.UTF8.GetBytes(result.Stdout);
    }

    [Fact]
    public async Task RemoveDeletesAnImportedEnvironmentButNeverOneWorkspacesAreOn()
    {
        using var state = new TempDir("pyro-remove-state-");
        var options = Options with { StateDir = state.Path };
        var pyro = new Pyro(options);
        const string Name = "removable:1.0";
        var original = await pyro.ImportEnvironmentAsync(Lab.LayoutRef, Name, cancellationToken: CancellationToken.None);
        var directory = Path.GetDirectoryName(original.RootfsImage)!;

        // A workspace whose disk is an overlay on this environment's disk.
        var store = new WorkspaceStore(options.StateDir);
        StoreSeed.Insert(store, new WorkspaceRecord
        {
            Id = "0123456789ab", Environment = Name, VcpuCount = 1, MemMib = 512, TtlSeconds = 3600,
            CreatedAt = DateTimeOffset.UtcNow, ExpiresAt = DateTimeOffset.UtcNow.AddHours(1), State = WorkspaceState.Stopped,
        });
        var refusals = 0;
        var remove = await Assert.ThrowsAsync<EnvironmentException>(() => pyro.RemoveEnvironmentAsync(Name));
        Assert.Equal("environment_in_use", remove.Code);
        Assert.Contains("0123456789ab", remove.Message);
        refusals++;
        // Another image under the same name would change the files under that overlay: refused too.
        var otherImage = await Lab.ZstdLayoutAsync();
        var reimport = await Assert.ThrowsAsync<EnvironmentException>(() => pyro.ImportEnvironmentAsync(otherImage, Name, cancellationToken: CancellationToken.None));
        Assert.Equal("environment_in_use", reimport.Code);
        refusals++;
        var kept = await pyro.InspectEnvironmentAsync(Name);
        Assert.True(kept.Installed);
        Assert.Equal(original.RootfsSha256, kept.RootfsSha256);
        Assert.Equal(original.Image!.ManifestDigest, kept.Image!.ManifestDigest);

        store.Delete("0123456789ab");
        var removed = await pyro.RemoveEnvironmentAsync(Name);
        Assert.True(removed.Removed);
        Assert.True(removed.FreedBytes >= original.RootfsBytes!.Value, $"freed {removed.FreedBytes} of a {original.RootfsBytes}-byte disk");
        Assert.False(Directory.Exists(directory));
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(directory)!, EnvironmentStore.StagingPrefix + "*"));
        Assert.DoesNotContain(await pyro.ListEnvironmentsAsync(), e => e.Name == Name);
        Assert.Equal("unknown_environment", (await Assert.ThrowsAsync<PyroInputException>(() => pyro.RemoveEnvironmentAsync(Name))).Code);

        // Two callers at once: one removes it, the other finds nothing to remove; nothing else happens.
        await pyro.ImportEnvironmentAsync(Lab.LayoutRef, Name, cancellationToken: CancellationToken.None);
        var outcomes = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
        {
            try
            {
                return (await pyro.RemoveEnvironmentAsync(Name)).Removed ? "removed" : "not installed";
            }
            catch (PyroInputException ex) when (ex.Code == "unknown_environment")
            {
                return "unknown";
            }
        })));
        Assert.Single(outcomes, o => o == "removed");
        Assert.False(Directory.Exists(directory));

        // A catalog environment that is not installed here is simply not removed.
        var catalog = await pyro.RemoveEnvironmentAsync("debian:12-base");
        Assert.False(catalog.Removed);
        Figures.Record("env remove", $"{refusals} of 2 changes under a workspace refused (remove, re-import), 2 concurrent removes: [{string.Join(", ", outcomes)}], 0 left behind");
    }

    private sealed class Progress(List<string> lines) : IProgress<PyroProgress>
    {
        public void Report(PyroProgress value)
        {
            lock (lines)
            {
                lines.Add(value.ToString());
            }
        }
    }
}
