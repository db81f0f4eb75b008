using System.Net;
using System.Net.Sockets;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace PyroMcp.TestKit;

/// <summary>
/// Opens sockets inside a named network namespace (<c>/var/run/netns/NAME</c>) from this process.
/// A socket belongs to the namespace of the thread that created it, for its whole life, so a
/// short-lived thread enters the namespace with setns(2), makes the socket and ends; the socket is
/// then served from any thread. The test process itself never changes namespace.
/// </summary>
internal static class NetNamespace
{
    private const int CloneNewNet = 0x40000000;

    /// <summary>Runs <paramref name="make"/> on a fresh thread that joined namespace <paramref name="name"/>; the thread ends with it.</summary>
    internal static T Run<T>(string name, Func<T> make)
    {
        T result = default!;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var ns = File.OpenHandle(Path.Combine("/var/run/netns", name), FileMode.Open, FileAccess.Read);
                if (Interop.SetNs((int)ns.DangerousGetHandle(), CloneNewNet) != 0)
                {
                    throw new IOException($"setns({name}) failed: errno {Marshal.GetLastPInvokeError()}");
                }

                result = make();
            }
            catch (Exception e)
            {
                error = e;
            }
        })
        {
            IsBackground = true,
            Name = "netns " + name,
        };
        thread.Start();
        thread.Join();
        if (error is not null)
        {
            ExceptionDispatchInfo.Throw(error);
        }

        return result;
    }

    /// <summary>A TCP listener on <paramref name="address"/>:<paramref name="port"/> (0 = any free port) inside namespace <paramref name="name"/>.</summary>
    internal static Socket Listen(string name, IPAddress address, int port) => Run(name, () =>
    {
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(new IPEndPoint(address, port));
            socket.Listen(64);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    });

    /// <summary>A UDP socket bound to <paramref name="address"/>:<paramref name="port"/> inside namespace <paramref name="name"/>.</summary>
    internal static Socket BindUdp(string name, IPAddress address, int port) => Run(name, () =>
    {
        var socket = new Socket(address.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.Bind(new IPEndPoint(address, port));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    });

    /// <summary>
    /// Tries a TCP connection to <paramref name="target"/> from inside namespace <paramref name="name"/>
    /// and says whether it was accepted within <paramref name="deadline"/>; a refused, unreachable or
    /// silent target is false. The probe lets a test check a wall from the host's side of it.
    /// </summary>
    internal static async Task<bool> CanConnectAsync(string name, IPEndPoint target, TimeSpan deadline)
    {
        using var socket = Run(name, () => new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp));
        using var limit = new CancellationTokenSource(deadline);
        try
        {
            await socket.ConnectAsync(target, limit.Token);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private static class Interop
    {
        // DllImport rather than LibraryImport: the test projects do not allow unsafe code, and two
        // ints need no marshalling.
        [DllImport("libc", EntryPoint = "setns", SetLastError = true)]
        internal static extern int SetNs(int fd, int nstype);
    }
}
