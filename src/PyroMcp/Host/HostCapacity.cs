using System.Globalization;

namespace PyroMcp.Host;

/// <summary>
/// What this host can give guests: its cores and its memory less what the host keeps for itself.
/// The one place requests are checked against the machine, so run and workspace create agree.
/// </summary>
/// <param name="Cores">Cores this process may use.</param>
/// <param name="MemTotalMib">MemTotal from /proc/meminfo, in MiB.</param>
internal sealed record HostCapacity(int Cores, long MemTotalMib)
{
    private static readonly Lazy<HostCapacity> CurrentValue = new(Read);

    /// <summary>This machine, read once per process.</summary>
    internal static HostCapacity Current => CurrentValue.Value;

    /// <summary>
    /// Memory the host keeps for itself and QEMU's own overhead: an eighth of it, at least 512 MiB.
    /// A guest given all of MemTotal would push the host into swap or the OOM killer.
    /// </summary>
    internal long MarginMib => Math.Max(512, MemTotalMib / 8);

    /// <summary>The most guest memory one VM may ask for.</summary>
    internal long MaxGuestMemMib => Math.Max(0, MemTotalMib - MarginMib);

    /// <summary>Default for how many workspaces may exist at once: one per GiB of host memory, at least one.</summary>
    internal int DefaultMaxWorkspaces => (int)Math.Clamp(MemTotalMib / 1024, 1, int.MaxValue);

    /// <summary>Refuses a vCPU count or a memory size the host cannot give, saying what it has.</summary>
    internal void Check(int vcpuCount, int memMib)
    {
        if (vcpuCount > Cores)
        {
            throw new PyroInputException("vcpu_count_exceeds_host",
                $"{vcpuCount} vCPUs were asked for, but this host has {Cores} core{(Cores == 1 ? "" : "s")}: ask for {Cores} or fewer", nameof(RunRequest.VcpuCount));
        }

        if (memMib > MaxGuestMemMib)
        {
            throw new PyroInputException("mem_exceeds_host",
                $"{memMib} MiB of guest memory was asked for, but this host has {MemTotalMib} MiB and keeps {MarginMib} MiB for itself: ask for {MaxGuestMemMib} MiB or less", nameof(RunRequest.MemMib));
        }
    }

    /// <summary>MemTotal in MiB from the text of /proc/meminfo, or null when it is not there.</summary>
    internal static long? ParseMemTotalMib(string meminfo)
    {
        foreach (var line in meminfo.Split('\n'))
        {
            if (!line.StartsWith("MemTotal:", StringComparison.Ordinal))
            {
                continue;
            }

            var fields = line["MemTotal:".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 1 && long.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var kib))
            {
                return kib / 1024;
            }
        }

        return null;
    }

    private static HostCapacity Read()
    {
        long? mem = null;
        try
        {
            mem = ParseMemTotalMib(File.ReadAllText("/proc/meminfo"));
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        // Without /proc/meminfo nothing can be checked; the largest size the API accepts stands in.
        return new HostCapacity(Environment.ProcessorCount, mem ?? long.MaxValue / 2);
    }
}
