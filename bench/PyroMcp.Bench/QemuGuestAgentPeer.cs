using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using PyroMcp;
using PyroMcp.Protocol;
using PyroMcp.Runtime;
using PyroMcp.Vmm;

/// <summary>
/// The exec peer: qemu-guest-agent's <c>guest-exec</c> in the same kind of guest as pyro's exec
/// (the same environment image, kernel, initramfs, size and accelerator). The guest is a normal
/// pyro VM with one more port, <c>org.qemu.guest_agent.0</c>; the host's own qemu-ga (Debian 12,
/// like the guest) is copied in with its loader and libraries, since the environment image has no
/// glib, and run through that loader so the guest's libc never mixes with the host's.
/// </summary>
internal static class QemuGuestAgentPeer
{
    internal const string HostBinary = "/usr/sbin/qemu-ga";
    private const string GuestDir = "/workspace/qga";
    private const int MaxLineBytes = 64 * 1024;

    /// <summary>
    /// Boots the guest, starts qemu-ga in it and times <paramref name="rounds"/> round trips of
    /// <c>guest-exec /bin/true</c> followed by <c>guest-exec-status</c> polled back to back until
    /// it says exited (the answer that says so ends the round trip).
    /// </summary>
    internal static async Task<List<double>> ExecRoundTripsAsync(VmSpec spec, string rootfsImage, RuntimeBundle bundle, PyroOptions options, int rounds,
        CancellationToken cancellationToken)
    {
        if (!File.Exists(HostBinary))
        {
            throw new InvalidOperationException($"the bench's qemu-ga peer needs {HostBinary} on the host: apt-get install -y qemu-guest-agent (./test.sh installs it)");
        }

        var files = await HostFilesAsync(cancellationToken);
        var scratch = Directory.CreateTempSubdirectory("pyro-bench-qga-").FullName;
        try
        {
            var socketPath = Path.Combine(scratch, "qga.sock");
            await using var vm = await QemuVm.StartAsync(QemuVm.NewId(), spec, rootfsImage, bundle, options, cancellationToken, qemuGuestAgentSocketPath: socketPath);
            vm.DiscardOnDispose = true;
            foreach (var file in files)
            {
                await using var source = File.OpenRead(file);
                await vm.Agent.CallAsync(new AgentRequest
                {
                    Op = AgentOps.FilesWrite,
                    Files = new FilesRequest { Path = GuestDir + "/" + Path.GetFileName(file), Mode = Convert.ToInt32("755", 8), CreateParents = true },
                }, null, source, cancellationToken);
            }

            // The port's device node is found by its name in sysfs: the guest runs no udev, so
            // there is no /dev/virtio-ports/ link. qemu-ga runs through the host's loader (the
            // first file, see HostFilesAsync) with the copied libraries.
            var loader = Path.GetFileName(files[0]);
            var command = "port=; for d in /sys/class/virtio-ports/*; do [ \"$(cat \"$d/name\")\" = " + QemuCommandLine.QemuGuestAgentPortName + " ] && port=/dev/${d##*/}; done; "
                + "[ -n \"$port\" ] || { echo \"no " + QemuCommandLine.QemuGuestAgentPortName + " port in /sys/class/virtio-ports\" >&2; exit 1; }; "
                + $"exec {GuestDir}/{loader} --library-path {GuestDir} {GuestDir}/qemu-ga -m virtio-serial -p \"$port\" -t {GuestDir}";
            await vm.Agent.CallAsync(new AgentRequest { Op = AgentOps.ServiceStart, Service = new ServiceRequest { Name = "qemu-ga", Command = command } }, null, null, cancellationToken);

            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
            await using var stream = new NetworkStream(socket, ownsSocket: false);
            var peer = new Peer(stream);
            try
            {
                await peer.SyncAsync(TimeSpan.FromSeconds(180), cancellationToken);
            }
            catch (TimeoutException ex)
            {
                var logs = await vm.Agent.CallAsync(new AgentRequest { Op = AgentOps.ServiceLogs, Service = new ServiceRequest { Name = "qemu-ga" } }, null, null, cancellationToken);
                throw new InvalidOperationException($"{ex.Message}; qemu-ga in the guest is {logs.ServiceLogs?.Service.State} (exit {logs.ServiceLogs?.Service.ExitCode}), its stderr:\n{logs.ServiceLogs?.Stderr}", ex);
            }

            var trips = new List<double>();
            for (var i = 0; i < rounds; i++)
            {
                var clock = Stopwatch.StartNew();
                var started = await peer.CallAsync("{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/bin/true\",\"capture-output\":true}}", cancellationToken);
                var pid = started.GetProperty("pid").GetInt64();
                var status = "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":" + pid.ToString(CultureInfo.InvariantCulture) + "}}";
                while (true)
                {
                    var answer = await peer.CallAsync(status, cancellationToken);
                    if (answer.GetProperty("exited").GetBoolean())
                    {
                        trips.Add(clock.Elapsed.TotalMilliseconds);
                        if (!answer.TryGetProperty("exitcode", out var code) || code.GetInt32() != 0)
                        {
                            throw new InvalidOperationException("qemu-ga's guest-exec of /bin/true did not exit 0: " + answer.GetRawText());
                        }

                        break;
                    }
                }
            }

            return trips;
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    /// <summary>The loader first, then qemu-ga and every library ldd names (symlinks read through).</summary>
    private static async Task<List<string>> HostFilesAsync(CancellationToken cancellationToken)
    {
        var ldd = await PyroMcp.Host.ProcessRunner.RunAsync("ldd", [HostBinary], cancellationToken: cancellationToken);
        if (ldd.ExitCode != 0)
        {
            throw new InvalidOperationException($"ldd {HostBinary} exited {ldd.ExitCode}: {ldd.StderrTail}");
        }

        string? loader = null;
        var files = new List<string> { HostBinary };
        foreach (var line in ldd.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            // "libglib-2.0.so.0 => /lib/x86_64-linux-gnu/libglib-2.0.so.0 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)".
            var arrow = line.IndexOf("=> ", StringComparison.Ordinal);
            var path = (arrow >= 0 ? line[(arrow + 3)..] : line).Split(' ')[0];
            if (!path.StartsWith('/'))
            {
                continue;
            }

            if (arrow < 0)
            {
                loader = path;
            }
            else
            {
                files.Add(path);
            }
        }

        return loader is null ? throw new InvalidOperationException("ldd named no loader for " + HostBinary) : [loader, .. files];
    }

    /// <summary>QMP-style JSON lines to and from qemu-ga: one command, one answer.</summary>
    private sealed class Peer(NetworkStream stream)
    {
        private readonly byte[] _buffer = new byte[MaxLineBytes];
        private int _start;
        private int _end;

        /// <summary>
        /// guest-sync with a fresh id until the answer carries it: what the port held before (a
        /// half line, answers to earlier syncs) is skipped, and syncs sent before qemu-ga opened
        /// its end are lost, so they are repeated.
        /// </summary>
        internal async Task SyncAsync(TimeSpan deadline, CancellationToken cancellationToken)
        {
            var until = Stopwatch.StartNew();
            var id = Random.Shared.NextInt64(1, 1L << 40);
            while (until.Elapsed < deadline)
            {
                await SendAsync("{\"execute\":\"guest-sync\",\"arguments\":{\"id\":" + id.ToString(CultureInfo.InvariantCulture) + "}}", cancellationToken);
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                wait.CancelAfter(TimeSpan.FromSeconds(1));
                try
                {
                    while (true)
                    {
                        var line = await ReadLineAsync(wait.Token);
                        if (TryParse(line) is { } answer && answer.TryGetProperty("return", out var value) && value.ValueKind == JsonValueKind.Number && value.GetInt64() == id)
                        {
                            return;
                        }
                    }
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                }
            }

            throw new TimeoutException($"qemu-ga did not answer guest-sync within {deadline.TotalSeconds:0} s");
        }

        internal async Task<JsonElement> CallAsync(string command, CancellationToken cancellationToken)
        {
            await SendAsync(command, cancellationToken);
            var line = await ReadLineAsync(cancellationToken);
            var answer = TryParse(line) ?? throw new InvalidOperationException("qemu-ga answered with something not JSON: " + line);
            if (answer.TryGetProperty("return", out var value))
            {
                return value;
            }

            throw new InvalidOperationException($"qemu-ga refused {command}: {answer.GetRawText()}");
        }

        private async Task SendAsync(string command, CancellationToken cancellationToken)
            => await stream.WriteAsync(Encoding.UTF8.GetBytes(command + "\n"), cancellationToken);

        private async Task<string> ReadLineAsync(CancellationToken cancellationToken)
        {
            while (true)
            {
                var newline = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
                if (newline >= 0)
                {
                    var line = Encoding.UTF8.GetString(_buffer, _start, newline - _start);
                    _start = newline + 1;
                    return line;
                }

                if (_start > 0)
                {
                    Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                    _end -= _start;
                    _start = 0;
                }

                if (_end == _buffer.Length)
                {
                    throw new InvalidOperationException($"qemu-ga sent a line over {MaxLineBytes} bytes");
                }

                var read = await stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken);
                if (read == 0)
                {
                    throw new InvalidOperationException("qemu-ga's socket closed");
                }

                _end += read;
            }
        }

        private static JsonElement? TryParse(string line)
        {
            try
            {
                // A delimiter byte (0xFF, after guest-sync-delimited) or a half line from before the sync is not JSON.
                using var document = JsonDocument.Parse(line.Trim('\uFFFD', ' ', '\r'));
                return document.RootElement.Clone();
            }
            catch (JsonException)
            {
                return null;
            }
        }
    }
}
