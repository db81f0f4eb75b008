namespace PyroMcp.Host;

/// <summary>What the host's /dev/kvm can do, and which accelerator follows from it.</summary>
internal sealed record KvmProbe(bool Exists, bool Readable, bool Writable, bool Usable, string Reason)
{
    internal static KvmProbe Detect()
    {
        const string Device = "/dev/kvm";
        if (!File.Exists(Device))
        {
            return new KvmProbe(false, false, false, false, "/dev/kvm does not exist (no KVM module, or a VM without nested virtualization)");
        }

        var readable = CanOpen(Device, FileAccess.Read);
        var writable = CanOpen(Device, FileAccess.ReadWrite);
        if (!readable || !writable)
        {
            return new KvmProbe(true, readable, writable, false, "/dev/kvm is not read-write for this user (add it to the kvm group)");
        }

        // Nested PVM exposes /dev/kvm but cannot boot a stock kernel: measured, it hangs in early boot.
        if (Directory.Exists("/sys/module/kvm_pvm"))
        {
            return new KvmProbe(true, true, true, false, "/dev/kvm is provided by kvm_pvm (nested PVM), which cannot boot a normal guest kernel");
        }

        var cpuinfo = File.Exists("/proc/cpuinfo") ? File.ReadAllText("/proc/cpuinfo") : "";
        var flags = cpuinfo.Split('\n').FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal)) ?? "";
        var words = flags.Split([' ', '\t', ':'], StringSplitOptions.RemoveEmptyEntries);
        if (!words.Contains("vmx") && !words.Contains("svm"))
        {
            return new KvmProbe(true, true, true, false, "the CPU reports neither vmx nor svm");
        }

        return new KvmProbe(true, true, true, true, "/dev/kvm is usable (vmx/svm present)");
    }

    /// <summary>Resolves a request for an accelerator against what the host has.</summary>
    internal (Accelerator Chosen, string Why) Choose(Accelerator requested) => requested switch
    {
        Accelerator.Kvm when !Usable => throw new HostRequirementException("kvm_unavailable", $"KVM was requested but {Reason}. Ask for the TCG accelerator (Accelerator.Tcg, or PYRO_ACCEL=tcg), or run on a host with working KVM."),
        Accelerator.Kvm => (Accelerator.Kvm, "requested"),
        Accelerator.Tcg => (Accelerator.Tcg, "requested"),
        _ when Usable => (Accelerator.Kvm, Reason),
        _ => (Accelerator.Tcg, Reason),
    };

    private static bool CanOpen(string path, FileAccess access)
    {
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, access);
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
