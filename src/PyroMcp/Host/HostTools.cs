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

/// <summary>Everything pyro needs on the host, in one list so doctor, the launcher and the runtime agree.</summary>
internal static class HostTools
{
    internal static readonly HostTool Qemu = new("qemu-system-x86_64", "qemu-system-x86", ["qemu-system-x86_64"], "runs the guest VMs", "PYRO_QEMU");
    internal static readonly HostTool QemuImg = new("qemu-img", "qemu-utils", ["qemu-img"], "makes copy-on-write disks");
    internal static readonly HostTool Mmdebstrap = new("mmdebstrap", "mmdebstrap", ["mmdebstrap"], "builds environments from the Debian mirror");
    internal static readonly HostTool MkfsExt4 = new("mkfs.ext4", "e2fsprogs", ["mkfs.ext4"], "turns an environment into a disk image");
    internal static readonly HostTool Busybox = new("busybox (static)", "busybox-static", ["/bin/busybox", "/usr/bin/busybox"], "the initramfs shell and the guest's setsid");
    internal static readonly HostTool Tini = new("tini-static", "tini", ["/usr/bin/tini-static"], "PID 1 in the guest, reaps orphans");
    internal static readonly HostTool Setpriv = new("setpriv", "util-linux", ["setpriv"], "makes QEMU die with its owner");
    internal static readonly HostTool Unshare = new("unshare", "util-linux", ["unshare"], "keeps a de-privileged QEMU dying with its owner (root only)");
    internal static readonly HostTool AptGet = new("apt-get", "apt", ["apt-get"], "downloads the guest kernel package");
    internal static readonly HostTool DpkgDeb = new("dpkg-deb", "dpkg", ["dpkg-deb"], "unpacks the guest kernel package");

    internal static readonly IReadOnlyList<HostTool> All = [Qemu, QemuImg, Mmdebstrap, MkfsExt4, Busybox, Tini, Setpriv, Unshare, AptGet, DpkgDeb];

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
