using System.Globalization;
using System.Runtime.InteropServices;

namespace PyroMcp.GuestAgent.Services;

/// <summary>
/// Signals everything a supervised process started: its process group and, because a job-control
/// shell puts each job in a group of its own, every process of its session.
/// </summary>
internal static partial class ProcessTree
{
    internal const int SIGHUP = 1;
    internal const int SIGINT = 2;
    internal const int SIGQUIT = 3;
    internal const int SIGKILL = 9;
    internal const int SIGUSR1 = 10;
    internal const int SIGUSR2 = 12;
    internal const int SIGTERM = 15;
    internal const int SIGCONT = 18;
    internal const int SIGTSTP = 20;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int KillNative(int pid, int signal);

    /// <summary>Sends <paramref name="signal"/> to one process group; false when the group is gone.</summary>
    internal static bool SignalGroup(int processGroup, int signal)
        => processGroup > 1 && KillNative(-processGroup, signal) == 0;

    /// <summary>Signals the group led by <paramref name="leader"/> and every process of the session it leads.</summary>
    internal static void SignalSession(int leader, int signal)
    {
        if (leader <= 1)
        {
            return;
        }

        _ = SignalGroup(leader, signal);
        foreach (var pid in SessionMembers(leader))
        {
            _ = KillNative(pid, signal);
        }
    }

    /// <summary>Whether any process is left in the group or the session led by <paramref name="leader"/>.</summary>
    internal static bool AnyAlive(int leader)
        => leader > 1 && (KillNative(-leader, 0) == 0 || SessionMembers(leader).Any(pid => !IsZombie(pid)));

    /// <summary>The live processes whose session id is <paramref name="session"/>, read from /proc.</summary>
    internal static List<int> SessionMembers(int session)
    {
        var members = new List<int>();
        IEnumerable<string> entries;
        try
        {
            entries = Directory.EnumerateDirectories("/proc");
        }
        catch (IOException)
        {
            return members;
        }

        foreach (var entry in entries)
        {
            if (!int.TryParse(Path.GetFileName(entry), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            if (ReadStat(pid) is { } stat && stat.Session == session && stat.State != 'Z')
            {
                members.Add(pid);
            }
        }

        return members;
    }

    private static bool IsZombie(int pid) => ReadStat(pid) is not { } stat || stat.State == 'Z';

    private static (char State, int Group, int Session)? ReadStat(int pid)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        // The command name is in parentheses and may itself hold spaces and parentheses.
        var close = text.LastIndexOf(')');
        if (close < 0)
        {
            return null;
        }

        var fields = text[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (fields.Length < 4
            || !int.TryParse(fields[2], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var group)
            || !int.TryParse(fields[3], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var session))
        {
            return null;
        }

        return (fields[0][0], group, session);
    }
}
