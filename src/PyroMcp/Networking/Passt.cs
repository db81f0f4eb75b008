using System.Diagnostics;
using System.Runtime.InteropServices;
using PyroMcp.Host;
using PyroMcp.Vmm;

namespace PyroMcp.Networking;

/// <summary>Builds passt's arguments. Pure, so the options that keep the guest off the host are unit-tested.</summary>
internal static class PasstCommandLine
{
    internal static IReadOnlyList<string> Build(string socketPath, string? runAs)
    {
        var args = new List<string>
        {
            "--foreground",
            "--socket", socketPath,
            // Without this passt maps the gateway address to the host's own loopback, and a guest
            // could reach every service listening on 127.0.0.1.
            "--no-map-gw",
            // One address family to reason about: the guest gets IPv4 only.
            "--ipv4-only",
            // Nothing is forwarded from the host into the guest: published ports do not go through passt.
            "--tcp-ports", "none",
            "--udp-ports", "none",
        };
        if (runAs is not null)
        {
            // Started as root, passt binds its socket first and then drops to this user.
            args.Add("--runas");
            args.Add(runAs);
        }

        return args;
    }
}

/// <summary>
/// The user-mode network of one VM: a passt process that QEMU joins over a unix socket in the
/// VM's private directory. It runs as the caller (or drops from root to QEMU's unprivileged
/// user), dies with its owner like QEMU, and is killed with the VM. (passt's --one-off would
/// end it with QEMU, but the Debian 2023-03 build exits at once with it in the foreground.)
/// </summary>
internal sealed partial class PasstProcess : IAsyncDisposable
{
    internal const string DirectoryName = "net";
    internal const string SocketName = "passt.sock";

    // passt prints this once its socket listens (after bind and listen): the moment QEMU may connect.
    private const string ReadyLine = "You can now start qemu";

    private readonly Process _process;
    private readonly BoundedTail _stderr = new(8 * 1024);
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _pumps;
    private readonly string _directory;

    private PasstProcess(Process process, string directory)
    {
        _process = process;
        _directory = directory;
        SocketPath = Path.Combine(directory, SocketName);
        _process.StandardInput.Close();
        _pumps = Task.WhenAll(Drain(_process.StandardOutput.BaseStream), Drain(_process.StandardError.BaseStream));
    }

    /// <summary>Where QEMU connects.</summary>
    internal string SocketPath { get; }

    /// <summary>passt's own process id, once it runs (inside its launcher's PID namespace when root).</summary>
    internal int Pid => ProcessRunner.Innermost(_process.Id);

    /// <summary>What passt wrote to stderr, for boot failures.</summary>
    internal string StderrTail() => _stderr.Text();

    /// <summary>Starts passt for the VM in <paramref name="vmDirectory"/> and waits until its socket listens.</summary>
    /// <exception cref="HostRequirementException">passt is not installed.</exception>
    /// <exception cref="VmBootException">passt did not start (code <c>network_failed</c>).</exception>
    internal static async Task<PasstProcess> StartAsync(string vmDirectory, CancellationToken cancellationToken)
    {
        var passt = HostTools.Passt.Require();
        var dropTo = HostTools.QemuDropUser();
        var directory = PrepareDirectory(vmDirectory, dropTo);
        // Started as root, passt drops to an unprivileged user before it binds its socket, and that
        // user cannot enter pyro's private directories. So passt starts inside its own directory
        // (owned by that user, inside the VM's 0700 directory) and binds a relative name: the working
        // directory survives the drop, the path to it need not be walked again. Nobody else can reach it.
        // A passt that drops loses its parent-death signal with the uid change, like QEMU: the PID
        // namespace's init keeps it tied to its owner.
        var process = await ProcessRunner.StartTiedToOwnerAsync(passt, PasstCommandLine.Build(SocketName, dropTo), directory, ownPidNamespace: dropTo is not null).ConfigureAwait(false);
        var started = new PasstProcess(process, directory);
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(TimeSpan.FromSeconds(20));
            var exited = process.WaitForExitAsync(CancellationToken.None);
            var first = await Task.WhenAny(started._ready.Task, exited, Task.Delay(Timeout.Infinite, deadline.Token)).ConfigureAwait(false);
            if (first == started._ready.Task && File.Exists(started.SocketPath))
            {
                return started;
            }

            cancellationToken.ThrowIfCancellationRequested();
            await Task.WhenAny(started._pumps, Task.Delay(500, CancellationToken.None)).ConfigureAwait(false);
            var why = first == exited ? $"passt exited before it served the guest network (exit code {process.ExitCode})" : "passt did not open its socket within 20 s";
            throw new VmBootException("network_failed", $"{why}: {Quiet(started._stderr.Text())}", started._stderr.Text(), "");
        }
        catch
        {
            await started.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The VM's <c>net</c> directory, empty, 0700, owned by the user passt will run as.</summary>
    private static string PrepareDirectory(string vmDirectory, string? dropTo)
    {
        var directory = Path.Combine(vmDirectory, DirectoryName);
        if (Directory.Exists(directory))
        {
            // A supervisor killed earlier left it; its passt died with it.
            Directory.Delete(directory, recursive: true);
        }

        Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        if (dropTo is not null)
        {
            var (uid, gid) = HostTools.UserIds(dropTo)
                ?? throw new HostRequirementException("missing_host_user", $"user {dropTo}, which passt runs as, is not in /etc/passwd");
            if (Chown(directory, uid, gid) != 0)
            {
                throw new VmBootException("network_failed", $"could not hand {directory} to {dropTo} for passt (errno {Marshal.GetLastPInvokeError()})", "", "");
            }
        }

        return directory;
    }

    // passt logs to syslog when it has no terminal; the failed attempts only bury what it said.
    private static string Quiet(string text)
        => string.Join('\n', text.Split('\n').Where(l => !l.StartsWith("Failed to send", StringComparison.Ordinal) && l.Trim().Length > 0)).Trim();

    private async Task Drain(Stream source)
    {
        var buffer = new byte[4096];
        try
        {
            int read;
            while ((read = await source.ReadAsync(buffer).ConfigureAwait(false)) > 0)
            {
                _stderr.Append(buffer.AsSpan(0, read));
                if (!_ready.Task.IsCompleted && _stderr.Text().Contains(ReadyLine, StringComparison.Ordinal))
                {
                    _ready.TrySetResult();
                }
            }
        }
        catch (IOException)
        {
        }
    }

    [LibraryImport("libc", EntryPoint = "chown", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Chown(string path, int uid, int gid);

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        await _process.WaitForExitAsync().ConfigureAwait(false);
        await Task.WhenAny(_pumps, Task.Delay(1000)).ConfigureAwait(false);
        _process.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
