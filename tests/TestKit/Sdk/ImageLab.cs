using PyroMcp.Host;

namespace PyroMcp.TestKit;

/// <summary>
/// OCI images made by tools no one here wrote: <c>umoci</c> builds a busybox-only image (static
/// busybox, an /etc/passwd with one user) with Env, WorkingDir and User set, as an OCI layout;
/// <c>skopeo</c> copies it to an archive, to zstd layers, and to Debian's <c>docker-registry</c>
/// on 127.0.0.1 (a <see cref="RegistryLab"/> without auth, started on first push) as OCI or Docker schema 2.
/// </summary>
internal sealed class ImageLab : IAsyncDisposable
{
    internal const string Tag = "1.0";
    internal const string User = "app";
    internal const string WorkingDir = "/srv/app";
    internal static readonly string[] Env = ["GREETING=hello from the image", "APP_MODE=imported"];

    private readonly TempDir _dir = new("pyro-imagelab-");
    private RegistryLab? _registry;

    /// <summary>The umoci-built OCI layout (gzip layers).</summary>
    internal string Layout => Path.Combine(_dir.Path, "layout");

    internal string LayoutRef => $"oci:{Layout}:{Tag}";

    internal int RegistryPort { get; private set; }

    internal static async Task<ImageLab> CreateAsync()
    {
        var lab = new ImageLab();
        try
        {
            await lab.BuildAsync();
            return lab;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    private async Task BuildAsync()
    {
        var busybox = HostTools.Busybox.Require();
        Assert.True(HostTools.IsStaticElf(busybox), $"{busybox} must be the static busybox (busybox-static)");
        var bundle = Path.Combine(_dir.Path, "bundle");
        await Umoci("init", "--layout", Layout);
        await Umoci("new", "--image", $"{Layout}:{Tag}");
        await Umoci("unpack", "--image", $"{Layout}:{Tag}", bundle);
        var root = Path.Combine(bundle, "rootfs");
        foreach (var dir in new[] { "bin", "etc", "home/app" })
        {
            Directory.CreateDirectory(Path.Combine(root, dir));
        }

        File.Copy(busybox, Path.Combine(root, "bin", "busybox"));
        File.SetUnixFileMode(Path.Combine(root, "bin", "busybox"), (UnixFileMode)0x1ED);
        foreach (var applet in new[] { "sh", "id", "pwd", "env", "cat", "echo", "ls" })
        {
            File.CreateSymbolicLink(Path.Combine(root, "bin", applet), "busybox");
        }

        File.WriteAllText(Path.Combine(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n");
        File.WriteAllText(Path.Combine(root, "etc", "group"), "root:x:0:\napp:x:1000:\n");
        await Umoci("repack", "--image", $"{Layout}:{Tag}", bundle);
        var config = new List<string> { "config", "--image", $"{Layout}:{Tag}", "--config.workingdir", WorkingDir, "--config.user", User, "--config.cmd", "/bin/sh" };
        foreach (var e in Env)
        {
            config.Add("--config.env");
            config.Add(e);
        }

        await Umoci([.. config]);
        // A second layer, so whiteouts and stacking go through the real path: it replaces nothing the agent needs.
        await Umoci("unpack", "--image", $"{Layout}:{Tag}", Path.Combine(_dir.Path, "bundle2"));
        File.WriteAllText(Path.Combine(_dir.Path, "bundle2", "rootfs", "etc", "motd"), "second layer\n");
        await Umoci("repack", "--image", $"{Layout}:{Tag}", Path.Combine(_dir.Path, "bundle2"));
    }

    /// <summary>The layout copied by skopeo into an OCI archive.</summary>
    internal async Task<string> ArchiveAsync()
    {
        var file = Path.Combine(_dir.Path, "image.tar");
        await Skopeo("copy", LayoutRef, $"oci-archive:{file}:{Tag}");
        return $"oci-archive:{file}:{Tag}";
    }

    /// <summary>The layout copied by skopeo with every layer recompressed as zstd.</summary>
    internal async Task<string> ZstdLayoutAsync()
    {
        var dir = Path.Combine(_dir.Path, "zstd");
        await Skopeo("copy", "--dest-compress-format", "zstd", "--dest-compress", LayoutRef, $"oci:{dir}:{Tag}");
        return $"oci:{dir}:{Tag}";
    }

    /// <summary>The layout pushed by skopeo to the registry (started on first use); returns the reference.</summary>
    internal async Task<string> PushAsync(string repository, bool dockerV2s2)
    {
        await StartRegistryAsync();
        var reference = $"127.0.0.1:{RegistryPort}/{repository}:{Tag}";
        var args = new List<string> { "copy", "--dest-tls-verify=false" };
        if (dockerV2s2)
        {
            args.AddRange(["--format", "v2s2"]);
        }

        args.AddRange([LayoutRef, $"docker://{reference}"]);
        await Skopeo([.. args]);
        return reference;
    }

    private async Task StartRegistryAsync()
    {
        _registry ??= await RegistryLab.StartAsync(anonymous: true);
        RegistryPort = _registry.Port;
    }

    private static async Task Umoci(params string[] args)
    {
        var result = await Processes.RunAsync("umoci", args, timeout: TimeSpan.FromMinutes(2));
        Assert.True(result.ExitCode == 0, $"umoci {string.Join(' ', args)}: {result}");
    }

    private static async Task Skopeo(params string[] args)
    {
        var result = await Processes.RunAsync("skopeo", ["--insecure-policy", .. args], timeout: TimeSpan.FromMinutes(2));
        Assert.True(result.ExitCode == 0, $"skopeo {string.Join(' ', args)}: {result}");
    }

    public async ValueTask DisposeAsync()
    {
        if (_registry is { } registry)
        {
            await registry.DisposeAsync();
        }

        _dir.Dispose();
    }
}
