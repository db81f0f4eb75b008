namespace PyroMcp.Host;

/// <summary>A program pyro runs on the host, and the Debian package that provides it.</summary>
internal sealed record HostTool(string Name, string Package, string[] Candidates, string Purpose, string? OverrideVariable = null)
{
    internal string? Find()
    {
        // An explicit override is taken as it is: a wrong one must fail, not fall back silently.
        if (OverrideVariable is not null && Environment.GetEnvironmentVariable(OverrideVariable) is { Length: > 0 } overridden)
        {
            return File.Exists(overridden) ? overridden : null;
        }

        foreach (var candidate in Candidates)
        {
            if (candidate.Contains('/'))
            {
                if (File.Exists(candidate))
                {
                    return candidate;
                }

                continue;
            }

            foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':').Concat(["/usr/sbin", "/sbin"]))
            {
                var path = Path.Combine(dir, candidate);
                if (dir.Length > 0 && File.Exists(path))
                {
                    return path;
                }
            }
        }

        return null;
    }

    /// <summary>The path, or a <see cref="HostRequirementException"/> naming the package to install.</summary>
    internal string Require()
        => Find() ?? throw (OverrideVariable is not null && Environment.GetEnvironmentVariable(OverrideVariable) is { Length: > 0 } bad
            ? new HostRequirementException("missing_host_package", $"{OverrideVariable} points to {bad}, which does not exist. Fix or unset {OverrideVariable}.")
            : new HostRequirementException(
            "missing_host_package",
            $"{Name} is not installed ({Purpose}). Install it with: {HostTools.InstallCommand([Package])}"));
}

/// <summary>
/// Everything pyro needs on the host, in one list so doctor, the launcher and the runtime agree.
/// The list is scripts/host-packages.txt, embedded here and read by scripts/host-setup.sh too.
/// </summary>
internal static class HostTools
{
    /// <summary>The embedded scripts/host-packages.txt.</summary>
    internal const string PackageListResource = "PyroMcp.Host.host-packages.txt";

    internal static readonly IReadOnlyList<HostTool> All = Parse(ReadPackageList());

    internal static readonly HostTool Qemu = Get("qemu-system-x86_64");
    internal static readonly HostTool QemuImg = Get("qemu-img");
    internal static readonly HostTool Mmdebstrap = Get("mmdebstrap");
    internal static readonly HostTool MkfsExt4 = Get("mkfs.ext4");
    internal static readonly HostTool Debugfs = Get("debugfs");
    internal static readonly HostTool E2fsck = Get("e2fsck");
    internal static readonly HostTool Busybox = Get("busybox (static)");
    internal static readonly HostTool Tini = Get("tini-static");
    internal static readonly HostTool Setpriv = Get("setpriv");
    internal static readonly HostTool Unshare = Get("unshare");
    internal static readonly HostTool AptGet = Get("apt-get");
    internal static readonly HostTool DpkgDeb = Get("dpkg-deb");
    internal static readonly HostTool Passt = Get("passt");

    /// <summary>
    /// Reads the package list: one tool a line as <c>name | package | candidates | purpose | override variable</c>,
    /// candidates separated by spaces; blank lines and lines starting with <c>#</c> are skipped.
    /// </summary>
    internal static IReadOnlyList<HostTool> Parse(string text)
    {
        var tools = new List<HostTool>();
        foreach (var line in text.Split('\n'))
        {
            var trimmed = line.Trim();
            if (trimmed.Length == 0 || trimmed.StartsWith('#'))
            {
                continue;
            }

            var fields = trimmed.Split('|').Select(f => f.Trim()).ToArray();
            if (fields.Length != 5 || fields[0].Length == 0 || fields[1].Length == 0 || fields[2].Length == 0)
            {
                throw new InvalidOperationException($"host package list: expected 'name | package | candidates | purpose | override', got: {trimmed}");
            }

            tools.Add(new HostTool(fields[0], fields[1], fields[2].Split(' ', StringSplitOptions.RemoveEmptyEntries), fields[3], fields[4].Length == 0 ? null : fields[4]));
        }

        return tools;
    }

    internal static string ReadPackageList()
    {
        using var stream = typeof(HostTools).Assembly.GetManifestResourceStream(PackageListResource)
            ?? throw new InvalidOperationException($"the SDK was built without its host package list ({PackageListResource})");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    private static HostTool Get(string name)
        => All.SingleOrDefault(t => t.Name == name) ?? throw new InvalidOperationException($"scripts/host-packages.txt has no '{name}'");

    /// <summary>The system user QEMU drops to when pyro runs as root; scripts/host-setup.sh creates it.</summary>
    internal const string DedicatedQemuUser = "pyro-qemu";

    /// <summary>Whether this process runs with root's effective uid, so QEMU must drop its privileges.</summary>
    internal static bool RunningAsRoot => Environment.IsPrivilegedProcess;

    /// <summary>
    /// The user a root-started QEMU drops to: <see cref="DedicatedQemuUser"/> when it exists, else
    /// <c>nobody</c> (shared with other daemons, so a weaker but still unprivileged choice).
    /// Null when pyro does not run as root: QEMU already has only its caller's rights.
    /// </summary>
    internal static string? QemuDropUser() => !RunningAsRoot ? null : UserExists(DedicatedQemuUser) ? DedicatedQemuUser : "nobody";

    /// <summary>The uid and gid of a local user from /etc/passwd, or null when there is none.</summary>
    internal static (int Uid, int Gid)? UserIds(string name)
    {
        try
        {
            foreach (var line in File.ReadLines("/etc/passwd"))
            {
                var fields = line.Split(':');
                if (fields.Length >= 4 && fields[0] == name && int.TryParse(fields[2], out var uid) && int.TryParse(fields[3], out var gid))
                {
                    return (uid, gid);
                }
            }
        }
        catch (IOException)
        {
        }

        return null;
    }

    /// <summary>Whether a local user of that name is in /etc/passwd (system users never come from NSS elsewhere here).</summary>
    internal static bool UserExists(string name)
    {
        try
        {
            return File.ReadLines("/etc/passwd").Any(line => line.StartsWith(name + ":", StringComparison.Ordinal));
        }
        catch (IOException)
        {
            return false;
        }
    }

    internal static string InstallCommand(IEnumerable<string> packages)
        => "sudo apt-get update && sudo apt-get install -y " + string.Join(' ', packages.Distinct());

    /// <summary>Whether the busybox found is statically linked: the initramfs has no libc.</summary>
    internal static bool IsStaticElf(string path)
    {
        try
        {
            using var file = File.OpenRead(path);
            var header = new byte[64];
            if (file.Read(header) < 64 || header[0] != 0x7f || header[1] != (byte)'E' || header[4] != 2)
            {
                return false;
            }

            var phoff = BitConverter.ToInt64(header, 0x20);
            var phentsize = BitConverter.ToUInt16(header, 0x36);
            var phnum = BitConverter.ToUInt16(header, 0x38);
            var entry = new byte[phentsize];
            for (var i = 0; i < phnum; i++)
            {
                file.Position = phoff + (i * phentsize);
                if (file.Read(entry) < 4)
                {
                    return false;
                }

                const uint PtInterp = 3;
                if (BitConverter.ToUInt32(entry, 0) == PtInterp)
                {
                    return false;
                }
            }

            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }
}
