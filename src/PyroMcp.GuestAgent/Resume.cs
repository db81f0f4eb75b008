using System.Runtime.InteropServices;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent;

/// <summary>
/// Makes a guest restored from a memory image its own VM. Every VM restored from one template
/// wakes with the same kernel RNG state, host name, machine id and lease; the host sends what
/// must differ before it lets any command in, and a guest that cannot take the entropy fails the
/// hello, so the host never hands out a VM whose random numbers a sibling could predict.
/// </summary>
internal static partial class Resume
{
    private const int MinEntropyBytes = 32;
    private const int MaxEntropyBytes = 512;

    // linux/random.h: _IOW('R', 0x03, int[2]) and _IO('R', 0x07).
    private const uint RndAddEntropy = 0x40085203;
    private const uint RndReseedCrng = 0x5207;

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int IoctlPointer(int fd, nuint request, nint argument);

    [LibraryImport("libc", EntryPoint = "sethostname", SetLastError = true)]
    private static partial int SetHostNameNative(ReadOnlySpan<byte> name, nuint length);

    /// <summary>Applies <paramref name="resume"/>; throws <see cref="AgentFailure"/> on what must not be skipped.</summary>
    internal static void Apply(ResumeRequest resume, string busybox)
    {
        Reseed(resume.Entropy);
        SetHostName(resume.Hostname);
        if (resume.MachineId is { } machineId)
        {
            WriteMachineId(machineId);
        }

        if (resume.RefreshNetwork)
        {
            RefreshLease(busybox);
        }
    }

    private static void Reseed(string entropyBase64)
    {
        byte[] entropy;
        try
        {
            entropy = Convert.FromBase64String(entropyBase64);
        }
        catch (FormatException)
        {
            throw new AgentFailure("bad_request", "resume entropy is not base64");
        }

        if (entropy.Length is < MinEntropyBytes or > MaxEntropyBytes)
        {
            throw new AgentFailure("bad_request", $"resume entropy must be {MinEntropyBytes} to {MaxEntropyBytes} bytes");
        }

        // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }: the bytes are
        // credited in full, which is what lets RNDRESEEDCRNG draw a new key from them at once.
        var info = new byte[8 + entropy.Length];
        BitConverter.TryWriteBytes(info.AsSpan(0, 4), entropy.Length * 8);
        BitConverter.TryWriteBytes(info.AsSpan(4, 4), entropy.Length);
        entropy.CopyTo(info, 8);
        using var random = File.OpenHandle("/dev/urandom", FileMode.Open, FileAccess.Write);
        var fd = (int)random.DangerousGetHandle();
        var pinned = GCHandle.Alloc(info, GCHandleType.Pinned);
        try
        {
            if (IoctlPointer(fd, RndAddEntropy, pinned.AddrOfPinnedObject()) != 0)
            {
                throw new AgentFailure("reseed_failed", $"RNDADDENTROPY failed: errno {Marshal.GetLastPInvokeError()}");
            }
        }
        finally
        {
            pinned.Free();
            Array.Clear(info);
            Array.Clear(entropy);
        }

        if (IoctlPointer(fd, RndReseedCrng, 0) != 0)
        {
            throw new AgentFailure("reseed_failed", $"RNDRESEEDCRNG failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    private static void SetHostName(string hostname)
    {
        // The kernel takes up to 64 bytes; the host sends pyro-<id>. Anything else is refused, not cut.
        if (hostname.Length is 0 or > 64 || !hostname.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.'))
        {
            throw new AgentFailure("bad_request", "resume hostname must be 1-64 letters, digits, '-' or '.'");
        }

        var bytes = System.Text.Encoding.ASCII.GetBytes(hostname);
        if (SetHostNameNative(bytes, (nuint)bytes.Length) != 0)
        {
            throw new AgentFailure("resume_failed", $"sethostname failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    private static void WriteMachineId(string machineId)
    {
        if (machineId.Length != 32 || !machineId.All(char.IsAsciiHexDigitLower))
        {
            throw new AgentFailure("bad_request", "resume machine_id must be 32 lowercase hex digits");
        }

        // Only a root that has one gets a new one: an empty or missing file is systemd's "first boot".
        const string path = "/etc/machine-id";
        if (new FileInfo(path) is { Exists: true, Length: > 0, LinkTarget: null })
        {
            File.WriteAllText(path, machineId + "\n");
        }
    }

    /// <summary>
    /// A new lease from the new passt, written where the boot's lease was (/run/pyro/network, read
    /// by hello) and into /etc/resolv.conf. Failing to get one is recorded there, as at boot.
    /// </summary>
    private static void RefreshLease(string busybox)
    {
        if (!Directory.Exists("/sys/class/net/eth0"))
        {
            return;
        }

        const string script = "/run/pyro/udhcpc-resume.sh";
        File.WriteAllText(script, $$"""
            #!{{busybox}} sh
            case "$1" in
              bound|renew)
                {{busybox}} ip addr flush dev "$interface"
                {{busybox}} ip addr add "$ip/${mask:-24}" dev "$interface"
                gw="${router%% *}"
                [ -n "$gw" ] && {{busybox}} ip route replace default via "$gw" dev "$interface"
                printf 'address=%s\nprefix=%s\ngateway=%s\ndns="%s"\n' "$ip" "${mask:-24}" "$gw" "$dns" > /run/pyro/network
                { for s in $dns; do echo "nameserver $s"; done; echo "options timeout:2 attempts:2"; } > /run/pyro/resolv.conf
                ;;
            esac
            exit 0

            """);
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.Delete("/run/pyro/network");
        using var lease = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(busybox)
        {
            ArgumentList = { "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        _ = lease.StandardOutput.ReadToEndAsync();
        _ = lease.StandardError.ReadToEndAsync();
        lease.WaitForExit();
        if (lease.ExitCode != 0 || !File.Exists("/run/pyro/network"))
        {
            File.WriteAllText("/run/pyro/network", "error=\"no DHCP lease on eth0 from the host passt after restore\"\n");
            return;
        }

        if (File.Exists("/run/pyro/resolv.conf"))
        {
            File.Delete("/etc/resolv.conf");
            File.Copy("/run/pyro/resolv.conf", "/etc/resolv.conf");
        }
    }
}
