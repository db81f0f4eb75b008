using System.Globalization;
using System.Runtime.InteropServices;

namespace PyroMcp.GuestAgent;

/// <summary>
/// <c>pyro-agent --exec-as UID GID PROGRAM ARGS...</c>: drops every group, then the group and the
/// user id, checks they are gone for good, and execs the program with the environment it was given.
/// The agent starts itself this way (between setsid and the command) to run a command as an
/// image's user: the runtime's busybox has no applet that switches to a numeric user.
/// </summary>
internal static unsafe partial class ExecAs
{
    internal const string Flag = "--exec-as";

    internal static int Run(string[] args)
    {
        if (args.Length < 4 || !uint.TryParse(args[1], NumberStyles.None, CultureInfo.InvariantCulture, out var uid)
            || !uint.TryParse(args[2], NumberStyles.None, CultureInfo.InvariantCulture, out var gid))
        {
            Console.Error.WriteLine("pyro-agent: usage: --exec-as UID GID PROGRAM [ARGS...]");
            return 126;
        }

        if (SetGroups(0, null) != 0 || SetGid(gid) != 0 || SetUid(uid) != 0 || GetUid() != uid || GetGid() != gid || (uid != 0 && SetUid(0) == 0))
        {
            Console.Error.WriteLine($"pyro-agent: cannot switch to uid {uid} gid {gid} (errno {Marshal.GetLastPInvokeError()})");
            return 126;
        }

        var argv = args[3..];
        var pointers = new nint[argv.Length + 1];
        for (var i = 0; i < argv.Length; i++)
        {
            pointers[i] = Marshal.StringToCoTaskMemUTF8(argv[i]);
        }

        fixed (nint* p = pointers)
        {
            ExecV(pointers[0], p);
        }

        var errno = Marshal.GetLastPInvokeError();
        Console.Error.WriteLine($"pyro: {argv[0]}: cannot execute (errno {errno})");
        return errno == 2 ? 127 : 126;
    }

    [LibraryImport("libc", EntryPoint = "setgroups", SetLastError = true)]
    private static partial int SetGroups(nuint size, uint* list);

    [LibraryImport("libc", EntryPoint = "setgid", SetLastError = true)]
    private static partial int SetGid(uint gid);

    [LibraryImport("libc", EntryPoint = "setuid", SetLastError = true)]
    private static partial int SetUid(uint uid);

    [LibraryImport("libc", EntryPoint = "getuid")]
    private static partial uint GetUid();

    [LibraryImport("libc", EntryPoint = "getgid")]
    private static partial uint GetGid();

    [LibraryImport("libc", EntryPoint = "execv", SetLastError = true)]
    private static partial int ExecV(nint path, nint* argv);
}
