using System.Security.Cryptography;
using System.Text;
using PyroMcp.Oci;

namespace PyroMcp.Tests;

/// <summary>
/// The registry protocol against a real registry (docker-registry on 127.0.0.1) and real tools
/// (skopeo, umoci): auth flows, chunked and resumed transfers, digests, platforms, errors.
/// </summary>
public sealed class OciRegistryTests
{
    private static OciClientOptions Options(int chunk = 64 * 1024, string? password = RegistryLab.Password) => new()
    {
        Username = password is null ? null : RegistryLab.User,
        Password = password,
        AuthFiles = [],
        ChunkSize = chunk,
        RequestTimeout = TimeSpan.FromSeconds(30),
        UploadTimeout = TimeSpan.FromSeconds(60),
    };

    /// <summary>Random bytes, gzip-wrapped, so that tools which sniff compression keep the layer as it is.</summary>
    private static byte[] RandomBytes(int n)
    {
        var b = new byte[n];
        RandomNumberGenerator.Fill(b);
        using var output = new MemoryStream();
        using (var gzip = new System.IO.Compression.GZipStream(output, System.IO.Compression.CompressionLevel.NoCompression, leaveOpen: true))
        {
            gzip.Write(b);
        }

        return output.ToArray();
    }

    /// <summary>Pushes a one-layer image (an OCI image config for linux/ARCH) and returns its layer and manifest digest.</summary>
    internal static async Task<(OciDescriptor Layer, string ManifestDigest)> PushImageAsync(OciReference reference, OciClientOptions options, byte[] layer, string arch = "amd64")
    {
        using var client = new RegistryClient(reference, options);
        var config = Encoding.UTF8.GetBytes($$$"""{"architecture":"{{{arch}}}","os":"linux","config":{"Env":["PATH=/bin"],"WorkingDir":"/w","User":"1000"},"rootfs":{"type":"layers","diff_ids":[]}}""");
        var configDigest = OciDigest.Of(config);
        var layerDigest = OciDigest.Of(layer);
        await client.PushBlobAsync(new MemoryStream(config), configDigest, config.Length, null, default);
        await client.PushBlobAsync(new MemoryStream(layer), layerDigest, layer.Length, null, default);
        var manifest = Encoding.UTF8.GetBytes($$"""{"schemaVersion":2,"mediaType":"{{OciMediaTypes.OciManifest}}","config":{"mediaType":"{{OciMediaTypes.OciConfig}}","digest":"{{configDigest}}","size":{{config.Length}}},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{{layerDigest}}","size":{{layer.Length}}}]}""");
        await client.PutManifestAsync(reference.ManifestReference, manifest, OciMediaTypes.OciManifest, default);
        return (new OciDescriptor("application/vnd.oci.image.layer.v1.tar+gzip", layerDigest, layer.Length), OciDigest.Of(manifest));
    }

    [Fact]
    public async Task ChunkedPushThenPullRoundTripsWithBasicAuthAndSkopeoReadsIt()
    {
        await using var lab = await RegistryLab.StartAsync();
        using var scratch = new TempDir("pyro-oci-");
        var layer = RandomBytes(300 * 1024 + 17);
        var reference = OciReference.Parse($"{lab.Host}/lab/basic:1");
        var (descriptor, manifestDigest) = await PushImageAsync(reference, Options(), layer);

        using (var image = await OciImageSource.OpenAsync(reference.ToString(), Options(), null, default))
        {
            Assert.Equal(manifestDigest, image.ManifestDigest);
            Assert.Equal(OciMediaTypes.OciManifest, image.ManifestMediaType);
            Assert.Equal("amd64", image.Config.Architecture);
            Assert.Equal(["PATH=/bin"], image.Config.Env);
            Assert.Equal("/w", image.Config.WorkingDir);
            Assert.Equal("1000", image.Config.User);
            Assert.Equal(descriptor, Assert.Single(image.Layers) with { Platform = null, RefName = null });
            var file = Path.Combine(scratch.Path, "layer");
            await image.FetchBlobAsync(image.Layers[0], file, default);
            Assert.Equal(layer, File.ReadAllBytes(file));
        }

        // Tools nobody here wrote read what pyro pushed, and pyro reads what they wrote.
        var creds = $"{RegistryLab.User}:{RegistryLab.Password}";
        var raw = await Processes.RunAsync("skopeo", ["inspect", "--raw", "--tls-verify=false", "--creds", creds, $"docker://{reference}"]);
        Assert.True(raw.ExitCode == 0, raw.ToString());
        Assert.Contains(descriptor.Digest, raw.Stdout);
        var layout = Path.Combine(scratch.Path, "layout");
        var copy = await Processes.RunAsync("skopeo", ["copy", "--src-tls-verify=false", "--src-creds", creds, $"docker://{reference}", $"oci:{layout}:v1"]);
        Assert.True(copy.ExitCode == 0, copy.ToString());
        using (var fromLayout = await OciImageSource.OpenAsync($"oci:{layout}:v1", Options(), null, default))
        {
            Assert.Equal(descriptor.Digest, Assert.Single(fromLayout.Layers).Digest);
            var file = Path.Combine(scratch.Path, "from-layout");
            await fromLayout.FetchBlobAsync(fromLayout.Layers[0], file, default);
            Assert.Equal(layer, File.ReadAllBytes(file));
        }

        var tar = Path.Combine(scratch.Path, "image.tar");
        await Processes.RunAsync("tar", ["-C", layout, "-cf", tar, "."]);
        using (var fromArchive = await OciImageSource.OpenAsync(tar, Options(), null, default))
        {
            var file = Path.Combine(scratch.Path, "from-archive");
            await fromArchive.FetchBlobAsync(fromArchive.Layers[0], file, default);
            Assert.Equal(layer, File.ReadAllBytes(file));
        }
    }

    [Fact]
    public async Task TokenAuthFlowAgainstTheRealRegistry()
    {
        await using var lab = await RegistryLab.StartAsync(tokenAuth: true);
        using var scratch = new TempDir("pyro-oci-");
        var layer = RandomBytes(100 * 1024);
        var reference = OciReference.Parse($"{lab.Host}/lab/token:1");
        await PushImageAsync(reference, Options(), layer);
        using var image = await OciImageSource.OpenAsync(reference.ToString(), Options(), null, default);
        var file = Path.Combine(scratch.Path, "layer");
        await image.FetchBlobAsync(image.Layers[0], file, default);
        Assert.Equal(layer, File.ReadAllBytes(file));
        Assert.True(lab.TokensIssued >= 2, $"{lab.TokensIssued} tokens issued");

        var refused = await Assert.ThrowsAsync<OciException>(() => OciImageSource.OpenAsync(reference.ToString(), Options(password: "wrong-pass-9d2"), null, default));
        Assert.Equal("oci_auth_refused", refused.Code);
        Assert.DoesNotContain("wrong-pass-9d2", refused.ToString());
    }

    [Fact]
    public async Task UploadCutMidPatchResumesFromTheRegistrysRange()
    {
        await using var lab = await RegistryLab.StartAsync();
        using var proxy = new FaultProxy(lab.Port) { CutUploadAfter = 200 * 1024 };
        var layer = RandomBytes(512 * 1024);
        var reference = OciReference.Parse($"{proxy.Host}/lab/resume-up:1");
        using var client = new RegistryClient(reference, Options());
        Assert.True(await client.PushBlobAsync(new MemoryStream(layer), OciDigest.Of(layer), layer.Length, null, default));
        Assert.Equal(1, proxy.Cuts);
        Assert.True(client.Resumes >= 1, $"{client.Resumes} resumes");
        Figures.Record("oci upload resume", $"1 connection cut mid-PATCH, {client.Resumes} resume(s), {proxy.BytesToServer} bytes sent for a {layer.Length}-byte blob");

        // The registry has exactly the blob.
        using var direct = new RegistryClient(OciReference.Parse($"{lab.Host}/lab/resume-up:1"), Options());
        using var scratch = new TempDir("pyro-oci-");
        var file = Path.Combine(scratch.Path, "blob");
        await direct.FetchBlobAsync(new OciDescriptor("x", OciDigest.Of(layer), layer.Length), file, null, default);
        Assert.Equal(layer, File.ReadAllBytes(file));
    }

    [Fact]
    public async Task DownloadCutMidGetResumesWithRange()
    {
        await using var lab = await RegistryLab.StartAsync();
        var layer = RandomBytes(3 * 1024 * 1024);
        await PushImageAsync(OciReference.Parse($"{lab.Host}/lab/resume-down:1"), Options(), layer);
        using var proxy = new FaultProxy(lab.Port);
        using var scratch = new TempDir("pyro-oci-");
        using var image = await OciImageSource.OpenAsync($"{proxy.Host}/lab/resume-down:1", Options(), null, default);
        proxy.CutDownloadAfter = 1024 * 1024;
        var before = proxy.BytesToClient;
        var file = Path.Combine(scratch.Path, "layer");
        await image.FetchBlobAsync(image.Layers[0], file, default);
        Assert.Equal(layer, File.ReadAllBytes(file));
        Assert.Equal(1, proxy.Cuts);
        var sent = proxy.BytesToClient - before;
        Assert.True(sent < layer.Length + 512 * 1024, $"{sent} bytes sent for a {layer.Length}-byte blob: the download restarted instead of resuming");
        Assert.False(File.Exists(file + ".partial"));
        Figures.Record("oci download resume", $"1 connection cut mid-GET, {sent} bytes sent for a {layer.Length}-byte blob");
    }

    [Fact]
    public async Task ABlobAlreadyPresentIsNotUploadedAgain()
    {
        await using var lab = await RegistryLab.StartAsync();
        using var proxy = new FaultProxy(lab.Port);
        var layer = RandomBytes(1024 * 1024);
        var reference = OciReference.Parse($"{proxy.Host}/lab/present:1");
        using var client = new RegistryClient(reference, Options());
        Assert.True(await client.PushBlobAsync(new MemoryStream(layer), OciDigest.Of(layer), layer.Length, null, default));
        var first = proxy.BytesToServer;
        Assert.False(await client.PushBlobAsync(new MemoryStream(layer), OciDigest.Of(layer), layer.Length, null, default));
        var second = proxy.BytesToServer - first;
        Assert.True(first > layer.Length && second < 4096, $"first push sent {first} bytes, second {second}");
        Figures.Record("oci blob present", $"second push of a {layer.Length}-byte blob sent {second} bytes (a HEAD)");
    }

    [Fact]
    public async Task AFlippedByteIsADigestMismatchAndNothingIsKept()
    {
        await using var lab = await RegistryLab.StartAsync();
        var layer = RandomBytes(1024 * 1024);
        await PushImageAsync(OciReference.Parse($"{lab.Host}/lab/flip:1"), Options(), layer);
        using var proxy = new FaultProxy(lab.Port);
        using var image = await OciImageSource.OpenAsync($"{proxy.Host}/lab/flip:1", Options(), null, default);
        proxy.FlipDownloadAt = 600 * 1024;
        using var scratch = new TempDir("pyro-oci-");
        var file = Path.Combine(scratch.Path, "layer");
        var ex = await Assert.ThrowsAsync<OciException>(() => image.FetchBlobAsync(image.Layers[0], file, default));
        Assert.Equal("oci_digest_mismatch", ex.Code);
        Assert.True(proxy.Flips >= 1);
        Assert.Empty(Directory.GetFileSystemEntries(scratch.Path));
        Figures.Record("oci digest", $"{proxy.Flips} flipped byte(s) tried, 0 accepted");
    }

    [Fact]
    public async Task RefusalsAndAbsencesHaveTheirCodesAndNeverShowTheSecret()
    {
        await using var lab = await RegistryLab.StartAsync();
        var layer = RandomBytes(4096);
        await PushImageAsync(OciReference.Parse($"{lab.Host}/lab/there:1"), Options(), layer);
        var secretB64 = Convert.ToBase64String(Encoding.UTF8.GetBytes($"{RegistryLab.User}:wrong-pass-9d2"));
        var tried = 0;
        async Task<OciException> Fails(string location, OciClientOptions options)
        {
            tried++;
            var ex = await Assert.ThrowsAsync<OciException>(() => OciImageSource.OpenAsync(location, options, null, default));
            Assert.DoesNotContain("wrong-pass-9d2", ex.ToString());
            Assert.DoesNotContain(secretB64, ex.ToString());
            Assert.DoesNotContain(RegistryLab.Password, ex.ToString());
            return ex;
        }

        Assert.Equal("oci_auth_refused", (await Fails($"{lab.Host}/lab/there:1", Options(password: "wrong-pass-9d2"))).Code);
        Assert.Equal("oci_auth_refused", (await Fails($"{lab.Host}/lab/there:1", Options(password: null))).Code);
        Assert.Equal("oci_not_found", (await Fails($"{lab.Host}/lab/there:2", Options())).Code);
        Assert.Equal("oci_not_found", (await Fails($"{lab.Host}/lab/nowhere:1", Options())).Code);
        Assert.Equal("oci_registry_unreachable", (await Fails($"127.0.0.1:{RegistryLab.FreePort()}/lab/there:1", Options() with { MaxRetries = 0 })).Code);

        // An index with only arm64 and s390x: the error names them.
        var armLayer = RandomBytes(1000);
        var (_, armDigest) = await PushImageAsync(OciReference.Parse($"{lab.Host}/lab/multi:arm64"), Options(), armLayer, arch: "arm64");
        var (_, s390Digest) = await PushImageAsync(OciReference.Parse($"{lab.Host}/lab/multi:s390x"), Options(), armLayer, arch: "s390x");
        using (var client = new RegistryClient(OciReference.Parse($"{lab.Host}/lab/multi:1"), Options()))
        {
            var (armManifest, _, _) = await client.GetManifestAsync("arm64", default);
            var (s390Manifest, _, _) = await client.GetManifestAsync("s390x", default);
            var index = Encoding.UTF8.GetBytes($$$"""{"schemaVersion":2,"mediaType":"{{{OciMediaTypes.OciIndex}}}","manifests":[{"mediaType":"{{{OciMediaTypes.OciManifest}}}","digest":"{{{armDigest}}}","size":{{{armManifest.Length}}},"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},{"mediaType":"{{{OciMediaTypes.OciManifest}}}","digest":"{{{s390Digest}}}","size":{{{s390Manifest.Length}}},"platform":{"os":"linux","architecture":"s390x"}}]}""");
            await client.PutManifestAsync("1", index, OciMediaTypes.OciIndex, default);
        }

        var platform = await Fails($"{lab.Host}/lab/multi:1", Options());
        Assert.Equal("oci_platform_unavailable", platform.Code);
        Assert.Contains("linux/arm64/v8", platform.Message);
        Assert.Contains("linux/s390x", platform.Message);
        // A single-platform image for another architecture.
        Assert.Equal("oci_platform_unavailable", (await Fails($"{lab.Host}/lab/multi:arm64", Options())).Code);
        Figures.Record("oci refusals", $"{tried} bad requests tried, 0 secrets in errors");
    }

    [Fact]
    public async Task AnOciLayoutMadeByUmociOpensByTag()
    {
        using var scratch = new TempDir("pyro-oci-");
        var layout = Path.Combine(scratch.Path, "layout");
        foreach (var args in new[] { new[] { "init", "--layout", layout }, ["new", "--image", layout + ":base"] })
        {
            var r = await Processes.RunAsync("umoci", args);
            Assert.True(r.ExitCode == 0, r.ToString());
        }

        using var image = await OciImageSource.OpenAsync($"oci:{layout}:base", new OciClientOptions(), null, default);
        Assert.Equal(OciMediaTypes.OciManifest, image.ManifestMediaType);
        Assert.Equal("amd64", image.Config.Architecture);
        var missing = await Assert.ThrowsAsync<OciException>(() => OciImageSource.OpenAsync($"oci:{layout}:nope", new OciClientOptions(), null, default));
        Assert.Equal("oci_not_found", missing.Code);
        Assert.Contains("base", missing.Message);
    }

    [Theory]
    [InlineData("localhost:5000/pyro/debian-12:1.0.0", "localhost:5000", "pyro/debian-12", "1.0.0", true)]
    [InlineData("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", null, true)]
    [InlineData("[::1]:5000/a:t", "[::1]:5000", "a", "t", true)]
    [InlineData("registry.example.com/team/env:2", "registry.example.com", "team/env", "2", false)]
    public void ReferencesParse(string text, string registry, string repository, string? tag, bool loopback)
    {
        var r = OciReference.Parse(text);
        Assert.Equal((registry, repository, tag, loopback), (r.Registry, r.Repository, r.Tag, r.IsLoopback));
        Assert.Equal(text, r.ToString());
    }

    [Theory]
    [InlineData("debian:12")]
    [InlineData("pyro/debian-12:1")]
    [InlineData("localhost:5000/UPPER:1")]
    [InlineData("localhost:5000/a@sha256:123")]
    [InlineData("localhost:5000/a:bad tag")]
    [InlineData("")]
    public void BadReferencesAreRefused(string text)
        => Assert.Equal("oci_reference_invalid", Assert.Throws<PyroInputException>(() => OciReference.Parse(text)).Code);

    [Fact]
    public void OnlyLoopbackAndListedRegistriesAreSpokenToOverPlainHttp()
    {
        Uri Base(string reference, params string[] insecure)
        {
            using var client = new RegistryClient(OciReference.Parse(reference), new OciClientOptions { InsecureRegistries = insecure });
            return client.BaseUri;
        }

        Assert.Equal("http://127.0.0.1:5000/v2/a/b/", Base("127.0.0.1:5000/a/b:1").AbsoluteUri);
        Assert.Equal("http", Base("localhost:5000/a:1").Scheme);
        Assert.Equal("http", Base("[::1]:5000/a:1").Scheme);
        Assert.Equal("https://registry.example.com/v2/team/env/", Base("registry.example.com/team/env:1").AbsoluteUri);
        Assert.Equal("https", Base("10.0.0.5:5000/a:1").Scheme);
        Assert.Equal("http", Base("10.0.0.5:5000/a:1", "10.0.0.5:5000").Scheme);
        Assert.Equal("https", Base("10.0.0.5:5001/a:1", "10.0.0.5:5000").Scheme);
    }

    [Fact]
    public async Task CredentialsComeFromAContainerAuthFile()
    {
        await using var lab = await RegistryLab.StartAsync();
        using var scratch = new TempDir("pyro-oci-");
        var authFile = Path.Combine(scratch.Path, "auth.json");
        var encoded = Convert.ToBase64String(Encoding.UTF8.GetBytes($"{RegistryLab.User}:{RegistryLab.Password}"));
        File.WriteAllText(authFile, "{\"auths\": {\"elsewhere.example.com\": {\"auth\": \"Zm9vOmJhcg==\"}, \"" + lab.Host + "\": {\"auth\": \"" + encoded + "\"}}}");
        var fromFile = new OciClientOptions { AuthFiles = [authFile] };
        await PushImageAsync(OciReference.Parse($"{lab.Host}/lab/authfile:1"), fromFile, RandomBytes(2048));
        using var image = await OciImageSource.OpenAsync($"{lab.Host}/lab/authfile:1", fromFile, null, default);
        Assert.Single(image.Layers);
        var none = await Assert.ThrowsAsync<OciException>(() => OciImageSource.OpenAsync($"{lab.Host}/lab/authfile:1", new OciClientOptions { AuthFiles = [Path.Combine(scratch.Path, "absent.json")] }, null, default));
        Assert.Equal("oci_auth_refused", none.Code);
    }

    [Fact]
    public async Task ADockerSchema2ManifestListIsReadLikeAnOciIndex()
    {
        await using var lab = await RegistryLab.StartAsync();
        using var scratch = new TempDir("pyro-oci-");
        var options = Options();
        var reference = OciReference.Parse($"{lab.Host}/lab/docker:1");
        using var client = new RegistryClient(reference, options);
        var config = Encoding.UTF8.GetBytes("""{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],"Cmd":["/bin/sh"]}}""");
        var layer = RandomBytes(4096);
        await client.PushBlobAsync(new MemoryStream(config), OciDigest.Of(config), config.Length, null, default);
        await client.PushBlobAsync(new MemoryStream(layer), OciDigest.Of(layer), layer.Length, null, default);
        var manifest = Encoding.UTF8.GetBytes($$$"""{"schemaVersion":2,"mediaType":"{{{OciMediaTypes.DockerManifest}}}","config":{"mediaType":"{{{OciMediaTypes.DockerConfig}}}","digest":"{{{OciDigest.Of(config)}}}","size":{{{config.Length}}}},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{{{OciDigest.Of(layer)}}}","size":{{{layer.Length}}}}]}""");
        await client.PutManifestAsync("amd64", manifest, OciMediaTypes.DockerManifest, default);
        var list = Encoding.UTF8.GetBytes($$$"""{"schemaVersion":2,"mediaType":"{{{OciMediaTypes.DockerList}}}","manifests":[{"mediaType":"{{{OciMediaTypes.DockerManifest}}}","digest":"{{{OciDigest.Of(manifest)}}}","size":{{{manifest.Length}}},"platform":{"os":"linux","architecture":"amd64"}}]}""");
        await client.PutManifestAsync("1", list, OciMediaTypes.DockerList, default);

        using var image = await OciImageSource.OpenAsync(reference.ToString(), options, null, default);
        Assert.Equal(OciMediaTypes.DockerManifest, image.ManifestMediaType);
        Assert.Equal(OciDigest.Of(manifest), image.ManifestDigest);
        Assert.Equal(["/bin/sh"], image.Config.Cmd);
        var file = Path.Combine(scratch.Path, "layer");
        await image.FetchBlobAsync(image.Layers[0], file, default);
        Assert.Equal(layer, File.ReadAllBytes(file));
    }
}
