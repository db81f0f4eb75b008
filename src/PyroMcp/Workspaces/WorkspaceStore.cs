using System.Globalization;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using PyroMcp.Host;

namespace PyroMcp.Workspaces;

/// <summary>What the database holds for a workspace.</summary>
internal sealed record WorkspaceRecord
{
    public required string Id { get; init; }
    public string? Name { get; init; }
    public required string Environment { get; init; }
    public required int VcpuCount { get; init; }
    public required int MemMib { get; init; }
    public required int TtlSeconds { get; init; }
    public required DateTimeOffset CreatedAt { get; init; }
    public required DateTimeOffset ExpiresAt { get; init; }
    public required WorkspaceState State { get; init; }
    /// <summary>Why it is in its state; for a state in progress, the step it is at.</summary>
    public string? StateReason { get; init; }
    public int? SupervisorPid { get; init; }
    /// <summary>Start time of the supervisor process (field 22 of /proc/PID/stat, clock ticks since boot): a reused pid has another.</summary>
    public long? SupervisorStartTicks { get; init; }
    public int? SupervisorUid { get; init; }
    public int ResetCount { get; init; }
    public string? Accelerator { get; init; }
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();
    public string? SeedSource { get; init; }
    /// <summary>The registered supervisor has its VM up and listens on its socket.</summary>
    public bool Booted { get; init; }
    /// <summary>Why the registered supervisor could not boot its VM, when it could not.</summary>
    public string? SupervisorError { get; init; }
    /// <summary>The network the guest gets; kept across stop, start and reset.</summary>
    public NetworkPolicy NetworkPolicy { get; init; }
    /// <summary>What the running guest was given at boot; null while not running or without a network.</summary>
    public GuestNetwork? GuestNetwork { get; init; }
    /// <summary>Why a guest that should have a network has none (no lease), while it runs.</summary>
    public string? NetworkError { get; init; }
    /// <summary>Ports the supervisor publishes now; empty whenever the workspace is not running.</summary>
    public IReadOnlyList<PublishedPort> PublishedPorts { get; init; } = [];
    /// <summary>How the running VM came up: warm (template), fork (another workspace's memory) or cold (booted).</summary>
    public string? StartMode { get; init; }
    /// <summary>Why the VM was booted when a warm start was wanted.</summary>
    public string? ColdStartReason { get; init; }
}

/// <summary>
/// Workspace state in SQLite (WAL, synchronous=FULL): every change is on disk before the call
/// that made it returns. Several processes (CLI calls, MCP server, supervisors) share it.
/// </summary>
internal sealed class WorkspaceStore
{
    private readonly string _connectionString;

    internal WorkspaceStore(string stateDir)
    {
        PrivateDirectory.Ensure(stateDir);
        PrivateDirectory.Ensure(Path.Combine(stateDir, "workspaces"));
        StateDir = stateDir;
        var database = Path.Combine(stateDir, "pyro.db");
        MakePrivate(database, create: true);
        _connectionString = new SqliteConnectionStringBuilder { DataSource = database, Pooling = true, DefaultTimeout = 30 }.ToString();
        using var connection = Open();
        Execute(connection, """
            PRAGMA journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS workspaces (
                id TEXT PRIMARY KEY, name TEXT UNIQUE, environment TEXT NOT NULL, vcpu_count INTEGER NOT NULL,
                mem_mib INTEGER NOT NULL, ttl_seconds INTEGER NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
                state TEXT NOT NULL, state_reason TEXT, supervisor_pid INTEGER, reset_count INTEGER NOT NULL DEFAULT 0,
                accelerator TEXT, labels TEXT NOT NULL DEFAULT '{}', seed_source TEXT);
            CREATE TABLE IF NOT EXISTS commands (
                workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE, sequence INTEGER NOT NULL,
                command TEXT NOT NULL, cwd TEXT NOT NULL, exit_code INTEGER NOT NULL, duration_ms INTEGER NOT NULL,
                started_at TEXT NOT NULL, PRIMARY KEY (workspace_id, sequence));
            CREATE TABLE IF NOT EXISTS snapshots (
                workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE, name TEXT NOT NULL,
                created_at TEXT NOT NULL, entries INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (workspace_id, name));
            """);
        MakePrivate(database, create: false);
        Migrate(connection);
    }

    /// <summary>Columns added after the first release, added in place to a database that lacks them.</summary>
    private static void Migrate(SqliteConnection connection)
    {
        var columns = new HashSet<string>(StringComparer.Ordinal);
        using (var info = Command(connection, "PRAGMA table_info(workspaces)"))
        using (var reader = info.ExecuteReader())
        {
            while (reader.Read())
            {
                columns.Add(reader.GetString(1));
            }
        }

        foreach (var (column, type) in new[]
                 {
                     ("supervisor_start_ticks", "INTEGER"), ("supervisor_uid", "INTEGER"), ("booted", "INTEGER NOT NULL DEFAULT 0"), ("supervisor_error", "TEXT"),
                     ("network_policy", "TEXT NOT NULL DEFAULT 'off'"), ("guest_network", "TEXT"), ("network_error", "TEXT"),
                     ("published_ports", "TEXT NOT NULL DEFAULT '[]'"), ("start_mode", "TEXT"), ("cold_start_reason", "TEXT"),
                 })
        {
            if (columns.Contains(column))
            {
                continue;
            }

            try
            {
                Execute(connection, $"ALTER TABLE workspaces ADD COLUMN {column} {type}");
            }
            catch (SqliteException ex) when (ex.Message.Contains("duplicate column", StringComparison.OrdinalIgnoreCase))
            {
                // Another process migrated the same database a moment ago.
            }
        }
    }

    internal string StateDir { get; }

    /// <summary>The database and its -wal and -shm files: 0600 whatever the umask, and never opened through a link.</summary>
    internal static void MakePrivate(string database, bool create)
    {
        // SQLite creates -wal and -shm with the mode of the database file, so a database made
        // 0600 here keeps them 0600 too; older files are tightened on the way.
        const UnixFileMode OwnerReadWrite = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        if (create && UnixStat.LStat(database) is null)
        {
            try
            {
                using var _ = new FileStream(database, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = OwnerReadWrite });
            }
            catch (IOException) when (UnixStat.LStat(database) is not null)
            {
                // Another process made it first.
            }
        }

        foreach (var file in new[] { database, database + "-wal", database + "-shm" })
        {
            if (UnixStat.LStat(file) is not { } stat)
            {
                continue;
            }

            if (!stat.IsRegularFile || stat.Uid != UnixStat.EffectiveUserId)
            {
                throw new HostRequirementException("unsafe_directory",
                    $"refusing to open {file}: it is not a regular file owned by you. Remove it, or point PYRO_STATE_DIR at a directory of your own.");
            }

            if ((stat.Mode & 0x1FF) != (int)OwnerReadWrite)
            {
                File.SetUnixFileMode(file, OwnerReadWrite);
            }
        }
    }

    internal string WorkspaceDir(string id) => Path.Combine(StateDir, "workspaces", id);

    private SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        Execute(connection, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=30000;");
        return connection;
    }

    private static void Execute(SqliteConnection connection, string sql, params (string Name, object? Value)[] args)
    {
        using var command = Command(connection, sql, args);
        command.ExecuteNonQuery();
    }

    private static SqliteCommand Command(SqliteConnection connection, string sql, params (string Name, object? Value)[] args)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in args)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        return command;
    }

    /// <summary>A new workspace; it always begins as <see cref="WorkspaceState.Creating"/>, and only transitions move it on.</summary>
    internal void Insert(WorkspaceRecord record)
    {
        if (record.State != WorkspaceState.Creating)
        {
            throw new ArgumentException($"a new workspace begins as creating, not {record.State.ToName()}", nameof(record));
        }

        using var connection = Open();
        try
        {
            Execute(connection, """
                INSERT INTO workspaces (id, name, environment, vcpu_count, mem_mib, ttl_seconds, created_at, expires_at, state,
                    state_reason, supervisor_pid, reset_count, accelerator, labels, seed_source, network_policy)
                VALUES ($id, $name, $env, $vcpu, $mem, $ttl, $created, $expires, $state, $reason, $pid, 0, $accel, $labels, $seed, $network)
                """,
                ("$id", record.Id), ("$name", record.Name), ("$env", record.Environment), ("$vcpu", record.VcpuCount), ("$mem", record.MemMib),
                ("$ttl", record.TtlSeconds), ("$created", Time(record.CreatedAt)), ("$expires", Time(record.ExpiresAt)), ("$state", record.State.ToName()),
                ("$reason", record.StateReason), ("$pid", record.SupervisorPid), ("$accel", record.Accelerator),
                ("$labels", JsonSerializer.Serialize(record.Labels, InternalJsonContext.Default.IReadOnlyDictionaryStringString)), ("$seed", record.SeedSource), ("$network", record.NetworkPolicy.ToName()));
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode == 19)
        {
            throw new PyroInputException("name_taken", $"a workspace named '{record.Name}' already exists: pick another name or delete that one", nameof(WorkspaceCreateRequest.Name));
        }
    }

    /// <summary>Finds a workspace by id or unique name.</summary>
    internal WorkspaceRecord? Find(string idOrName)
    {
        using var connection = Open();
        using var command = Command(connection, "SELECT * FROM workspaces WHERE id = $key OR name = $key", ("$key", idOrName));
        using var reader = command.ExecuteReader();
        return reader.Read() ? Read(reader) : null;
    }

    internal WorkspaceRecord Get(string idOrName)
        => Find(idOrName) ?? throw new PyroInputException("workspace_not_found", $"no workspace '{idOrName}': list the workspaces to see which exist");

    internal IReadOnlyList<WorkspaceRecord> List()
    {
        using var connection = Open();
        using var command = Command(connection, "SELECT * FROM workspaces ORDER BY created_at");
        using var reader = command.ExecuteReader();
        var list = new List<WorkspaceRecord>();
        while (reader.Read())
        {
            list.Add(Read(reader));
        }

        return list;
    }

    /// <summary>
    /// Moves the workspace along one transition of the table, if and only if it is still in
    /// <paramref name="from"/>: a compare-and-set, so of two callers that read the same state only
    /// one moves it. Returns false when the state had changed (or the workspace is gone).
    /// </summary>
    internal bool TryMove(string id, WorkspaceTransition transition, WorkspaceState from, string? reason)
    {
        if (!transition.From.Contains(from))
        {
            // The table is the only source of transitions; asking one to start elsewhere is a bug in the caller.
            throw new InvalidOperationException($"transition '{transition.Name}' does not start from {from.ToName()}");
        }

        using var connection = Open();
        // What the running guest has (its lease, its published ports) ends with it: whatever moves
        // a workspace into any state but running forgets them in the same write.
        using var command = Command(connection, """
            UPDATE workspaces SET state = $to, state_reason = $reason,
                guest_network = CASE WHEN $to = 'running' THEN guest_network ELSE NULL END,
                network_error = CASE WHEN $to = 'running' THEN network_error ELSE NULL END,
                published_ports = CASE WHEN $to = 'running' THEN published_ports ELSE '[]' END
            WHERE id = $id AND state = $from
            """, ("$id", id), ("$to", transition.To.ToName()), ("$from", from.ToName()), ("$reason", reason));
        return command.ExecuteNonQuery() == 1;
    }

    /// <summary>Records the step an operation in progress is at, while the workspace is still in <paramref name="state"/>.</summary>
    internal bool SetStep(string id, WorkspaceState state, string step)
    {
        using var connection = Open();
        using var command = Command(connection, "UPDATE workspaces SET state_reason = $reason WHERE id = $id AND state = $state",
            ("$id", id), ("$state", state.ToName()), ("$reason", step));
        return command.ExecuteNonQuery() == 1;
    }

    /// <summary>
    /// A supervisor (holding the workspace's supervisor lock) records itself: its pid, start time and
    /// owner. Only while the workspace is in a state that launches one; false otherwise, and then the
    /// supervisor must go away.
    /// </summary>
    internal bool RegisterSupervisor(string id, int pid)
    {
        var identity = ProcessIdentity.Of(pid);
        using var connection = Open();
        using var command = Command(connection, """
            UPDATE workspaces SET supervisor_pid = $pid, supervisor_start_ticks = $ticks, supervisor_uid = $uid, booted = 0, supervisor_error = NULL,
                guest_network = NULL, network_error = NULL, published_ports = '[]'
            WHERE id = $id AND state IN ('creating', 'starting', 'resetting')
            """, ("$id", id), ("$pid", pid), ("$ticks", identity?.StartTicks), ("$uid", identity?.Uid));
        return command.ExecuteNonQuery() == 1;
    }

    /// <summary>Forgets the last supervisor (dead by now) before another is launched, so nothing of it is mistaken for the new one.</summary>
    internal void ClearSupervisor(string id)
    {
        using var connection = Open();
        Execute(connection, """
            UPDATE workspaces SET supervisor_pid = NULL, supervisor_start_ticks = NULL, supervisor_uid = NULL, booted = 0, supervisor_error = NULL,
                guest_network = NULL, network_error = NULL, published_ports = '[]'
            WHERE id = $id
            """, ("$id", id));
    }

    /// <summary>The registered supervisor's VM is up and its socket listens; with the network its guest was given.</summary>
    internal bool MarkBooted(string id, int pid, GuestNetwork? network = null, string? networkError = null, string? startMode = null, string? coldStartReason = null)
    {
        using var connection = Open();
        using var command = Command(connection, "UPDATE workspaces SET booted = 1, guest_network = $net, network_error = $neterr, start_mode = $mode, cold_start_reason = $cold WHERE id = $id AND supervisor_pid = $pid",
            ("$id", id), ("$pid", pid), ("$net", network is null ? null : JsonSerializer.Serialize(network, InternalJsonContext.Default.GuestNetwork)), ("$neterr", networkError),
            ("$mode", startMode), ("$cold", coldStartReason));
        return command.ExecuteNonQuery() == 1;
    }

    /// <summary>The ports the registered supervisor publishes now (it alone holds their listeners).</summary>
    internal bool SetPublishedPorts(string id, int pid, IReadOnlyList<PublishedPort> ports)
    {
        using var connection = Open();
        using var command = Command(connection, "UPDATE workspaces SET published_ports = $ports WHERE id = $id AND supervisor_pid = $pid AND state = 'running'",
            ("$id", id), ("$pid", pid), ("$ports", JsonSerializer.Serialize(ports, InternalJsonContext.Default.IReadOnlyListPublishedPort)));
        return command.ExecuteNonQuery() == 1;
    }

    /// <summary>The registered supervisor could not boot its VM; whoever launched it reads why.</summary>
    internal void SetSupervisorError(string id, int pid, string error)
    {
        using var connection = Open();
        Execute(connection, "UPDATE workspaces SET supervisor_error = $error WHERE id = $id AND supervisor_pid = $pid", ("$id", id), ("$pid", pid), ("$error", error));
    }

    internal void SetAccelerator(string id, string accelerator)
    {
        using var connection = Open();
        Execute(connection, "UPDATE workspaces SET accelerator = $a WHERE id = $id", ("$id", id), ("$a", accelerator));
    }

    /// <summary>After a reset: one more reset, and a fresh command history.</summary>
    internal void RecordReset(string id)
    {
        using var connection = Open();
        using var transaction = connection.BeginTransaction();
        Execute(connection, "UPDATE workspaces SET reset_count = reset_count + 1 WHERE id = $id", ("$id", id));
        Execute(connection, "DELETE FROM commands WHERE workspace_id = $id", ("$id", id));
        transaction.Commit();
    }

    internal void Delete(string id)
    {
        using var connection = Open();
        Execute(connection, "DELETE FROM workspaces WHERE id = $id", ("$id", id));
    }

    /// <summary>Appends a command to the history under the next sequence number, atomically (several clients may exec at once).</summary>
    internal int AppendCommand(string id, string commandText, string cwd, int exitCode, long durationMs, DateTimeOffset startedAt)
    {
        using var connection = Open();
        using var transaction = connection.BeginTransaction();
        using var next = Command(connection, "SELECT COALESCE(MAX(sequence), 0) + 1 FROM commands WHERE workspace_id = $id", ("$id", id));
        var sequence = Convert.ToInt32(next.ExecuteScalar(), CultureInfo.InvariantCulture);
        Execute(connection, """
            INSERT INTO commands (workspace_id, sequence, command, cwd, exit_code, duration_ms, started_at)
            VALUES ($id, $seq, $cmd, $cwd, $exit, $duration, $started)
            """, ("$id", id), ("$seq", sequence), ("$cmd", commandText), ("$cwd", cwd), ("$exit", exitCode), ("$duration", durationMs), ("$started", Time(startedAt)));
        transaction.Commit();
        return sequence;
    }

    /// <summary>The latest <paramref name="limit"/> commands, oldest first: the cut happens in the query, so a long history is never loaded whole.</summary>
    internal IReadOnlyList<CommandRecord> Commands(string id, int limit = int.MaxValue)
    {
        using var connection = Open();
        using var command = Command(connection, """
            SELECT * FROM (SELECT sequence, command, cwd, exit_code, duration_ms, started_at FROM commands
                WHERE workspace_id = $id ORDER BY sequence DESC LIMIT $limit) ORDER BY sequence
            """, ("$id", id), ("$limit", limit));
        using var reader = command.ExecuteReader();
        var list = new List<CommandRecord>();
        while (reader.Read())
        {
            list.Add(new CommandRecord(reader.GetInt32(0), reader.GetString(1), reader.GetString(2), reader.GetInt32(3), reader.GetInt64(4), ParseTime(reader.GetString(5))));
        }

        return list;
    }

    internal int CommandCount(string id)
    {
        using var connection = Open();
        using var command = Command(connection, "SELECT COUNT(*) FROM commands WHERE workspace_id = $id", ("$id", id));
        return Convert.ToInt32(command.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    internal void AddSnapshot(string id, SnapshotInfo snapshot)
    {
        using var connection = Open();
        try
        {
            Execute(connection, "INSERT INTO snapshots (workspace_id, name, created_at, entries, bytes) VALUES ($id, $name, $created, $entries, $bytes)",
                ("$id", id), ("$name", snapshot.Name), ("$created", Time(snapshot.CreatedAt)), ("$entries", snapshot.Entries), ("$bytes", snapshot.Bytes));
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode == 19)
        {
            throw new PyroInputException("snapshot_exists", $"snapshot '{snapshot.Name}' already exists: delete it first or pick another name");
        }
    }

    internal IReadOnlyList<SnapshotInfo> Snapshots(string id)
    {
        using var connection = Open();
        using var command = Command(connection, "SELECT name, created_at, entries, bytes FROM snapshots WHERE workspace_id = $id ORDER BY created_at", ("$id", id));
        using var reader = command.ExecuteReader();
        var list = new List<SnapshotInfo>();
        while (reader.Read())
        {
            list.Add(new SnapshotInfo(reader.GetString(0), ParseTime(reader.GetString(1)), reader.GetInt64(2), reader.GetInt64(3)));
        }

        return list;
    }

    internal bool DeleteSnapshot(string id, string name)
    {
        using var connection = Open();
        using var command = Command(connection, "DELETE FROM snapshots WHERE workspace_id = $id AND name = $name", ("$id", id), ("$name", name));
        return command.ExecuteNonQuery() > 0;
    }

    private static WorkspaceRecord Read(SqliteDataReader reader)
    {
        string? Str(string column) => reader.IsDBNull(reader.GetOrdinal(column)) ? null : reader.GetString(reader.GetOrdinal(column));
        int? Int(string column) => reader.IsDBNull(reader.GetOrdinal(column)) ? null : reader.GetInt32(reader.GetOrdinal(column));
        long? Long(string column) => reader.IsDBNull(reader.GetOrdinal(column)) ? null : reader.GetInt64(reader.GetOrdinal(column));
        return new WorkspaceRecord
        {
            Id = Str("id")!,
            Name = Str("name"),
            Environment = Str("environment")!,
            VcpuCount = Int("vcpu_count")!.Value,
            MemMib = Int("mem_mib")!.Value,
            TtlSeconds = Int("ttl_seconds")!.Value,
            CreatedAt = ParseTime(Str("created_at")!),
            ExpiresAt = ParseTime(Str("expires_at")!),
            State = WorkspaceStateNames.Parse(Str("state")!),
            StateReason = Str("state_reason"),
            SupervisorPid = Int("supervisor_pid"),
            SupervisorStartTicks = Long("supervisor_start_ticks"),
            SupervisorUid = Int("supervisor_uid"),
            ResetCount = Int("reset_count") ?? 0,
            Accelerator = Str("accelerator"),
            Labels = JsonSerializer.Deserialize(Str("labels") ?? "{}", InternalJsonContext.Default.IReadOnlyDictionaryStringString) ?? new Dictionary<string, string>(),
            SeedSource = Str("seed_source"),
            Booted = (Int("booted") ?? 0) != 0,
            SupervisorError = Str("supervisor_error"),
            NetworkPolicy = NetworkPolicyNames.Parse(Str("network_policy") ?? "off"),
            GuestNetwork = Str("guest_network") is { } net ? JsonSerializer.Deserialize(net, InternalJsonContext.Default.GuestNetwork) : null,
            NetworkError = Str("network_error"),
            PublishedPorts = JsonSerializer.Deserialize(Str("published_ports") ?? "[]", InternalJsonContext.Default.IReadOnlyListPublishedPort) ?? [],
            StartMode = Str("start_mode"),
            ColdStartReason = Str("cold_start_reason"),
        };
    }

    private static string Time(DateTimeOffset time) => time.UtcDateTime.ToString("O", CultureInfo.InvariantCulture);

    private static DateTimeOffset ParseTime(string text) => DateTimeOffset.Parse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);
}

/// <summary>
/// What tells one process from a later one with the same pid: its start time in clock ticks since
/// boot (field 22 of /proc/PID/stat) and its owner's uid. Pids are reused; this pair is not.
/// </summary>
internal sealed record ProcessIdentity(long StartTicks, int Uid)
{
    /// <summary>The identity of a live, non-zombie process, or null when there is none (or it cannot be read).</summary>
    internal static ProcessIdentity? Of(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (fields.Length < 20 || fields[0] is "Z" or "X" || !long.TryParse(fields[19], NumberStyles.None, CultureInfo.InvariantCulture, out var ticks))
            {
                return null;
            }

            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("Uid:", StringComparison.Ordinal))
                {
                    // Real, effective, saved, fs: the owner is the real uid.
                    var uid = line.Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[1];
                    return int.TryParse(uid, NumberStyles.None, CultureInfo.InvariantCulture, out var value) ? new ProcessIdentity(ticks, value) : null;
                }
            }

            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentOutOfRangeException)
        {
            return null;
        }
    }
}
