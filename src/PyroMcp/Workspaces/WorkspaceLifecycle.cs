using System.Globalization;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Protocol;
using PyroMcp.Runtime;
using PyroMcp.Vmm;

namespace PyroMcp.Workspaces;

/// <summary>
/// Every change of a workspace's state: create, start, stop, reset, delete, TTL reaping, and the
/// repair of what a crashed process left behind. The rules, in one place:
/// <list type="number">
/// <item>A state changes only along <see cref="WorkspaceTransition"/>, as a compare-and-set.</item>
/// <item>Whoever moves a workspace into a state in progress (creating, starting, stopping,
/// resetting, deleting) holds its operation lock until it moves it out; operations take turns.</item>
/// <item>A state in progress whose operation lock is free was abandoned (kill -9): the next call
/// that reads the workspace repairs it (<see cref="ReconcileAsync"/>), from what is real: whether a
/// supervisor holds its lock, whether its VM booted, which files exist.</item>
/// <item>Create is all or nothing: a create that fails or is abandoned leaves no row, no
/// directory, no process and no lock file.</item>
/// </list>
/// Fault points (<see cref="FaultPoint"/>) mark where the fault-matrix tests kill the process.
/// </summary>
internal sealed class WorkspaceLifecycle(PyroOptions options, EnvironmentStore environments, WorkspaceStore store, SupervisorLauncher supervisors)
{
    internal const string DiskFile = "disk.qcow2";

    // ---- create ------------------------------------------------------------------------------

    internal async Task<WorkspaceRecord> CreateAsync(WorkspaceCreateRequest request, CancellationToken cancellationToken)
    {
        var spec = EnvironmentCatalog.Resolve(request.Environment, options);
        var progress = request.Progress;
        void Report(string phase, params KeyValuePair<string, string>[] fields)
            => progress?.Report(new PyroProgress("workspace-create", phase, [.. fields]));

        foreach (var tool in new[] { HostTools.Qemu, HostTools.QemuImg, HostTools.Setpriv })
        {
            tool.Require();
        }

        if (request.NetworkPolicy.HasEgress())
        {
            HostTools.Passt.Require();
        }

        // Files named by secrets are read now: a missing one fails before anything is pulled or booted.
        var secrets = Secrets.SecretStore.Resolve(request.Secrets);
        Report("prepare", new KeyValuePair<string, string>("environment", spec.Name));
        var environment = await environments.PullAsync(spec, Pyro.CachedPullQuiet(progress), cancellationToken).ConfigureAwait(false);
        var bundle = await RuntimeBundle.EnsureAsync(options, progress, cancellationToken).ConfigureAwait(false);
        if (!request.Cold)
        {
            await PrepareTemplateAsync(environment, bundle, request.VcpuCount, request.MemMib, request.NetworkPolicy, progress, cancellationToken).ConfigureAwait(false);
        }

        return await CreateCoreAsync(request, spec, environment, secrets, request.Cold ? WorkspaceSupervisor.StartCold : WorkspaceSupervisor.StartWarm, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Builds the template a warm create restores from before the workspace exists, so the build
    /// shows its progress here and does not eat into the TTL. A failure is only reported: the
    /// supervisor then boots cold and records why.
    /// </summary>
    private async Task PrepareTemplateAsync(EnvironmentInfo environment, RuntimeBundle bundle, int vcpus, int memMib, NetworkPolicy network, IProgress<PyroProgress>? progress, CancellationToken cancellationToken)
    {
        try
        {
            var accelerator = KvmProbe.Detect().Choose(options.Accelerator).Chosen;
            await new Templates.TemplateStore(options).EnsureAsync(new Templates.TemplateInputs(environment, bundle, new VmSpec(vcpus, memMib, accelerator), network.HasEgress()), progress, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is PyroException or IOException or UnauthorizedAccessException)
        {
            progress?.Report(new PyroProgress("template", "failed", [new("reason", ex.Message.Split('\n', 2)[0])]));
        }
    }

    /// <summary>Everything of a create after its inputs are ready; <paramref name="start"/> says how the supervisor starts the VM.</summary>
    private async Task<WorkspaceRecord> CreateCoreAsync(WorkspaceCreateRequest request, EnvironmentSpec spec, EnvironmentInfo environment, IReadOnlyDictionary<string, string> secrets, string start,
        CancellationToken cancellationToken)
    {
        var progress = request.Progress;
        void Report(string phase, params KeyValuePair<string, string>[] fields)
            => progress?.Report(new PyroProgress("workspace-create", phase, [.. fields]));
        var id = QemuVm.NewId();
        // The lock comes first: a row in 'creating' whose lock is free is an abandoned create.
        using var operation = await WorkspaceLocks.OperationAsync(store.StateDir, id, cancellationToken).ConfigureAwait(false);
        FaultPoint.Hit("create.after-lock");
        var now = DateTimeOffset.UtcNow;
        var record = new WorkspaceRecord
        {
            Id = id,
            Name = request.Name,
            Environment = spec.Name,
            VcpuCount = request.VcpuCount,
            MemMib = request.MemMib,
            TtlSeconds = request.TtlSeconds,
            CreatedAt = now,
            ExpiresAt = now.AddSeconds(request.TtlSeconds),
            State = WorkspaceState.Creating,
            StateReason = "preparing its disk",
            Labels = request.Labels ?? new Dictionary<string, string>(),
            SeedSource = request.SeedPath is null ? null : Path.GetFullPath(request.SeedPath),
            NetworkPolicy = request.NetworkPolicy,
        };
        try
        {
            await InsertWithinLimitAsync(record, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            WorkspaceLocks.Remove(store.StateDir, id);
            throw;
        }

        FaultPoint.Hit("create.after-insert");
        var directory = store.WorkspaceDir(id);
        try
        {
            Directory.CreateDirectory(Path.Combine(directory, WorkspaceManager.SnapshotsDir));
            File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            Secrets.SecretStore.Write(directory, secrets);
            await QemuVm.CreateOverlayAsync(environment.RootfsImage, Path.Combine(directory, DiskFile), cancellationToken).ConfigureAwait(false);
            FaultPoint.Hit("create.after-disk");
            Step(id, WorkspaceState.Creating, "booting its VM");
            Report("start", new KeyValuePair<string, string>("workspace_id", id));
            await supervisors.LaunchAsync(id, cancellationToken, start).ConfigureAwait(false);
            FaultPoint.Hit("create.after-boot");
            var connection = await WorkspaceManager.ConnectToSupervisorAsync(store, id, cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                if (request.SeedPath is not null)
                {
                    Step(id, WorkspaceState.Creating, "seeding /workspace");
                    Report("seed", new KeyValuePair<string, string>("workspace_id", id), new KeyValuePair<string, string>("source", request.SeedPath));
                    var seeded = await WorkspaceManager.PushTreeAsync(connection, request.SeedPath, WorkspaceManager.GuestRoot, clean: false, cancellationToken).ConfigureAwait(false);
                    Report("seeded", new KeyValuePair<string, string>("entries", seeded.Entries.ToString(CultureInfo.InvariantCulture)),
                        new KeyValuePair<string, string>("bytes", seeded.Bytes.ToString(CultureInfo.InvariantCulture)),
                        new KeyValuePair<string, string>("skipped", seeded.Skipped.Count.ToString(CultureInfo.InvariantCulture)));
                    FaultPoint.Hit("create.after-seed");
                }

                Step(id, WorkspaceState.Creating, "saving the baseline");
                Report("baseline", new KeyValuePair<string, string>("workspace_id", id));
                await WorkspaceManager.SaveTreeAsync(connection, Path.Combine(directory, WorkspaceManager.BaselineFile), WorkspaceManager.MaxTreeBytes, cancellationToken).ConfigureAwait(false);
            }

            FaultPoint.Hit("create.after-baseline");
            if (DateTimeOffset.UtcNow >= record.ExpiresAt)
            {
                throw new WorkspaceStateException("workspace_expired_during_start",
                    $"workspace {id} reached the end of its TTL ({request.TtlSeconds} s) before it was ready, and was removed; create it again with a longer TTL");
            }

            if (!store.TryMove(id, WorkspaceTransition.CreateCompleted, WorkspaceState.Creating, null))
            {
                throw new WorkspaceStateException("workspace_create_interrupted", $"workspace {id} left the creating state while it was being created; it was removed");
            }

            Report("ready", new KeyValuePair<string, string>("workspace_id", id));
            return store.Get(id);
        }
        catch
        {
            // All or nothing: a create that fails leaves nothing behind. The first failure is the one to report.
            await RemoveAsync(id, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    // ---- fork --------------------------------------------------------------------------------

    internal const int MaxForkCount = 16;

    /// <summary>
    /// New workspaces that start from a running workspace's memory and disk as they are now: the
    /// source is paused for the save (its processes, shells and services go on afterwards), and
    /// each copy is restored from the image, made its own VM by the resume (host name, entropy,
    /// machine id, lease) and given a baseline of its tree as restored. All or nothing: if one copy
    /// cannot be made, the copies made so far are deleted and the source runs on unchanged.
    /// </summary>
    internal async Task<IReadOnlyList<WorkspaceRecord>> ForkAsync(string sourceId, WorkspaceForkRequest request, CancellationToken cancellationToken)
    {
        ValidateFork(request);
        var progress = request.Progress;
        void Report(string phase, params (string Key, string Value)[] fields)
            => progress?.Report(new PyroProgress("workspace-fork", phase, [new("source", sourceId), .. fields.Select(f => new KeyValuePair<string, string>(f.Key, f.Value))]));

        using var operation = await WorkspaceLocks.OperationAsync(store.StateDir, sourceId, cancellationToken).ConfigureAwait(false);
        var source = await RepairHeldAsync(sourceId, cancellationToken).ConfigureAwait(false) ?? throw NotFound(sourceId);
        if (source.State != WorkspaceState.Running)
        {
            throw new WorkspaceStateException("workspace_not_running", $"workspace {sourceId} is {source.State.ToName()}: a fork copies a running guest's memory; start it first");
        }

        return await ForkHeldAsync(source, request, Report, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Checks a fork request before anything is looked up or locked.</summary>
    internal static void ValidateFork(WorkspaceForkRequest request)
    {
        if (request.Count is < 1 or > MaxForkCount)
        {
            throw new PyroInputException("invalid_fork_count", $"a fork makes 1 to {MaxForkCount} workspaces (got {request.Count})", nameof(WorkspaceForkRequest.Count));
        }

        if (request.NamePrefix is { } prefix && !WorkspaceManager.IsValidName(prefix + "-" + request.Count))
        {
            throw new PyroInputException("invalid_name_prefix", $"the name prefix must make valid workspace names (letters, digits, '.', '_', '-'; at most {63 - 1 - request.Count.ToString(CultureInfo.InvariantCulture).Length} characters); got '{GuestAgentClient.Sanitize(prefix, 80)}'",
                nameof(WorkspaceForkRequest.NamePrefix));
        }

        if (request.TtlSeconds is < 10 or > 604800)
        {
            throw new PyroInputException("invalid_ttl", $"the TTL must be between 10 and 604800 seconds (got {request.TtlSeconds})", nameof(WorkspaceForkRequest.TtlSeconds));
        }
    }

    private async Task<IReadOnlyList<WorkspaceRecord>> ForkHeldAsync(WorkspaceRecord source, WorkspaceForkRequest request, Action<string, (string Key, string Value)[]> report, CancellationToken cancellationToken)
    {
        var sourceId = source.Id;
        void Report(string phase, params (string Key, string Value)[] fields) => report(phase, fields);
        EnsureRoom(store.List().Count + request.Count - 1);
        var spec = EnvironmentCatalog.Resolve(source.Environment, options);
        var environment = environments.Inspect(spec);
        var sourceDir = store.WorkspaceDir(sourceId);
        var image = Path.Combine(sourceDir, WorkspaceSupervisor.ForkImageDir);
        Report("save");
        var connection = await WorkspaceManager.ConnectToSupervisorAsync(store, sourceId, cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            await connection.Agent.CallAsync(new AgentRequest { Op = WorkspaceSupervisor.SaveOp }, null, null, cancellationToken).ConfigureAwait(false);
        }

        FaultPoint.Hit("fork.after-save");

        var made = new List<WorkspaceRecord>();
        try
        {
            var secrets = Secrets.SecretStore.Read(sourceDir);
            for (var i = 1; i <= request.Count; i++)
            {
                Report("copy", ("copy", i.ToString(CultureInfo.InvariantCulture)), ("of", request.Count.ToString(CultureInfo.InvariantCulture)));
                var copy = new WorkspaceCreateRequest
                {
                    Environment = source.Environment,
                    Name = request.NamePrefix is null ? null : $"{request.NamePrefix}-{i.ToString(CultureInfo.InvariantCulture)}",
                    Labels = new Dictionary<string, string>(source.Labels) { [ForkOfLabel] = sourceId },
                    TtlSeconds = request.TtlSeconds ?? source.TtlSeconds,
                    VcpuCount = source.VcpuCount,
                    MemMib = source.MemMib,
                    NetworkPolicy = source.NetworkPolicy,
                };
                made.Add(await CreateCoreAsync(copy, spec, environment, secrets, WorkspaceSupervisor.StartImagePrefix + image, cancellationToken).ConfigureAwait(false));
                FaultPoint.Hit("fork.after-copy");
            }

            Report("ready", ("workspaces", string.Join(',', made.Select(m => m.Id))));
            return made;
        }
        catch
        {
            foreach (var copy in made)
            {
                await DeleteAsync(copy.Id, CancellationToken.None).ConfigureAwait(false);
            }

            throw;
        }
        finally
        {
            if (Directory.Exists(image))
            {
                Directory.Delete(image, recursive: true);
            }
        }
    }

    /// <summary>The label a fork carries: the id of the workspace it was copied from.</summary>
    internal const string ForkOfLabel = "pyro.fork-of";

    /// <summary>
    /// Inserts a new workspace only while fewer than <see cref="PyroOptions.MaxWorkspaces"/> exist.
    /// Count and insert happen under one lock file in the state directory, so concurrent creates
    /// from several processes cannot all pass a limit that only one of them fits under.
    /// </summary>
    internal async Task InsertWithinLimitAsync(WorkspaceRecord record, CancellationToken cancellationToken)
    {
        using var guard = await FileLock.AcquireAsync(Path.Combine(store.StateDir, "create.lock"), cancellationToken: cancellationToken).ConfigureAwait(false);
        EnsureRoom(store.List().Count);
        store.Insert(record);
    }

    internal void EnsureRoom(int existing)
    {
        if (existing >= options.MaxWorkspaces)
        {
            throw new PyroInputException("workspace_limit_reached",
                $"{existing} workspaces exist and this host allows {options.MaxWorkspaces}: delete some you no longer need (or reap expired ones) and create again. " +
                "The limit is PyroOptions.MaxWorkspaces, or PYRO_MAX_WORKSPACES.");
        }
    }

    // ---- start and stop ----------------------------------------------------------------------

    internal async Task<WorkspaceRecord> StartAsync(string id, CancellationToken cancellationToken)
    {
        using var operation = await WorkspaceLocks.OperationAsync(store.StateDir, id, cancellationToken).ConfigureAwait(false);
        var record = await RepairHeldAsync(id, cancellationToken).ConfigureAwait(false) ?? throw NotFound(id);
        if (record.State == WorkspaceState.Running)
        {
            return record;
        }

        if (record.State is not (WorkspaceState.Stopped or WorkspaceState.Crashed))
        {
            throw new WorkspaceStateException("workspace_not_startable",
                $"workspace {id} is {record.State.ToName()}: only a stopped or crashed workspace can be started{(record.StateReason is null ? "" : $" ({record.StateReason})")}");
        }

        if (!File.Exists(Path.Combine(store.WorkspaceDir(id), DiskFile)))
        {
            throw new WorkspaceStateException("workspace_disk_missing", $"workspace {id} has no disk left; delete it");
        }

        Move(id, WorkspaceTransition.StartBegins, record.State, "booting its VM");
        FaultPoint.Hit("start.after-begin");
        try
        {
            await supervisors.LaunchAsync(id, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            store.TryMove(id, WorkspaceTransition.StartFailed, WorkspaceState.Starting,
                ex is OperationCanceledException ? "its start was cancelled; the disk is as it was" : $"the VM did not start: {Redacted(id, ex.Message)}");
            throw;
        }

        FaultPoint.Hit("start.after-boot");
        Move(id, WorkspaceTransition.StartCompleted, WorkspaceState.Starting, null);
        return store.Get(id);
    }

    /// <summary>Flushes the guest's file systems, powers it off cleanly (killed only after <see cref="SupervisorLauncher.StopGrace"/>), keeps the disk.</summary>
    internal async Task<WorkspaceRecord> StopAsync(string id, CancellationToken cancellationToken)
    {
        using var operation = await WorkspaceLocks.OperationAsync(store.StateDir, id, cancellationToken).ConfigureAwait(false);
        var record = await RepairHeldAsync(id, cancellationToken).ConfigureAwait(false) ?? throw NotFound(id);
        if (record.State is not (WorkspaceState.Running or WorkspaceState.Crashed))
        {
            // Stopped already, or failed (nothing runs): there is nothing to stop.
            return record;
        }

        Move(id, WorkspaceTransition.StopBegins, record.State, "flushing its file systems and powering off");
        FaultPoint.Hit("stop.after-begin");
        await supervisors.StopAsync(id, CancellationToken.None).ConfigureAwait(false);
        FaultPoint.Hit("stop.after-poweroff");
        Move(id, WorkspaceTransition.StopCompleted, WorkspaceState.Stopping, "stopped on request");
        return store.Get(id);
    }

    // ---- reset -------------------------------------------------------------------------------

    /// <summary>
    /// A fresh sandbox: a new disk from the environment, then /workspace from the baseline or a
    /// snapshot. Same id, same baseline; history cleared; reset count up by one. A reset that
    /// fails (or is abandoned) leaves the workspace failed, with the step it failed at.
    /// </summary>
    internal async Task<(WorkspaceRecord Record, WorkspaceResetInfo Restored)> ResetAsync(string id, string? snapshot, CancellationToken cancellationToken)
    {
        using var operation = await WorkspaceLocks.OperationAsync(store.StateDir, id, cancellationToken).ConfigureAwait(false);
        var record = await RepairHeldAsync(id, cancellationToken).ConfigureAwait(false) ?? throw NotFound(id);
        var directory = store.WorkspaceDir(id);
        var source = snapshot is null or "baseline"
            ? Path.Combine(directory, WorkspaceManager.BaselineFile)
            : store.Snapshots(id).Any(s => s.Name == snapshot)
                ? Path.Combine(directory, WorkspaceManager.SnapshotsDir, snapshot + ".tar")
                : throw new PyroInputException("snapshot_not_found", $"workspace {id} has no snapshot '{snapshot}'; list its snapshots to see which exist");
        if (!File.Exists(source))
        {
            throw new WorkspaceStateException("reset_source_missing", $"{Path.GetFileName(source)} is missing; the workspace cannot be reset from it. Delete the workspace and create it again.");
        }

        var step = "stopping its VM";
        Move(id, WorkspaceTransition.ResetBegins, record.State, step);
        FaultPoint.Hit("reset.after-begin");
        try
        {
            // The disk is thrown away, so there is nothing to flush.
            await supervisors.KillAsync(id, cancellationToken).ConfigureAwait(false);
            step = "making a fresh disk";
            Step(id, WorkspaceState.Resetting, step);
            var spec = EnvironmentCatalog.Resolve(record.Environment, options);
            var environment = await environments.PullAsync(spec, null, cancellationToken).ConfigureAwait(false);
            File.Delete(Path.Combine(directory, DiskFile));
            await QemuVm.CreateOverlayAsync(environment.RootfsImage, Path.Combine(directory, DiskFile), cancellationToken).ConfigureAwait(false);
            FaultPoint.Hit("reset.after-disk");
            step = "booting its VM";
            Step(id, WorkspaceState.Resetting, step);
            // A fresh disk is what a template holds too: a reset restores warm when it can.
            await supervisors.LaunchAsync(id, cancellationToken, WorkspaceSupervisor.StartWarm).ConfigureAwait(false);
            FaultPoint.Hit("reset.after-boot");
            step = $"restoring /workspace from {snapshot ?? "baseline"}";
            Step(id, WorkspaceState.Resetting, step);
            var connection = await WorkspaceManager.ConnectToSupervisorAsync(store, id, cancellationToken).ConfigureAwait(false);
            TarSummary summary;
            await using (connection.ConfigureAwait(false))
            {
                // A baseline of an empty tree written by an older agent is a file of no bytes: an empty archive.
                Stream tar = new FileInfo(source).Length == 0 ? new MemoryStream(new byte[1024]) : File.OpenRead(source);
                await using var tarScope = tar.ConfigureAwait(false);
                var restored = await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.TarIn, Tar = new TarRequest { Path = WorkspaceManager.GuestRoot, Clean = true } }, null, tar, cancellationToken).ConfigureAwait(false);
                summary = restored.Tar ?? new TarSummary();
                await connection.Agent.CallAsync(new AgentRequest { Op = AgentOps.Sync }, null, null, cancellationToken).ConfigureAwait(false);
            }

            FaultPoint.Hit("reset.after-restore");
            store.RecordReset(id);
            Move(id, WorkspaceTransition.ResetCompleted, WorkspaceState.Resetting, null);
            var named = snapshot is not (null or "baseline");
            return (store.Get(id), new WorkspaceResetInfo { Snapshot = named ? snapshot! : "baseline", Kind = named ? "named" : "baseline", Entries = summary.Entries, Bytes = summary.Bytes });
        }
        catch (Exception ex)
        {
            var reason = $"reset failed while {step}: {Redacted(id, ex.Message)}. The workspace is not usable as it is: reset it again, or delete it";
            await supervisors.KillAsync(id, CancellationToken.None).ConfigureAwait(false);
            store.TryMove(id, WorkspaceTransition.ResetFailed, WorkspaceState.Resetting, reason);
            if (ex is OperationCanceledException)
            {
                throw;
            }

            throw new WorkspaceStateException("reset_failed", reason);
        }
    }

    /// <summary>A reason that quotes an error (which may quote the guest) is stored with the workspace's secrets redacted.</summary>
    private string Redacted(string id, string text) => Secrets.SecretStore.Redactor(store.WorkspaceDir(id)).Redact(text);

    // ---- delete and TTL ----------------------------------------------------------------------

    /// <summary>Deletes a workspace: its supervisor and QEMU, its directory, its row and its locks. False if it was already gone.</summary>
    internal async Task<bool> DeleteAsync(string id, CancellationToken cancellationToken)
    {
        using var operation = await WorkspaceLocks.OperationAsync(store.StateDir, id, cancellationToken).ConfigureAwait(false);
        if (store.Find(id) is not { } record)
        {
            WorkspaceLocks.Remove(store.StateDir, id);
            return false;
        }

        if (record.State != WorkspaceState.Deleting)
        {
            Move(id, WorkspaceTransition.DeleteBegins, record.State, "deleting");
        }

        FaultPoint.Hit("delete.after-begin");
        await RemoveAsync(id, cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <summary>Kills the supervisor, removes the directory, then the row, then the lock files: each step safe to repeat after a crash.</summary>
    private async Task RemoveAsync(string id, CancellationToken cancellationToken)
    {
        await supervisors.KillAsync(id, cancellationToken).ConfigureAwait(false);
        FaultPoint.Hit("delete.after-kill");
        var directory = store.WorkspaceDir(id);
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }

        FaultPoint.Hit("delete.after-files");
        store.Delete(id);
        WorkspaceLocks.Remove(store.StateDir, id);
    }

    // ---- repair ------------------------------------------------------------------------------

    /// <summary>
    /// Brings a workspace's row in line with reality when a crashed process left it wrong; a no-op
    /// while an operation holds the workspace (it owns the state). Returns the row as it is now, or
    /// null when the repair finished a create or delete that had been abandoned.
    /// </summary>
    internal async Task<WorkspaceRecord?> ReconcileAsync(WorkspaceRecord record, CancellationToken cancellationToken)
    {
        if (!NeedsRepair(record))
        {
            return record;
        }

        using var operation = WorkspaceLocks.TryOperation(store.StateDir, record.Id);
        if (operation is null)
        {
            return record;
        }

        return await RepairHeldAsync(record.Id, cancellationToken).ConfigureAwait(false);
    }

    private bool NeedsRepair(WorkspaceRecord record)
    {
        if (WorkspaceTransition.IsInProgress(record.State))
        {
            return true;
        }

        var alive = supervisors.IsAlive(record.Id);
        if (record.State == WorkspaceState.Running ? !alive : alive)
        {
            return true;
        }

        var directory = store.WorkspaceDir(record.Id);
        if (!Directory.Exists(directory))
        {
            return false;
        }

        if (Directory.EnumerateFiles(directory, "*.partial", SearchOption.AllDirectories).Any())
        {
            return true;
        }

        // A fork killed after its source's save leaves the image (a memory's worth of disk).
        if (Directory.Exists(Path.Combine(directory, WorkspaceSupervisor.ForkImageDir)))
        {
            return true;
        }

        // A snapshot killed between its file and its row leaves a file the database does not know.
        var snapshots = Path.Combine(directory, WorkspaceManager.SnapshotsDir);
        return Directory.Exists(snapshots) && Directory.GetFiles(snapshots).Length != store.Snapshots(record.Id).Count;
    }

    /// <summary>The repair itself; the caller holds the operation lock.</summary>
    private async Task<WorkspaceRecord?> RepairHeldAsync(string id, CancellationToken cancellationToken)
    {
        if (store.Find(id) is not { } record)
        {
            return null;
        }

        var alive = supervisors.IsAlive(id);
        switch (record.State)
        {
            case WorkspaceState.Creating or WorkspaceState.Deleting:
                // An abandoned create never became a workspace; an abandoned delete is finished.
                await RemoveAsync(id, cancellationToken).ConfigureAwait(false);
                return null;
            case WorkspaceState.Starting when alive && record.Booted:
                store.TryMove(id, WorkspaceTransition.StartCompleted, WorkspaceState.Starting, null);
                break;
            case WorkspaceState.Starting:
                await supervisors.KillAsync(id, cancellationToken).ConfigureAwait(false);
                store.TryMove(id, WorkspaceTransition.StartFailed, WorkspaceState.Starting, "its start was interrupted; the disk is as it was: start it again");
                break;
            case WorkspaceState.Stopping:
                await supervisors.StopAsync(id, cancellationToken).ConfigureAwait(false);
                store.TryMove(id, WorkspaceTransition.StopCompleted, WorkspaceState.Stopping, "stopped (the stop was interrupted and finished later)");
                break;
            case WorkspaceState.Resetting:
                await supervisors.KillAsync(id, cancellationToken).ConfigureAwait(false);
                store.TryMove(id, WorkspaceTransition.ResetFailed, WorkspaceState.Resetting,
                    $"its reset was interrupted while {record.StateReason ?? "resetting"}; the workspace is not usable as it is: reset it again, or delete it");
                break;
            case WorkspaceState.Running when !alive:
                store.TryMove(id, WorkspaceTransition.Crash, WorkspaceState.Running, CrashedReason(record));
                break;
            case WorkspaceState.Stopped or WorkspaceState.Crashed or WorkspaceState.Failed when alive:
                // A supervisor with no business here (its launcher died before it registered).
                await supervisors.KillAsync(id, cancellationToken).ConfigureAwait(false);
                break;
        }

        SweepFiles(id);
        return store.Find(id);
    }

    internal static string CrashedReason(WorkspaceRecord record)
        => $"its supervisor{(record.SupervisorPid is { } pid ? $" (pid {pid})" : "")} is gone, and QEMU with it; the disk is kept: start it to boot it again, or delete it";

    /// <summary>Half-written files of an interrupted snapshot or baseline, and snapshot files the database does not know.</summary>
    private void SweepFiles(string id)
    {
        var directory = store.WorkspaceDir(id);
        if (!Directory.Exists(directory))
        {
            return;
        }

        foreach (var partial in Directory.EnumerateFiles(directory, "*.partial", SearchOption.AllDirectories))
        {
            File.Delete(partial);
        }

        // Only a fork holding this workspace's operation lock uses its image; the caller holds it now.
        var forkImage = Path.Combine(directory, WorkspaceSupervisor.ForkImageDir);
        if (Directory.Exists(forkImage))
        {
            Directory.Delete(forkImage, recursive: true);
        }

        var known = store.Snapshots(id).Select(s => s.Name + ".tar").ToHashSet(StringComparer.Ordinal);
        var snapshots = Path.Combine(directory, WorkspaceManager.SnapshotsDir);
        if (Directory.Exists(snapshots))
        {
            foreach (var file in Directory.EnumerateFiles(snapshots).Where(f => !known.Contains(Path.GetFileName(f))))
            {
                File.Delete(file);
            }
        }
    }

    /// <summary>
    /// Lock files and directories of workspaces that have no row (a process killed between
    /// writing them and the row, or between removing the row and them), when nobody holds them.
    /// </summary>
    internal void SweepOrphans(IReadOnlyCollection<string> knownIds)
    {
        var locks = WorkspaceLocks.Directory(store.StateDir);
        if (Directory.Exists(locks))
        {
            foreach (var id in Directory.EnumerateFiles(locks).Select(Path.GetFileNameWithoutExtension).Distinct().OfType<string>().Where(i => !knownIds.Contains(i)))
            {
                using var operation = WorkspaceLocks.TryOperation(store.StateDir, id);
                if (operation is not null && store.Find(id) is null && !supervisors.IsAlive(id))
                {
                    WorkspaceLocks.Remove(store.StateDir, id);
                }
            }
        }

        var workspaces = Path.Combine(store.StateDir, "workspaces");
        foreach (var directory in Directory.EnumerateDirectories(workspaces).Where(d => !knownIds.Contains(Path.GetFileName(d))))
        {
            var id = Path.GetFileName(directory);
            using var operation = WorkspaceLocks.TryOperation(store.StateDir, id);
            if (operation is not null && store.Find(id) is null && !supervisors.IsAlive(id))
            {
                Directory.Delete(directory, recursive: true);
                WorkspaceLocks.Remove(store.StateDir, id);
            }
        }
    }

    // ---- helpers -----------------------------------------------------------------------------

    private void Move(string id, WorkspaceTransition transition, WorkspaceState from, string? reason)
    {
        if (!store.TryMove(id, transition, from, reason))
        {
            var now = store.Find(id);
            throw new WorkspaceStateException("workspace_state_changed",
                $"workspace {id} changed state under this call ({transition.Name} expected it {from.ToName()}, it is {(now is null ? "gone" : now.State.ToName())}); look at its status and try again");
        }
    }

    private void Step(string id, WorkspaceState state, string step)
    {
        if (!store.SetStep(id, state, step))
        {
            throw new WorkspaceStateException("workspace_state_changed", $"workspace {id} is no longer {state.ToName()}; look at its status and try again");
        }
    }

    private static PyroInputException NotFound(string id)
        => new("workspace_not_found", $"no workspace '{id}': list the workspaces to see which exist");
}
