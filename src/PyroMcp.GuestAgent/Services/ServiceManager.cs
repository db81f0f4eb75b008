using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent.Services;

/// <summary>
/// The services of this guest: started by service.start, supervised until they exit or are
/// stopped, whatever happens to the stream that started them. Metadata and logs live in
/// <see cref="AgentOptions.ServiceStateDir"/>, outside the workspace.
/// </summary>
internal sealed partial class ServiceManager
{
    internal const int MaxServices = 32;
    internal const int DefaultReadyTimeoutMs = 30_000;
    internal const int MaxReadyTimeoutMs = 600_000;
    internal const int DefaultReadyIntervalMs = 500;
    internal const int DefaultStopGraceMs = 5_000;
    internal const int MaxStopGraceMs = 60_000;
    internal const int DefaultTailLines = 200;
    internal const int MaxTailLines = 5_000;

    /// <summary>
    /// Bytes of each stream a logs reply carries at most: both streams and the JSON around them
    /// must fit one frame (<see cref="FrameCodec.MaxPayloadLength"/>).
    /// </summary>
    internal const int MaxTailBytes = 96 * 1024;

    /// <summary>Characters of each command in a service.list answer.</summary>
    internal const int MaxListedCommandChars = 1024;

    /// <summary>A metadata file larger than this was not written by the agent.</summary>
    private const int MaxMetadataBytes = 64 * 1024;

    private static readonly TimeSpan ShutdownGrace = TimeSpan.FromSeconds(2);

    private readonly AgentOptions _options;
    private readonly WorkspacePaths _workspace;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, ServiceEntry> _services = new(StringComparer.Ordinal);

    private readonly Secrets.GuestSecrets? _secrets;

    internal ServiceManager(AgentOptions options, WorkspacePaths workspace, Secrets.GuestSecrets? secrets = null)
    {
        _options = options;
        _workspace = workspace;
        _secrets = secrets;
        StateDir = Path.GetFullPath(options.ServiceStateDir);
        Load();
    }

    internal string StateDir { get; }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();

    internal static bool IsValidName(string? name) => name is not null && NamePattern().IsMatch(name) && name != "." && name != "..";

    internal async Task<ServiceInfo> StartAsync(ServiceRequest request, CancellationToken cancellationToken)
    {
        var name = CheckName(request.Name);
        if (string.IsNullOrWhiteSpace(request.Command))
        {
            throw new AgentFailure("bad_request", "service.start needs a command");
        }

        if (Encoding.UTF8.GetByteCount(request.Command) > ServiceRequest.MaxCommandBytes || request.Command.Contains('\0'))
        {
            throw new AgentFailure("bad_request", $"the command must be at most {ServiceRequest.MaxCommandBytes} bytes without NUL; put a long script in a file and run that");
        }

        var timeoutMs = Range(request.ReadyTimeoutMs, DefaultReadyTimeoutMs, 1, MaxReadyTimeoutMs, "ready_timeout_ms");
        var intervalMs = Range(request.ReadyIntervalMs, DefaultReadyIntervalMs, 50, 60_000, "ready_interval_ms");
        var graceMs = Range(request.StopGraceMs, DefaultStopGraceMs, 1, MaxStopGraceMs, "stop_grace_ms");
        var cwd = ResolveCwd(_workspace, request.Cwd);
        if (request.Readiness is { } readiness)
        {
            Readiness.Validate(readiness);
        }

        var env = ExecRunner.BuildEnvironment(request.Env, request.SecretEnv, _secrets);

        // An imported image's user runs its services too; an unknown one fails before anything is registered.
        var user = ImageDefaults.ResolveUser(null);
        ImageDefaults.AddUserEnvironment(env, user, request.Env);
        var entry = Register(name, request.Command, cwd, request.Readiness);
        try
        {
            Spawn(entry, env, cwd, user);
        }
        catch (Exception ex) when (ex is not AgentFailure)
        {
            entry.Update(i => i with { State = ServiceStates.Failed, Reason = "could not start: " + ex.Message, EndedAtMs = Now() });
            entry.Exited.TrySetResult(-1);
            throw new AgentFailure("spawn_failed", $"could not start service {name}: {ex.Message}");
        }

        if (request.Readiness is null)
        {
            return entry.Update(i => i.State == ServiceStates.Starting ? i with { State = ServiceStates.Running } : i);
        }

        return await WaitReadyAsync(entry, request.Readiness, env, TimeSpan.FromMilliseconds(timeoutMs), TimeSpan.FromMilliseconds(intervalMs), graceMs, cancellationToken).ConfigureAwait(false);
    }

    internal IReadOnlyList<ServiceInfo> List()
    {
        lock (_gate)
        {
            // Commands are clipped so 32 long ones still fit one frame; service.status has each whole.
            return [.. _services.Values.Select(e => e.Info).OrderBy(i => i.StartedAtMs).ThenBy(i => i.Name, StringComparer.Ordinal)
                .Select(i => i.Command.Length > MaxListedCommandChars ? i with { Command = Clip(i.Command, MaxListedCommandChars) } : i)];
        }
    }

    internal ServiceInfo Status(ServiceRequest request) => Find(request.Name).Info;

    internal ServiceLogTail Logs(ServiceRequest request)
    {
        var lines = Range(request.TailLines, DefaultTailLines, 1, MaxTailLines, "tail_lines");
        var entry = Find(request.Name);
        var (stdout, outCut) = entry.Stdout.Tail(lines, MaxTailBytes);
        var (stderr, errCut) = entry.Stderr.Tail(lines, MaxTailBytes);
        return new ServiceLogTail { Service = entry.Info, Stdout = stdout, Stderr = stderr, Truncated = outCut || errCut };
    }

    internal async Task<ServiceInfo> StopAsync(ServiceRequest request)
    {
        var graceMs = Range(request.StopGraceMs, DefaultStopGraceMs, 1, MaxStopGraceMs, "stop_grace_ms");
        var entry = Find(request.Name);
        await StopAsync(entry, TimeSpan.FromMilliseconds(graceMs), ServiceStates.Stopped, "stopped on request").ConfigureAwait(false);
        return entry.Info;
    }

    /// <summary>Stops every running service before the guest powers off.</summary>
    internal async Task StopAllAsync(string reason)
    {
        ServiceEntry[] running;
        lock (_gate)
        {
            running = [.. _services.Values.Where(e => e.IsRunning)];
        }

        await Task.WhenAll(running.Select(e => StopAsync(e, ShutdownGrace, ServiceStates.Stopped, reason))).ConfigureAwait(false);
    }

    private ServiceEntry Find(string? name)
    {
        var checkedName = CheckName(name);
        lock (_gate)
        {
            return _services.TryGetValue(checkedName, out var entry)
                ? entry
                : throw new AgentFailure("service_not_found", $"no service named {checkedName}; service.list shows the known ones");
        }
    }

    private static string CheckName(string? name)
        => IsValidName(name)
            ? name!
            : throw new AgentFailure("service_name_invalid", $"service name '{Clip(name ?? "", 80)}' is invalid: use 1 to {ServiceRequest.MaxNameLength} letters, digits, '.', '_' or '-', starting with a letter or digit");

    private static int Range(int value, int fallback, int min, int max, string field)
    {
        if (value == 0)
        {
            return fallback;
        }

        return value >= min && value <= max
            ? value
            : throw new AgentFailure("bad_request", string.Create(CultureInfo.InvariantCulture, $"{field} must be between {min} and {max} (0 for the default, {fallback}), not {value}"));
    }

    /// <summary>The working directory of a service or shell: the workspace root by default, relative paths under it.</summary>
    internal static string ResolveCwd(WorkspacePaths workspace, string? cwd)
    {
        if (cwd is not null && cwd.Contains('\0'))
        {
            throw new AgentFailure("cwd_not_found", "the working directory contains a NUL byte");
        }

        var full = string.IsNullOrEmpty(cwd) ? workspace.Root : Path.GetFullPath(cwd, workspace.Root);
        return Directory.Exists(full)
            ? full
            : throw new AgentFailure("cwd_not_found", $"working directory {full} does not exist in the guest; create it first");
    }

    /// <summary>Claims the name (one caller wins), making room under the limit, and lays out a fresh state dir.</summary>
    private ServiceEntry Register(string name, string command, string cwd, ReadinessProbe? readiness)
    {
        lock (_gate)
        {
            if (_services.TryGetValue(name, out var existing))
            {
                if (existing.IsRunning)
                {
                    throw new AgentFailure("service_exists", $"service {name} is already {existing.Info.State} (pid {existing.Info.Pid}); stop it first or pick another name");
                }

                Forget(existing, deleteFiles: false);
            }

            while (_services.Count >= MaxServices)
            {
                var oldest = _services.Values.Where(e => !e.IsRunning).MinBy(e => e.Info.StartedAtMs)
                    ?? throw new AgentFailure("service_limit", $"{MaxServices} services are running, the most a guest keeps; stop one first");
                Forget(oldest, deleteFiles: true);
            }

            var directory = Path.Combine(StateDir, name);
            var entry = new ServiceEntry(directory, new ServiceInfo
            {
                Name = name,
                State = ServiceStates.Starting,
                Command = command,
                Cwd = cwd,
                Readiness = readiness,
                StartedAtMs = Now(),
            });
            try
            {
                PrepareDirectory(directory);
                entry.Stdout.Reset();
                entry.Stderr.Reset();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new AgentFailure("spawn_failed", $"could not prepare {directory} for the service's logs: {ex.Message}");
            }

            entry.Update(i => i);
            _services[name] = entry;
            return entry;
        }
    }

    /// <summary>Makes <paramref name="directory"/> a real, empty directory of ours, whatever stood there (a symlink, a file).</summary>
    private void PrepareDirectory(string directory)
    {
        Directory.CreateDirectory(StateDir);
        var info = new FileInfo(directory);
        if (info.LinkTarget is not null || File.Exists(directory))
        {
            File.Delete(directory);
        }
        else if (Directory.Exists(directory))
        {
            // Recursive delete removes symlinks inside without following them.
            Directory.Delete(directory, recursive: true);
        }

        Directory.CreateDirectory(directory);
    }

    private void Forget(ServiceEntry entry, bool deleteFiles)
    {
        _services.Remove(entry.Name);
        if (deleteFiles)
        {
            try
            {
                if (new FileInfo(entry.Directory).LinkTarget is null && Directory.Exists(entry.Directory))
                {
                    Directory.Delete(entry.Directory, recursive: true);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
            }
        }
    }

    private void Spawn(ServiceEntry entry, Dictionary<string, string> env, string cwd, ResolvedUser? user)
    {
        var start = new ProcessStartInfo(_options.SetsidPath)
        {
            WorkingDirectory = cwd,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // As ExecRunner: busybox setsid makes the shell a session and group leader without a
        // fork, so its pid is the group (and session) to signal.
        start.ArgumentList.Add("setsid");
        foreach (var arg in ImageDefaults.Wrap(["/bin/sh", "-c", entry.Info.Command], user))
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment.Clear();
        foreach (var (key, value) in env)
        {
            start.Environment[key] = value;
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("Process.Start returned nothing");
        process.StandardInput.Close();
        entry.Process = process;
        entry.Update(i => i with { Pid = process.Id });
        // Logs live on the guest's disk: secret values are redacted before they are written.
        var redactor = _secrets?.Redactor ?? Protocol.Secrets.SecretRedactor.None;
        var pumps = Task.WhenAll(
            PumpAsync(process.StandardOutput.BaseStream, entry.Stdout, redactor),
            PumpAsync(process.StandardError.BaseStream, entry.Stderr, redactor));
        _ = Task.Run(() => ReapAsync(entry, process, pumps), CancellationToken.None);
    }

    private static async Task PumpAsync(Stream source, ServiceLog log, Protocol.Secrets.SecretRedactor redactor)
    {
        var buffer = new byte[32 * 1024];
        var redacting = redactor.IsEmpty ? null : redactor.NewByteStream();
        try
        {
            while (true)
            {
                var read = await source.ReadAsync(buffer).ConfigureAwait(false);
                if (read == 0)
                {
                    if (redacting is not null)
                    {
                        log.Append(redacting.Flush());
                    }

                    return;
                }

                if (redacting is null)
                {
                    log.Append(buffer.AsSpan(0, read));
                }
                else
                {
                    log.Append(redacting.Push(buffer.AsSpan(0, read)));
                }
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
            // Keep reading is pointless once the pipe or the disk fails; the service still runs.
        }
    }

    private static async Task ReapAsync(ServiceEntry entry, Process process, Task pumps)
    {
        await process.WaitForExitAsync().ConfigureAwait(false);
        var code = process.ExitCode;

        // A service is its process group: what it left behind goes with it, so the name (and
        // its ports) can be started again.
        ProcessTree.SignalSession(process.Id, ProcessTree.SIGKILL);
        await Task.WhenAny(pumps, Task.Delay(TimeSpan.FromSeconds(2))).ConfigureAwait(false);
        entry.Update(i =>
        {
            var (state, reason) = entry.EndAs ?? (ServiceStates.Exited, "exited with code " + code.ToString(CultureInfo.InvariantCulture));
            return i with { State = state, Reason = reason, ExitCode = code, EndedAtMs = Now() };
        });
        entry.Stdout.Dispose();
        entry.Stderr.Dispose();
        process.Dispose();
        entry.Exited.TrySetResult(code);
    }

    private async Task<ServiceInfo> WaitReadyAsync(
        ServiceEntry entry, ReadinessProbe probe, Dictionary<string, string> env, TimeSpan timeout, TimeSpan interval, int graceMs, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var last = "not probed yet";
        try
        {
            while (true)
            {
                if (entry.Exited.Task.IsCompleted)
                {
                    throw Exited(entry, last);
                }

                var remaining = timeout - clock.Elapsed;
                var (passed, text) = await Readiness.ProbeAsync(probe, entry.Info.Cwd, env, _options.SetsidPath, remaining > TimeSpan.Zero ? remaining : TimeSpan.FromMilliseconds(1), cancellationToken).ConfigureAwait(false);
                last = Clip(text, 300);
                entry.Update(i => i with { LastProbe = last });
                if (passed)
                {
                    var ready = entry.Update(i => i.State == ServiceStates.Starting ? i with { State = ServiceStates.Running } : i);
                    return ready.State == ServiceStates.Running ? ready : throw Exited(entry, last);
                }

                remaining = timeout - clock.Elapsed;
                if (remaining <= TimeSpan.Zero)
                {
                    break;
                }

                var pause = Task.Delay(interval < remaining ? interval : remaining, cancellationToken);
                await Task.WhenAny(pause, entry.Exited.Task).ConfigureAwait(false);
                cancellationToken.ThrowIfCancellationRequested();
            }
        }
        catch (OperationCanceledException)
        {
            await StopAsync(entry, TimeSpan.FromMilliseconds(graceMs), ServiceStates.Failed, "the start was cancelled before the service was ready").ConfigureAwait(false);
            throw new AgentFailure("cancelled", $"the start of service {entry.Name} was cancelled; the service was stopped");
        }

        if (entry.Exited.Task.IsCompleted)
        {
            throw Exited(entry, last);
        }

        var seconds = timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture);
        await StopAsync(entry, TimeSpan.FromMilliseconds(graceMs), ServiceStates.Failed, $"not ready after {seconds} s; last probe: {last}").ConfigureAwait(false);
        throw new AgentFailure("service_not_ready",
            $"service {entry.Name} was not ready after {seconds} s (readiness {probe.Type} {Clip(probe.Target, 200)}); last probe: {last}; it was stopped. {entry.EvidenceTail()}");
    }

    private static AgentFailure Exited(ServiceEntry entry, string lastProbe)
    {
        var info = entry.Info;
        var how = info.State == ServiceStates.Exited ? "exited with code " + info.ExitCode?.ToString(CultureInfo.InvariantCulture) : $"was {info.State} ({info.Reason})";
        return new AgentFailure("service_exited", $"service {entry.Name} {how} before it was ready; last probe: {lastProbe}; {entry.EvidenceTail()}");
    }

    /// <summary>TERM to the group and session, KILL after the grace; the reaper records the end.</summary>
    private static async Task StopAsync(ServiceEntry entry, TimeSpan grace, string state, string reason)
    {
        if (!entry.IsRunning || entry.Process is null)
        {
            return;
        }

        entry.EndAs ??= (state, reason);
        var pid = entry.Info.Pid;
        ProcessTree.SignalSession(pid, ProcessTree.SIGTERM);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < grace && !(entry.Exited.Task.IsCompleted && !ProcessTree.AnyAlive(pid)))
        {
            await Task.WhenAny(entry.Exited.Task, Task.Delay(50)).ConfigureAwait(false);
        }

        ProcessTree.SignalSession(pid, ProcessTree.SIGKILL);
        await Task.WhenAny(entry.Exited.Task, Task.Delay(TimeSpan.FromSeconds(10))).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads what the previous boot recorded. Every service it ran died with it. The files are
    /// the guest's to tamper with: anything odd (not ours, too big, not JSON, a link) is skipped.
    /// </summary>
    private void Load()
    {
        IEnumerable<string> directories;
        try
        {
            if (!Directory.Exists(StateDir))
            {
                return;
            }

            directories = Directory.EnumerateDirectories(StateDir).ToList();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return;
        }

        var loaded = new List<ServiceEntry>();
        foreach (var directory in directories)
        {
            try
            {
                if (LoadOne(directory) is { } entry)
                {
                    loaded.Add(entry);
                }
            }
            catch (Exception ex)
            {
                Console.Error.WriteLine($"pyro-agent: skipped service metadata in {directory}: {ex.GetType().Name}: {ex.Message}");
            }
        }

        foreach (var entry in loaded.OrderByDescending(e => e.Info.StartedAtMs).Take(MaxServices))
        {
            _services[entry.Name] = entry;
        }
    }

    private ServiceEntry? LoadOne(string directory)
    {
        var name = Path.GetFileName(directory);
        if (!IsValidName(name) || new DirectoryInfo(directory).LinkTarget is not null)
        {
            return null;
        }

        var bytes = ServiceFiles.ReadSmallRegularFile(Path.Combine(directory, ServiceEntry.MetadataFile), MaxMetadataBytes);
        if (bytes is null)
        {
            return null;
        }

        var info = JsonSerializer.Deserialize(bytes, ProtocolJsonContext.Default.ServiceInfo);
        if (info is null || info.Name != name || !ServiceStates.IsKnown(info.State)
            || Encoding.UTF8.GetByteCount(info.Command) > ServiceRequest.MaxCommandBytes)
        {
            return null;
        }

        var entry = new ServiceEntry(directory, info);
        if (entry.IsRunning)
        {
            entry.Update(i => i with { State = ServiceStates.Stopped, Reason = "the workspace was stopped or restarted", EndedAtMs = i.EndedAtMs ?? Now() });
        }

        entry.Exited.TrySetResult(info.ExitCode ?? -1);
        return entry;
    }

    private static long Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    internal static string Clip(string text, int max) => text.Length <= max ? text : text[..max] + "...";
}
