using System.Text.Json;
using PyroMcp.Runtime;
using PyroMcp.Templates;
using PyroMcp.Vmm;

namespace PyroMcp.Tests;

/// <summary>
/// Warm-start templates without a guest: the key moves with every input, a half-built or damaged
/// template is never handed out, prune keeps only what can still be restored, and the QEMU line
/// of a save or restore carries its control socket, its incoming mode and (when QEMU drops
/// privileges) its disk as an fdset.
/// </summary>
public sealed class TemplateTests : IDisposable
{
    private readonly TempDir _root = new("pyro-template-tests-");

    public void Dispose() => _root.Dispose();

    private static EnvironmentInfo Environment(string sha = "aa") => new()
    {
        Name = "debian:12", Version = "1", Description = "d", Distribution = "debian", Packages = [], State = "installed", Installed = true,
        CacheDir = "/c", InstallDir = "/c/e", RootfsImage = "/c/e/rootfs.ext4", InstallManifest = "/c/e/environment.json", RootfsSha256 = sha,
    };

    private static RuntimeBundle Bundle(string id = "b1", string agent = "ag") => new("/r", "/r/vmlinuz", "/r/initramfs", new RuntimeManifest
    {
        BundleId = id, KernelPackage = "k", KernelVersion = "1", KernelDebSha256 = "d", KernelSha256 = "ks", InitramfsSha256 = "is", AgentSha256 = agent,
        AgentLibraries = new Dictionary<string, string>(), BusyboxVersion = "1", BusyboxSha256 = "b", TiniVersion = "1", TiniSha256 = "t", InitSha256 = "i",
        Modules = [], BuiltAt = DateTimeOffset.UnixEpoch,
    });

    private static readonly VmSpec Shape = new(1, 1024, Accelerator.Tcg);

    [Fact]
    public void TheKeyChangesWithEveryInputAndOnlyThen()
    {
        var baseline = new TemplateInputs(Environment(), Bundle(), Shape, false);
        Assert.Equal(baseline.Key(), new TemplateInputs(Environment(), Bundle(), Shape, false).Key());
        var variants = new[]
        {
            baseline with { Environment = Environment(sha: "bb") },
            baseline with { Bundle = Bundle(id: "b2") },
            baseline with { Bundle = Bundle(agent: "other-agent") },
            baseline with { Spec = Shape with { MemMib = 2048 } },
            baseline with { Spec = Shape with { VcpuCount = 2 } },
            baseline with { Spec = Shape with { Accelerator = Accelerator.Kvm } },
            baseline with { Network = true },
        };
        var keys = variants.Select(v => v.Key()).Append(baseline.Key()).ToList();
        Figures.Record("templates", $"{variants.Length} changed inputs tried, {keys.Distinct().Count() - 1} new keys, {variants.Length + 1 - keys.Distinct().Count()} reused a stale template");
        Assert.Equal(keys.Count, keys.Distinct().Count());
    }

    [Fact]
    public void AnIncompleteOrDamagedTemplateIsNeverHandedOut()
    {
        var store = new TemplateStore(new PyroOptions { TemplateCacheDir = _root.Path });
        Directory.CreateDirectory(_root.Path);
        File.SetUnixFileMode(_root.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var good = Write("good", memory: 100, disk: 10);
        var cases = new (string Key, Action<string> Damage)[]
        {
            ("nomanifest", dir => File.Delete(Path.Combine(dir, "template.json"))),
            ("nomemory", dir => File.Delete(Path.Combine(dir, QemuVm.MemoryFileName))),
            ("shortmemory", dir => File.WriteAllBytes(Path.Combine(dir, QemuVm.MemoryFileName), new byte[99])),
            ("longdisk", dir => File.WriteAllBytes(Path.Combine(dir, QemuVm.DiskFileName), new byte[11])),
            ("otherkey", dir => File.WriteAllText(Path.Combine(dir, "template.json"), File.ReadAllText(Path.Combine(dir, "template.json")).Replace("\"otherkey\"", "\"good\"", StringComparison.Ordinal))),
            ("garbage", dir => File.WriteAllText(Path.Combine(dir, "template.json"), "{not json")),
        };
        var handedOut = 0;
        foreach (var (key, damage) in cases)
        {
            damage(Path.Combine(_root.Path, Write(key, memory: 100, disk: 10)));
            handedOut += store.TryOpen(key) is null ? 0 : 1;
        }

        var opened = store.TryOpen(good);
        Assert.NotNull(opened);
        Assert.Equal(new string('a', 64), opened.Value.Image.MemorySha256);
        Figures.Record("templates", $"{cases.Length} incomplete or damaged templates tried, {handedOut} handed out");
        Assert.Equal(0, handedOut);

        // Prune: the damaged ones and a dead builder's staging go; one whose inputs are current stays,
        // one of a bundle no longer cached goes.
        Directory.CreateDirectory(Path.Combine(_root.Path, ".staging-good-999999999"));
        var stale = Write("stale", memory: 100, disk: 10, bundle: "gone");
        var (removed, _) = store.Prune(_ => "aa", id => id == "b1");
        Assert.Contains(Path.Combine(_root.Path, stale), removed);
        Assert.Contains(Path.Combine(_root.Path, ".staging-good-999999999"), removed);
        Assert.DoesNotContain(Path.Combine(_root.Path, good), removed);
        Assert.Equal([good], Directory.GetDirectories(_root.Path).Select(Path.GetFileName));
    }

    private string Write(string key, int memory, int disk, string bundle = "b1")
    {
        var dir = Path.Combine(_root.Path, key);
        Directory.CreateDirectory(dir);
        File.WriteAllBytes(Path.Combine(dir, QemuVm.MemoryFileName), new byte[memory]);
        File.WriteAllBytes(Path.Combine(dir, QemuVm.DiskFileName), new byte[disk]);
        var manifest = new TemplateManifest
        {
            Key = key, Environment = "debian:12", RootfsSha256 = "aa", BundleId = bundle, Qemu = TemplateInputs.QemuIdentity(), VcpuCount = 1, MemMib = 1024,
            Accelerator = "tcg", Network = false, MemorySha256 = new string('a', 64), MemoryBytes = memory, DiskSha256 = new string('b', 64), DiskBytes = disk,
            BuiltAt = DateTimeOffset.UnixEpoch, BuildMs = 1,
        };
        File.WriteAllText(Path.Combine(dir, "template.json"), JsonSerializer.Serialize(manifest, InternalJsonContext.Default.TemplateManifest));
        return key;
    }

    [Fact]
    public void SaveAndRestoreLinesCarryTheControlSocketIncomingModeAndTheDiskAsAnFdset()
    {
        var launch = new QemuLaunch("0123456789ab", Shape, "/k", "/i", "/vm/disk.qcow2", "/vm/agent.sock", null, TscKhz: 2000000, ControlSocketPath: "/vm/control.sock");
        var plain = QemuCommandLine.Build(launch).ToList();
        Assert.Equal("unix:/vm/control.sock,server=on,wait=off", plain[plain.IndexOf("-qmp") + 1]);
        Assert.DoesNotContain("-incoming", plain);
        Assert.Contains("file=/vm/disk.qcow2,", plain[plain.IndexOf("-drive") + 1]);

        var incoming = QemuCommandLine.Build(launch with { Incoming = true }).ToList();
        Assert.Equal("defer", incoming[incoming.IndexOf("-incoming") + 1]);
        Assert.Contains("-S", incoming);

        // Dropping privileges: the disk is the root launcher's fdset (QEMU reopens it at save and restore).
        var dropping = QemuCommandLine.Build(launch with { RunAsUser = "pyro-qemu" }).ToList();
        Assert.StartsWith("id=root,file=/dev/fdset/1,", dropping[dropping.IndexOf("-drive") + 1]);
        Assert.DoesNotContain(dropping, a => a.Contains("/vm/disk.qcow2", StringComparison.Ordinal));
        Assert.Equal(["fd=3,set=1,opaque=disk-rw", "fd=4,set=1,opaque=disk-ro"], dropping.Select((a, i) => (a, i)).Where(p => p.a == "-add-fd").Select(p => dropping[p.i + 1]));
    }
}
