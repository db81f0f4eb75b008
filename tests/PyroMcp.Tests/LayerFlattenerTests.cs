using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using PyroMcp.Images;

namespace PyroMcp.Tests;

/// <summary>
/// The layer flattener on image layers written here byte by byte: the hostile corpus (each
/// archive as an image of one layer, then layers that try what only layers can: whiteouts,
/// links that later layers write through, bombs) must change nothing outside the new root; and
/// the layer semantics a real image relies on must come out as a container runtime makes them.
/// </summary>
public sealed class LayerFlattenerTests : IDisposable
{
    private static readonly FlattenLimits SmallLimits = new() { MaxBytes = 16L << 20, MaxEntries = 5000 };

    private readonly TempDir _base = new("pyro-layers-");

    private string Outside => Path.Combine(_base.Path, "outside");

    public void Dispose() => _base.Dispose();

    [Fact]
    public async Task HostileLayersWriteNothingOutsideTheRoot()
    {
        Directory.CreateDirectory(Outside);
        System.IO.File.WriteAllText(Path.Combine(Outside, "sentinel"), "keep me");
        Directory.CreateDirectory(Path.Combine(Outside, "dir"));
        System.IO.File.WriteAllText(Path.Combine(Outside, "dir", "passwd"), "root:x:0:0");
        var elsewhere = Path.Combine(_base.Path, "elsewhere");
        Directory.CreateDirectory(elsewhere);

        var images = HostileTarCorpus.Build(Outside, elsewhere).Select(a => (a.Name, Layers: new[] { a.Bytes }, a.Entries, Refused: a.HugeHeader)).ToList();
        images.AddRange(LayerOnlyAttacks(Outside));
        var before = TreeSnapshot.Take(Outside, elsewhere);

        var tried = 0;
        var refused = new List<string>();
        var codes = new List<string>();
        for (var i = 0; i < images.Count; i++)
        {
            var (name, layers, entries, mustRefuse) = images[i];
            tried += entries;
            var root = Path.Combine(_base.Path, $"root-{i}");
            try
            {
                await FlattenAsync(layers, root, SmallLimits);
                Assert.False(mustRefuse, $"{name}: flattened, but must be refused");
            }
            catch (EnvironmentException ex)
            {
                refused.Add(name);
                codes.Add(ex.Code);
                Assert.True(ex.Code is "image_layer_too_large" or "image_layer_corrupt", $"{name}: refused with {ex.Code}: {ex.Message}");
                Assert.False(Directory.Exists(root), $"{name}: the staging root was left behind");
            }
        }

        var escaped = TreeSnapshot.Differences(before, TreeSnapshot.Take(Outside, elsewhere));
        escaped.AddRange(Directory.GetFileSystemEntries(_base.Path).Where(p => p != Outside && p != elsewhere && !Path.GetFileName(p).StartsWith("root-", StringComparison.Ordinal)));
        Figures.Record("hostile image layers (import, host)",
            $"{tried} entries tried in {images.Count} images ({refused.Count} refused whole: {string.Join(", ", codes.Distinct())}), {escaped.Count} escapes");
        Assert.Empty(escaped);
        Assert.All(images.Where(i => i.Refused), i => Assert.Contains(i.Name, refused));
        Assert.Contains("image_layer_too_large", codes);
    }

    [Fact]
    public async Task AGzipBombIsRefusedWithACodeAndTheRootRemoved()
    {
        // 64 MiB of zeros compress to about 64 KiB: the limit counts what comes out, not what goes in.
        var tar = new MemoryStream();
        using (var writer = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
        {
            writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "zeros") { DataStream = new MemoryStream(new byte[64 << 20]) });
        }

        var gz = Gzip(tar.ToArray());
        Assert.True(gz.Length < 1 << 20, $"the bomb is {gz.Length} bytes compressed");
        var root = Path.Combine(_base.Path, "root");
        var ex = await Assert.ThrowsAsync<EnvironmentException>(() => FlattenAsync([gz], root, SmallLimits));
        Assert.Equal("image_layer_too_large", ex.Code);
        Assert.False(Directory.Exists(root));
    }

    [Fact]
    public async Task TooManyEntriesIsRefusedWithACode()
    {
        var tar = new RawTar();
        for (var i = 0; i < 200; i++)
        {
            tar.File($"f{i}", "");
        }

        var root = Path.Combine(_base.Path, "root");
        var ex = await Assert.ThrowsAsync<EnvironmentException>(() => FlattenAsync([tar.ToArray()], root, SmallLimits with { MaxEntries = 100 }));
        Assert.Equal("image_layer_too_large", ex.Code);
        Assert.False(Directory.Exists(root));
    }

    [Fact]
    public async Task LayersStackAsAContainerRuntimeStacksThem()
    {
        var lower = Layer(w =>
        {
            Dir(w, "usr/");
            Dir(w, "usr/lib/");
            File(w, "usr/lib/libc.so", "libc");
            Link(w, "lib", "usr/lib");
            Dir(w, "etc/");
            File(w, "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
            File(w, "etc/gone", "whited out later");
            Dir(w, "opaque/");
            File(w, "opaque/old", "hidden by an opaque dir");
            Dir(w, "opaque/sub/");
            File(w, "opaque/sub/old", "hidden too");
            Dir(w, "flip/");
            File(w, "flip/child", "a dir that becomes a file");
            File(w, "flop", "a file that becomes a dir");
            File(w, "opaque2/old", "hidden by an opaque marker after this layer's entries");
            File(w, "bin/su", "setuid", mode: 0x9ED, uid: 0);
            File(w, "home/user/own", "owned", mode: 0x180, uid: 1000, gid: 1001);
            w.WriteEntry(new PaxTarEntry(TarEntryType.HardLink, "bin/su-hard") { LinkName = "bin/su" });
            w.WriteEntry(new PaxTarEntry(TarEntryType.CharacterDevice, "dev/null") { DeviceMajor = 1, DeviceMinor = 3, Mode = (UnixFileMode)0x1B6 });
            w.WriteEntry(new PaxTarEntry(TarEntryType.Fifo, "run/fifo") { Mode = (UnixFileMode)0x180 });
        });
        var upper = Layer(w =>
        {
            // Written through the lower layer's /lib -> usr/lib symlink: lands in /usr/lib.
            File(w, "lib/libz.so", "libz");
            File(w, "etc/.wh.gone", "");
            Dir(w, "opaque/");
            File(w, "opaque/.wh..wh..opq", "");
            File(w, "opaque/new", "from the upper layer");
            File(w, "flip", "now a file");
            Dir(w, "flop/");
            File(w, "flop/child", "now a dir");
            File(w, "opaque2/sub/new", "its directory made implicitly by this layer");
            File(w, "opaque2/.wh..wh..opq", "");
        });

        var root = Path.Combine(_base.Path, "root");
        var result = await FlattenAsync([lower, Gzip(upper)], root, SmallLimits);

        Assert.Equal("usr/lib", LinkTarget(root, "lib"));
        Assert.Equal("libz", ReadText(root, "usr/lib/libz.so"));
        Assert.Equal("libc", ReadText(root, "usr/lib/libc.so"));
        Assert.False(Exists(root, "etc/gone"));
        Assert.True(Exists(root, "etc/passwd"));
        Assert.Equal(["new"], Directory.GetFileSystemEntries(Path.Combine(root, "opaque")).Select(Path.GetFileName));
        Assert.Equal(["sub"], Directory.GetFileSystemEntries(Path.Combine(root, "opaque2")).Select(Path.GetFileName));
        Assert.Equal("its directory made implicitly by this layer", ReadText(root, "opaque2/sub/new"));
        Assert.Equal("now a file", ReadText(root, "flip"));
        Assert.Equal("now a dir", ReadText(root, "flop/child"));
        Assert.Equal(0x9ED, (int)System.IO.File.GetUnixFileMode(Path.Combine(root, "bin/su")) & 0xFFF);
        var own = new Mono(Path.Combine(root, "home/user/own"));
        Assert.Equal((1000u, 1001u, 0x180), (own.Uid, own.Gid, own.Mode & 0xFFF));
        Assert.Equal(2ul, new Mono(Path.Combine(root, "bin/su")).Links);
        Assert.Equal(0x2000, new Mono(Path.Combine(root, "dev/null")).Mode & 0xF000);
        Assert.Equal(0x1000, new Mono(Path.Combine(root, "run/fifo")).Mode & 0xF000);
        Assert.Equal(new DateTime(2020, 1, 2, 3, 4, 5, DateTimeKind.Utc), System.IO.File.GetLastWriteTimeUtc(Path.Combine(root, "etc/passwd")));
        Assert.Equal(3, result.Whiteouts);
        Assert.Equal(1, result.HardLinks);
        Assert.Equal(2, result.Nodes);
        Assert.Empty(result.Skipped);
    }

    [Fact]
    public async Task ZstdAndPlainLayersAreReadByTheirBytes()
    {
        var layer = Layer(w => File(w, "hello", "zstd"));
        using var compressor = new ZstdSharp.Compressor();
        var zstd = compressor.Wrap(layer).ToArray();
        var root = Path.Combine(_base.Path, "root");
        var result = await LayerFlattener.FlattenAsync([(() => new MemoryStream(zstd), "application/vnd.oci.image.layer.v1.tar+gzip")], root, SmallLimits, null, CancellationToken.None);
        Assert.Equal("zstd", ReadText(root, "hello"));
        Assert.Equal(["layer 1: application/vnd.oci.image.layer.v1.tar+gzip holds zstd data"], result.MediaTypeMismatches);
        Assert.Equal(LayerCompression.None, LayerFlattener.Detect(layer));
    }

    /// <summary>Attacks only a layered image can make: later layers and whiteouts using what earlier ones planted.</summary>
    private static IEnumerable<(string Name, byte[][] Layers, int Entries, bool Refused)> LayerOnlyAttacks(string outside)
    {
        var climb = new RawTar().Symlink("up", "../../../..").Symlink("abs", outside).Symlink("etc", "/etc").Symlink("dots", "../../..");
        var through = new RawTar()
            .File("up/outside/evil", "through a climbing link of a lower layer")
            .File("abs/sentinel", "through an absolute link of a lower layer")
            .File("etc/passwd", "through /etc")
            .File("dots/dir/passwd", "through dots")
            .File("up/.wh.outside", "").File("abs/.wh.sentinel", "").File("dots/dir/.wh.passwd", "")
            .File(".wh..", "").File(".wh...", "").File("a/.wh...", "").File("up/.wh..wh..opq", "")
            .HardLink("hard-out", "../outside/sentinel").HardLink("hard-abs", Path.Combine(outside, "sentinel"))
            .HardLink("hard-through", "abs/sentinel").HardLink("hard-to-link", "abs")
            .Device("../outside/node", '3', 1, 1).Device("abs/node", '4', 8, 0);
        yield return ("links planted by a lower layer, written through by an upper one", [climb.ToArray(), through.ToArray()], climb.Entries + through.Entries, false);

        var loop = new RawTar().Symlink("a", "b").Symlink("b", "a").File("a/x", "through a loop");
        yield return ("symlink loop", [loop.ToArray()], loop.Entries, false);

        var flip = new RawTar().Directory("d/").File("d/inner", "x").File("d", "file over a dir").Directory("d/").Symlink("d", outside).File("d/evil", "y");
        yield return ("dir replaced by file and back, then by a link", [flip.ToArray()], flip.Entries, false);

        var absurd = new RawTar().Entry("neg", '0', 0, sizeField: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        yield return ("negative base-256 size", [absurd.ToArray(end: false)], absurd.Entries, true);
        var huge = new RawTar().Entry("huge", '0', 0, sizeField: Encoding.ASCII.GetBytes("77777777777\0"));
        yield return ("8 GiB octal size", [huge.ToArray(end: false)], huge.Entries, true);
        var over = new RawTar().Entry("over", '0', 0, sizeField: [0x80, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        yield return ("base-256 size near long.MaxValue", [over.ToArray(end: false)], over.Entries, true);
        var pax = new RawTar().Pax(("path", string.Concat(Enumerable.Repeat("d/", 3000)))).File("x", "pax path bomb");
        yield return ("pax path bomb", [pax.ToArray()], pax.Entries, true);
        var bomb = new RawTar();
        for (var i = 0; i < 6000; i++)
        {
            bomb.Directory($"b{i}/");
        }

        yield return ("bomb of 6000 directories", [bomb.ToArray()], bomb.Entries, true);
    }

    private static Task<FlattenResult> FlattenAsync(byte[][] layers, string root, FlattenLimits limits)
        => LayerFlattener.FlattenAsync(layers.Select(l => ((Func<Stream>)(() => new MemoryStream(l)), (string?)null)).ToList(), root, limits, null, CancellationToken.None);

    private static byte[] Layer(Action<TarWriter> write)
    {
        var tar = new MemoryStream();
        using (var writer = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
        {
            write(writer);
        }

        return tar.ToArray();
    }

    private static readonly DateTimeOffset Stamp = new(2020, 1, 2, 3, 4, 5, TimeSpan.Zero);

    private static void Dir(TarWriter w, string name) => w.WriteEntry(new PaxTarEntry(TarEntryType.Directory, name) { Mode = (UnixFileMode)0x1ED, ModificationTime = Stamp });

    private static void Link(TarWriter w, string name, string target) => w.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, name) { LinkName = target, ModificationTime = Stamp });

    private static void File(TarWriter w, string name, string content, int mode = 0x1A4, int uid = 0, int gid = 0)
        => w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name)
        {
            DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)),
            Mode = (UnixFileMode)mode,
            Uid = uid,
            Gid = gid,
            ModificationTime = Stamp,
        });

    private static byte[] Gzip(byte[] data)
    {
        var output = new MemoryStream();
        using (var gz = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
        {
            gz.Write(data);
        }

        return output.ToArray();
    }

    private static string ReadText(string root, string path) => System.IO.File.ReadAllText(Path.Combine(root, path));

    private static bool Exists(string root, string path) => Protocol.Files.PathStats.LStat(Path.Combine(root, path)) is not null;

    private static string? LinkTarget(string root, string path) => new FileInfo(Path.Combine(root, path)).LinkTarget;

    /// <summary>lstat's owner, mode and link count.</summary>
    private readonly struct Mono
    {
        internal Mono(string path)
        {
            var buffer = new byte[144];
            Assert.Equal(0, LStat(path, buffer));
            Mode = (int)BitConverter.ToUInt32(buffer, 24);
            Uid = BitConverter.ToUInt32(buffer, 28);
            Gid = BitConverter.ToUInt32(buffer, 32);
            Links = BitConverter.ToUInt64(buffer, 16);
        }

        internal int Mode { get; }
        internal uint Uid { get; }
        internal uint Gid { get; }
        internal ulong Links { get; }

        [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "lstat", SetLastError = true)]
        private static extern int LStat(string path, byte[] buffer);
    }
}
