using System.Diagnostics;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent.Services;

/// <summary>One service the agent knows: its metadata (persisted on every change), process and logs.</summary>
internal sealed class ServiceEntry
{
    internal const string MetadataFile = "service.json";
    private readonly Lock _gate = new();
    private ServiceInfo _info;

    internal ServiceEntry(string directory, ServiceInfo info)
    {
        Directory = directory;
        _info = info;
        Stdout = new ServiceLog(System.IO.Path.Combine(directory, "stdout.log"));
        Stderr = new ServiceLog(System.IO.Path.Combine(directory, "stderr.log"));
    }

    internal string Directory { get; }

    internal ServiceInfo Info
    {
        get
        {
            lock (_gate)
            {
                return _info;
            }
        }
    }

    internal string Name => Info.Name;

    internal bool IsRunning => Info.State is ServiceStates.Starting or ServiceStates.Running;

    internal Process? Process { get; set; }

    /// <summary>Completes with the exit code once the reaper has recorded the end.</summary>
    internal TaskCompletionSource<int> Exited { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The state and reason the reaper records when the end was asked for (stop, failed readiness).</summary>
    internal (string State, string Reason)? EndAs { get; set; }

    internal ServiceLog Stdout { get; }

    internal ServiceLog Stderr { get; }

    internal ServiceInfo Update(Func<ServiceInfo, ServiceInfo> change)
    {
        lock (_gate)
        {
            _info = change(_info);
            Persist(_info);
            return _info;
        }
    }

    /// <summary>Writes the metadata through a temp file and a rename, so a crash never leaves half a file.</summary>
    private void Persist(ServiceInfo info)
    {
        try
        {
            var path = System.IO.Path.Combine(Directory, MetadataFile);
            var temp = path + ".tmp";
            File.WriteAllBytes(temp, ProtocolJsonContext.Encode(info));
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The state dir is a record for the next boot; a full disk must not break the service itself.
            Console.Error.WriteLine($"pyro-agent: could not record service {info.Name}: {ex.Message}");
        }
    }

    /// <summary>Recent stderr then stdout, for an error message.</summary>
    internal string EvidenceTail()
    {
        var stderr = Stderr.Tail(20, 4096).Text.TrimEnd();
        var stdout = Stdout.Tail(20, 4096).Text.TrimEnd();
        return $"stderr tail: {(stderr.Length == 0 ? "(empty)" : "\n" + stderr)}\nstdout tail: {(stdout.Length == 0 ? "(empty)" : "\n" + stdout)}";
    }
}

/// <summary>The values of <see cref="ServiceInfo.State"/>.</summary>
internal static class ServiceStates
{
    internal const string Starting = "starting";
    internal const string Running = "running";
    internal const string Exited = "exited";
    internal const string Stopped = "stopped";
    internal const string Failed = "failed";

    internal static bool IsKnown(string state) => state is Starting or Running or Exited or Stopped or Failed;
}
