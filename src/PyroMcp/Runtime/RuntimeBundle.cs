using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using PyroMcp.Host;

namespace PyroMcp.Runtime;

/// <summary>What a runtime bundle is made of; written beside it as manifest.json.</summary>
internal sealed record RuntimeManifest
{
    public required string BundleId { get; init; }
    public required string KernelPackage { get; init; }
    public required string KernelVersion { get; init; }
    public required string KernelDebSha256 { get; init; }
    public required string KernelSha256 { get; init; }
    public required string InitramfsSha256 { get; init; }
    public required string AgentSha256 { get; init; }

    /// <summary>The loader and libraries the agent runs with (guest/lib beside it), by file name, and their SHA-256.</summary>
    public required IReadOnlyDictionary<string, string> AgentLibraries { get; init; }
    public required string BusyboxVersion { get; init; }
    public required string BusyboxSha256 { get; init; }
    public required string TiniVersion { get; init; }
    public required string TiniSha256 { get; init; }
    public required string InitSha256 { get; init; }
    public required IReadOnlyList<string> Modules { get; init; }
    public required DateTimeOffset BuiltAt { get; init; }
}

/// <summary>The kernel, initramfs and agent a VM boots with. They belong to this host version; environments do not contain them.</summary>
internal sealed record RuntimeBundle(string Directory, string KernelPath, string InitramfsPath, RuntimeManifest Manifest)
{
    /// <summary>The guest kernel, pinned. Override with PYRO_KERNEL_PACKAGE=name=version when the mirror has moved on.</summary>
    internal const string PinnedKernelPackage = "linux-image-6.1.0-56-cloud-amd64";
    internal const string PinnedKernelVersion = "6.1.192-2";

    /// <summary>
    /// Modules the initramfs loads, in dependency order (the cloud kernel has virtio as modules).
    /// virtio_balloon reports the pages the guest frees so QEMU can give them back to the host
    /// (free-page reporting; the kernel has CONFIG_PAGE_REPORTING built in).
    /// </summary>
    internal static readonly string[] Modules = ["virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "virtio_console", "virtio_balloon", "failover", "net_failover", "virtio_net"];

    /// <summary>Finds or builds the bundle that matches this host's agent and tools.</summary>
    internal static async Task<RuntimeBundle> EnsureAsync(PyroOptions options, IProgress<PyroProgress>? progress, CancellationToken cancellationToken)
    {
        if (!File.Exists(options.AgentPath))
        {
            throw new HostRequirementException("agent_missing",
                $"the guest agent is missing at {options.AgentPath}. Build the checkout with ./pyro, reinstall the pyro-mcp tool, or set PYRO_AGENT_PATH.");
        }

        // The kernel and initramfs every VM boots: only from a cache no other user can write.
        PrivateDirectory.Ensure(options.RuntimeCacheDir);
        var (kernelPackage, kernelVersion) = KernelPin();
        var kernelDir = await EnsureKernelAsync(options, kernelPackage, kernelVersion, progress, cancellationToken).ConfigureAwait(false);
        var busybox = HostTools.Busybox.Require();
        if (!HostTools.IsStaticElf(busybox))
        {
            throw new HostRequirementException("missing_host_package",
                $"{busybox} is dynamically linked; the initramfs needs the static one. Install it with: {HostTools.InstallCommand(["busybox-static"])}");
        }

        var tini = HostTools.Tini.Require();
        var init = InitScript();
        var parts = new List<(string Name, byte[] Data, bool Exec)>
        {
            ("init", init, true),
            ("bin/busybox", await File.ReadAllBytesAsync(busybox, cancellationToken).ConfigureAwait(false), true),
            ("pyro/tini", await File.ReadAllBytesAsync(tini, cancellationToken).ConfigureAwait(false), true),
            ("pyro/pyro-agent", await File.ReadAllBytesAsync(options.AgentPath, cancellationToken).ConfigureAwait(false), true),
        };
        // The agent takes its loader and libc from here, never from the guest's /lib: the root file
        // system may have another libc or none (init.sh stages them in /run/pyro/lib).
        var agentLibraries = AgentLibraryFiles(options.AgentPath);
        foreach (var library in agentLibraries)
        {
            parts.Add(("pyro/lib/" + Path.GetFileName(library), await File.ReadAllBytesAsync(library, cancellationToken).ConfigureAwait(false), true));
        }

        foreach (var module in Modules)
        {
            parts.Add(($"lib/pyro-modules/{module}.ko", await File.ReadAllBytesAsync(Path.Combine(kernelDir, "modules", module + ".ko"), cancellationToken).ConfigureAwait(false), false));
        }

        var kernelPath = Path.Combine(kernelDir, "vmlinuz");
        var kernelInfo = JsonSerializer.Deserialize(await File.ReadAllTextAsync(Path.Combine(kernelDir, "kernel.json"), cancellationToken).ConfigureAwait(false), InternalJsonContext.Default.KernelInfo)!;
        var idSource = string.Join('\n', parts.Select(p => p.Name + "=" + Hex(p.Data)).Append("kernel=" + kernelInfo.VmlinuzSha256));
        var bundleId = Hex(Encoding.UTF8.GetBytes(idSource))[..16];
        var bundleDir = Path.Combine(options.RuntimeCacheDir, "bundles", bundleId);
        var manifestPath = Path.Combine(bundleDir, "manifest.json");
        var initramfsPath = Path.Combine(bundleDir, "initramfs.cpio");

        if (TryLoad(bundleDir, manifestPath, initramfsPath, kernelPath) is { } existing)
        {
            return existing;
        }

        using var gate = await FileLock.AcquireAsync(Path.Combine(options.RuntimeCacheDir, ".locks", bundleId + ".lock"),
            () => progress?.Report(new PyroProgress("runtime", "wait", [new("reason", "another process is building the runtime bundle")])), cancellationToken).ConfigureAwait(false);
        if (TryLoad(bundleDir, manifestPath, initramfsPath, kernelPath) is { } built)
        {
            return built;
        }

        progress?.Report(new PyroProgress("runtime", "initramfs", [new("bundle", bundleId)]));
        var staging = bundleDir + ".tmp-" + Environment.ProcessId;
        System.IO.Directory.CreateDirectory(staging);
        var output = File.Create(Path.Combine(staging, "initramfs.cpio"));
        await using (output.ConfigureAwait(false))
        {
            var cpio = new CpioWriter(output);
            foreach (var dir in new[] { "bin", "dev", "lib", "lib/pyro-modules", "newroot", "proc", "pyro", "pyro/lib", "sys" })
            {
                cpio.Directory(dir);
            }

            // The kernel opens /dev/console for init before devtmpfs is mounted.
            cpio.CharDevice("dev/console", 5, 1);
            foreach (var (name, data, exec) in parts)
            {
                cpio.File(name, data, exec);
            }

            cpio.Finish();
        }

        var manifest = new RuntimeManifest
        {
            BundleId = bundleId,
            KernelPackage = kernelInfo.Package,
            KernelVersion = kernelInfo.Version,
            KernelDebSha256 = kernelInfo.DebSha256,
            KernelSha256 = kernelInfo.VmlinuzSha256,
            InitramfsSha256 = FileIntegrity.HashAndStamp(Path.Combine(staging, "initramfs.cpio"), Path.Combine(staging, "initramfs.stamp")),
            AgentSha256 = Hex(parts[3].Data),
            AgentLibraries = parts.Where(p => p.Name.StartsWith("pyro/lib/", StringComparison.Ordinal)).ToDictionary(p => p.Name["pyro/lib/".Length..], p => Hex(p.Data)),
            BusyboxVersion = await PackageVersionAsync("busybox-static", cancellationToken).ConfigureAwait(false),
            BusyboxSha256 = Hex(parts[1].Data),
            TiniVersion = await PackageVersionAsync("tini", cancellationToken).ConfigureAwait(false),
            TiniSha256 = Hex(parts[2].Data),
            InitSha256 = Hex(init),
            Modules = Modules,
            BuiltAt = DateTimeOffset.UtcNow,
        };
        await File.WriteAllTextAsync(Path.Combine(staging, "manifest.json"), JsonSerializer.Serialize(manifest, InternalJsonContext.Default.RuntimeManifest), cancellationToken).ConfigureAwait(false);
        if (System.IO.Directory.Exists(bundleDir))
        {
            System.IO.Directory.Delete(bundleDir, recursive: true);
        }

        System.IO.Directory.Move(staging, bundleDir);
        progress?.Report(new PyroProgress("runtime", "ready", [new("bundle", bundleId)]));
        return new RuntimeBundle(bundleDir, kernelPath, initramfsPath, manifest);
    }

    /// <summary>The files in lib/ beside the agent: its dynamic loader and the libraries it was linked against.</summary>
    internal static string[] AgentLibraryFiles(string agentPath)
    {
        var dir = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(agentPath))!, "lib");
        var files = System.IO.Directory.Exists(dir) ? System.IO.Directory.GetFiles(dir) : [];
        if (!files.Any(f => Path.GetFileName(f) == AgentLoader))
        {
            throw new HostRequirementException("agent_missing",
                $"the guest agent's loader is missing at {Path.Combine(dir, AgentLoader)}. Build the checkout with ./pyro, reinstall the pyro-mcp tool, or point PYRO_AGENT_PATH at an agent with its lib/ directory.");
        }

        Array.Sort(files, StringComparer.Ordinal);
        return files;
    }

    /// <summary>The dynamic loader the agent is linked to find in /run/pyro/lib (PyroMcp.GuestAgent.csproj).</summary>
    internal const string AgentLoader = "ld-linux-x86-64.so.2";

    private static RuntimeBundle? TryLoad(string bundleDir, string manifestPath, string initramfsPath, string kernelPath)
    {
        if (!File.Exists(manifestPath))
        {
            return null;
        }

        try
        {
            var manifest = JsonSerializer.Deserialize(File.ReadAllText(manifestPath), InternalJsonContext.Default.RuntimeManifest)!;
            if (FileIntegrity.Verify(initramfsPath, Path.Combine(bundleDir, "initramfs.stamp"), manifest.InitramfsSha256)
                && FileIntegrity.Verify(kernelPath, Path.Combine(Path.GetDirectoryName(kernelPath)!, "vmlinuz.stamp"), manifest.KernelSha256))
            {
                return new RuntimeBundle(bundleDir, kernelPath, initramfsPath, manifest);
            }
        }
        catch (JsonException)
        {
        }

        // Damaged: rebuild it rather than boot it.
        return null;
    }

    internal static (string Package, string Version) KernelPin()
    {
        var pin = Environment.GetEnvironmentVariable("PYRO_KERNEL_PACKAGE");
        if (string.IsNullOrWhiteSpace(pin))
        {
            return (PinnedKernelPackage, PinnedKernelVersion);
        }

        var split = pin.Split('=', 2);
        return split.Length == 2 && split[0].Length > 0 && split[1].Length > 0
            ? (split[0], split[1])
            : throw new PyroInputException("invalid_kernel_pin", $"PYRO_KERNEL_PACKAGE must be NAME=VERSION, e.g. {PinnedKernelPackage}={PinnedKernelVersion}");
    }

    private static async Task<string> EnsureKernelAsync(PyroOptions options, string package, string version, IProgress<PyroProgress>? progress, CancellationToken cancellationToken)
    {
        var dir = Path.Combine(options.RuntimeCacheDir, "kernels", $"{package}_{version}");
        var infoPath = Path.Combine(dir, "kernel.json");
        if (File.Exists(infoPath) && MissingModules(dir).Count == 0)
        {
            return dir;
        }

        using var gate = await FileLock.AcquireAsync(dir + ".lock", null, cancellationToken).ConfigureAwait(false);
        if (File.Exists(infoPath) && MissingModules(dir).Count == 0)
        {
            return dir;
        }

        progress?.Report(new PyroProgress("runtime", "kernel", [new("package", package), new("version", version)]));
        var apt = HostTools.AptGet.Require();
        var dpkg = HostTools.DpkgDeb.Require();
        var staging = dir + ".tmp-" + Environment.ProcessId;
        if (System.IO.Directory.Exists(staging))
        {
            System.IO.Directory.Delete(staging, true);
        }

        System.IO.Directory.CreateDirectory(staging);
        try
        {
            var download = await ProcessRunner.RunAsync(apt, ["download", "-q", $"{package}={version}"], workingDirectory: staging, cancellationToken: cancellationToken).ConfigureAwait(false);
            var deb = System.IO.Directory.GetFiles(staging, "*.deb").FirstOrDefault();
            if (download.ExitCode != 0 || deb is null)
            {
                throw new HostRequirementException("kernel_download_failed",
                    $"could not download the guest kernel {package}={version} from the Debian mirror: {download.StderrTail.Trim()}\n" +
                    $"Run 'apt-get update' and try again. If the mirror no longer has this version, pick one from 'apt-cache policy linux-image-cloud-amd64' and set PYRO_KERNEL_PACKAGE=NAME=VERSION.");
            }

            var unpack = Path.Combine(staging, "deb");
            var extract = await ProcessRunner.RunAsync(dpkg, ["-x", deb, unpack], cancellationToken: cancellationToken).ConfigureAwait(false);
            if (extract.ExitCode != 0)
            {
                throw new HostRequirementException("kernel_unpack_failed", $"dpkg-deb could not unpack {deb}: {extract.StderrTail}");
            }

            var moduleFiles = System.IO.Directory.GetFiles(Path.Combine(unpack, "lib", "modules"), "*.ko", SearchOption.AllDirectories);
            string ModuleSource(string module) => moduleFiles.FirstOrDefault(f => Path.GetFileName(f) == module + ".ko")
                ?? throw new HostRequirementException("kernel_module_missing", $"{package} has no {module}.ko; pick another kernel with PYRO_KERNEL_PACKAGE");

            if (File.Exists(infoPath)
                && JsonSerializer.Deserialize(await File.ReadAllTextAsync(infoPath, cancellationToken).ConfigureAwait(false), InternalJsonContext.Default.KernelInfo) is { } cached
                && cached.DebSha256 == FileIntegrity.Sha256(deb))
            {
                // A cache from before a module joined the list: the missing modules are added beside
                // the kernel it has. The directory is not replaced, since VMs of other processes may
                // be booting its vmlinuz right now; each file appears whole (copy, then rename).
                foreach (var module in MissingModules(dir))
                {
                    var target = Path.Combine(dir, "modules", module + ".ko");
                    File.Copy(ModuleSource(module), target + ".tmp-" + Environment.ProcessId, overwrite: true);
                    File.Move(target + ".tmp-" + Environment.ProcessId, target, overwrite: true);
                }

                return dir;
            }

            var vmlinuz = System.IO.Directory.GetFiles(Path.Combine(unpack, "boot"), "vmlinuz-*").Single();
            File.Copy(vmlinuz, Path.Combine(staging, "vmlinuz"));
            System.IO.Directory.CreateDirectory(Path.Combine(staging, "modules"));
            foreach (var module in Modules)
            {
                File.Copy(ModuleSource(module), Path.Combine(staging, "modules", module + ".ko"));
            }

            var info = new KernelInfo(package, version, FileIntegrity.Sha256(deb), FileIntegrity.HashAndStamp(Path.Combine(staging, "vmlinuz"), Path.Combine(staging, "vmlinuz.stamp")));
            System.IO.Directory.Delete(unpack, true);
            File.Delete(deb);
            await File.WriteAllTextAsync(Path.Combine(staging, "kernel.json"), JsonSerializer.Serialize(info, InternalJsonContext.Default.KernelInfo), cancellationToken).ConfigureAwait(false);
            if (System.IO.Directory.Exists(dir))
            {
                System.IO.Directory.Delete(dir, true);
            }

            System.IO.Directory.Move(staging, dir);
            return dir;
        }
        finally
        {
            if (System.IO.Directory.Exists(staging))
            {
                System.IO.Directory.Delete(staging, true);
            }
        }
    }

    /// <summary>The modules of <see cref="Modules"/> a cached kernel directory does not have.</summary>
    internal static List<string> MissingModules(string kernelDir)
        => Modules.Where(m => !File.Exists(Path.Combine(kernelDir, "modules", m + ".ko"))).ToList();

    private static async Task<string> PackageVersionAsync(string package, CancellationToken cancellationToken)
    {
        try
        {
            var result = await ProcessRunner.RunAsync("dpkg-query", ["-W", "-f=${Version}", package], cancellationToken: cancellationToken).ConfigureAwait(false);
            return result.ExitCode == 0 ? result.Stdout.Trim() : "unknown";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "unknown";
        }
    }

    private static byte[] InitScript()
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("PyroMcp.Runtime.init.sh")!;
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        return memory.ToArray();
    }

    private static string Hex(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));
}

/// <summary>The extracted guest kernel and where it came from.</summary>
internal sealed record KernelInfo(string Package, string Version, string DebSha256, string VmlinuzSha256);
