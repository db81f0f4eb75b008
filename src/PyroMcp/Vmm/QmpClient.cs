using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PyroMcp.Vmm;

/// <summary>
/// The QEMU Machine Protocol on the VM's private control socket: stop, cont, status, and
/// migration to and from a file descriptor the host opened. QEMU runs sandboxed (no exec, no
/// new files after it drops to its own user), so the memory image is always a descriptor handed
/// over with SCM_RIGHTS, never a path or a command QEMU would open itself.
/// </summary>
internal sealed partial class QmpClient : IAsyncDisposable
{
    private readonly Socket _socket;
    // QEMU's own replies are small; a line that outgrows this is not QEMU and ends the connection.
    private readonly byte[] _buffer = new byte[64 * 1024];
    private int _start;
    private int _end;

    private QmpClient(Socket socket) => _socket = socket;

    /// <summary>Connects (retrying while QEMU has not created the socket yet) and leaves the greeting's capability negotiation done.</summary>
    internal static async Task<QmpClient> ConnectAsync(string socketPath, Task qemuExited, CancellationToken cancellationToken)
    {
        while (true)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken).ConfigureAwait(false);
                var client = new QmpClient(socket);
                await client.ReadMessageAsync(cancellationToken).ConfigureAwait(false);
                await client.ExecuteAsync("qmp_capabilities", null, cancellationToken).ConfigureAwait(false);
                return client;
            }
            catch (SocketException)
            {
                socket.Dispose();
                if (qemuExited.IsCompleted)
                {
                    throw new VmBootException("qemu_failed", "QEMU exited before its control socket opened", "", "");
                }

                await Task.Delay(5, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Runs one command and returns its <c>return</c> value; a QMP error becomes a <see cref="VmBootException"/>.</summary>
    internal async Task<JsonNode?> ExecuteAsync(string command, JsonObject? arguments, CancellationToken cancellationToken)
    {
        var request = new JsonObject { ["execute"] = command };
        if (arguments is not null)
        {
            request["arguments"] = arguments;
        }

        await _socket.SendAsync(Encoding.UTF8.GetBytes(request.ToJsonString() + "\n"), cancellationToken).ConfigureAwait(false);
        return await ReadReturnAsync(command, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Hands QEMU a descriptor under <paramref name="name"/> (QMP getfd), for a later <c>fd:NAME</c> migration URI.</summary>
    internal async Task SendFdAsync(string name, SafeHandle descriptor, CancellationToken cancellationToken)
    {
        var request = Encoding.UTF8.GetBytes(new JsonObject { ["execute"] = "getfd", ["arguments"] = new JsonObject { ["fdname"] = name } }.ToJsonString() + "\n");
        SendWithDescriptor(request, (int)descriptor.DangerousGetHandle());
        await ReadReturnAsync("getfd", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Polls <c>query-migrate</c> until the migration completes; a failed one throws with QEMU's reason.</summary>
    internal async Task WaitMigrationAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var state = await ExecuteAsync("query-migrate", null, cancellationToken).ConfigureAwait(false);
            var status = state?["status"]?.GetValue<string>();
            switch (status)
            {
                case "completed":
                    return;
                case "failed" or "cancelled":
                    throw new VmBootException("snapshot_failed", $"QEMU's migration {status}: {state?["error-desc"]?.GetValue<string>() ?? "no reason given"}", "", "");
            }

            await Task.Delay(10, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Polls <c>query-status</c> until an incoming migration is over (QEMU leaves <c>inmigrate</c>); a failed one ends QEMU or its state.</summary>
    internal async Task WaitIncomingAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var status = (await ExecuteAsync("query-status", null, cancellationToken).ConfigureAwait(false))?["status"]?.GetValue<string>();
            if (status is "paused" or "prelaunch" or "postmigrate")
            {
                return;
            }

            if (status is "internal-error" or "shutdown" or "guest-panicked")
            {
                throw new VmBootException("restore_failed", $"the restored VM is in state {status}", "", "");
            }

            await Task.Delay(5, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<JsonNode?> ReadReturnAsync(string command, CancellationToken cancellationToken)
    {
        while (true)
        {
            var message = await ReadMessageAsync(cancellationToken).ConfigureAwait(false);
            if (message is not JsonObject reply || reply.ContainsKey("event"))
            {
                continue;
            }

            if (reply["error"] is JsonObject error)
            {
                throw new VmBootException("qmp_error", $"QEMU refused {command}: {error["desc"]?.GetValue<string>() ?? error.ToJsonString()}", "", "");
            }

            return reply["return"];
        }
    }

    private async Task<JsonNode?> ReadMessageAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var newline = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
            if (newline >= 0)
            {
                var line = _buffer.AsMemory(_start, newline - _start);
                _start = newline + 1;
                try
                {
                    return JsonNode.Parse(line.Span);
                }
                catch (JsonException ex)
                {
                    throw new VmBootException("qmp_error", "QEMU's control socket sent something that is not JSON: " + ex.Message, "", "");
                }
            }

            if (_start > 0)
            {
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }

            if (_end == _buffer.Length)
            {
                throw new VmBootException("qmp_error", $"a QMP message over {_buffer.Length} bytes", "", "");
            }

            var read = await _socket.ReceiveAsync(_buffer.AsMemory(_end), cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                throw new VmBootException("qmp_error", "QEMU closed its control socket", "", "");
            }

            _end += read;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec
    {
        public nint Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MsgHdr
    {
        public nint Name;
        public uint NameLength;
        public nint Iov;
        public nuint IovLength;
        public nint Control;
        public nuint ControlLength;
        public int Flags;
    }

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    private static unsafe partial nint SendMsg(int socket, MsgHdr* message, int flags);

    private unsafe void SendWithDescriptor(byte[] payload, int descriptor)
    {
        const int SolSocket = 1;
        const int ScmRights = 1;
        // struct cmsghdr { size_t len; int level; int type; } then one int, padded to 8 bytes.
        var control = stackalloc byte[24];
        new Span<byte>(control, 24).Clear();
        *(nuint*)control = 20;
        *(int*)(control + 8) = SolSocket;
        *(int*)(control + 12) = ScmRights;
        *(int*)(control + 16) = descriptor;
        fixed (byte* data = payload)
        {
            var iov = new IoVec { Base = (nint)data, Length = (nuint)payload.Length };
            var header = new MsgHdr { Iov = (nint)(&iov), IovLength = 1, Control = (nint)control, ControlLength = 24 };
            var sent = SendMsg((int)_socket.Handle, &header, 0);
            if (sent != payload.Length)
            {
                throw new VmBootException("qmp_error", $"could not hand QEMU a descriptor: errno {Marshal.GetLastPInvokeError()}", "", "");
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
