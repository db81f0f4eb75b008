namespace PyroMcp;

/// <summary>Where pyro keeps its files and how it starts VMs. Every value has an environment-variable override.</summary>
public sealed record PyroOptions
{
    /// <summary>Environment cache. Default <c>~/.cache/pyro/environments</c>, or <c>PYRO_ENVIRONMENT_CACHE_DIR</c>.</summary>
    public string EnvironmentCacheDir { get; init; } = FromEnv("PYRO_ENVIRONMENT_CACHE_DIR") ?? Path.Combine(CacheHome, "pyro", "environments");

    /// <summary>Runtime bundle cache (kernel, initramfs). Default <c>~/.cache/pyro/runtime</c>, or <c>PYRO_RUNTIME_CACHE_DIR</c>.</summary>
    public string RuntimeCacheDir { get; init; } = FromEnv("PYRO_RUNTIME_CACHE_DIR") ?? Path.Combine(CacheHome, "pyro", "runtime");

    /// <summary>
    /// Warm-start templates: per environment and VM shape, a guest saved right after its agent came
    /// up (memory image and disk). Default <c>templates</c> in <see cref="EnvironmentCacheDir"/> (they are
    /// made from its environments and pruned with them), or <c>PYRO_TEMPLATE_CACHE_DIR</c>.
    /// </summary>
    public string TemplateCacheDir
    {
        get => _templateCacheDir ?? Path.Combine(EnvironmentCacheDir, "templates");
        init => _templateCacheDir = value;
    }

    private readonly string? _templateCacheDir = FromEnv("PYRO_TEMPLATE_CACHE_DIR");

    /// <summary>
    /// A registry namespace the catalog's environments are pulled from, <c>HOST[:PORT]/NAMESPACE</c>:
    /// <c>debian:12</c> version 1.0.0 becomes <c>HOST[:PORT]/NAMESPACE/debian-12:1.0.0</c>. Default
    /// none (environments are built locally), or <c>PYRO_ENVIRONMENT_REGISTRY</c>.
    /// </summary>
    public string? EnvironmentRegistry { get; init; } = FromEnv("PYRO_ENVIRONMENT_REGISTRY");

    /// <summary>
    /// A JSON catalog file naming each environment's OCI source, <c>{"debian:12": {"oci_source": "REF"}}</c>;
    /// it wins over <see cref="EnvironmentRegistry"/> for the environments it names. Default none, or
    /// <c>PYRO_ENVIRONMENT_CATALOG</c>.
    /// </summary>
    public string? EnvironmentCatalogFile { get; init; } = FromEnv("PYRO_ENVIRONMENT_CATALOG");

    /// <summary>Registry client settings (timeouts, chunk size, credentials); null reads the <c>PYRO_OCI_*</c> and <c>OCI_REGISTRY_*</c> variables when needed.</summary>
    internal Oci.OciClientOptions? Oci { get; init; }

    /// <summary>Workspace state: the SQLite database and each workspace's disk, baseline and snapshots. Default <c>~/.local/state/pyro</c>, or <c>PYRO_STATE_DIR</c>.</summary>
    public string StateDir { get; init; } = FromEnv("PYRO_STATE_DIR")
        ?? Path.Combine(FromEnv("XDG_STATE_HOME") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "state"), "pyro");

    /// <summary>
    /// The workspace supervisor program: a native executable, or a <c>.dll</c> that is run with
    /// <c>dotnet</c>. Default: the native <c>supervisor/pyro-supervisor</c> beside this assembly
    /// when it is there, else <c>pyro-supervisor.dll</c>; or <c>PYRO_SUPERVISOR_PATH</c>.
    /// </summary>
    public string SupervisorPath { get; init; } = FromEnv("PYRO_SUPERVISOR_PATH") ?? DefaultSupervisorPath(AppContext.BaseDirectory);

    /// <summary>
    /// Per-VM scratch (sockets, disk overlays). Short on purpose: unix socket paths are limited
    /// to 107 bytes. Default <c>$XDG_RUNTIME_DIR/pyro</c> or <c>/tmp/pyro-UID</c> (numeric uid), or <c>PYRO_RUN_DIR</c>.
    /// pyro refuses it unless this user alone owns and can write it.
    /// </summary>
    public string RunDir { get; init; } = FromEnv("PYRO_RUN_DIR")
        ?? (FromEnv("XDG_RUNTIME_DIR") is { } xdg ? Path.Combine(xdg, "pyro") : $"/tmp/pyro-{Host.UnixStat.EffectiveUserId}");

    /// <summary>The guest agent binary. Default: <c>guest/pyro-agent</c> beside this assembly, or <c>PYRO_AGENT_PATH</c>.</summary>
    public string AgentPath { get; init; } = FromEnv("PYRO_AGENT_PATH") ?? Path.Combine(AppContext.BaseDirectory, "guest", "pyro-agent");

    /// <summary>Accelerator to use. Default <see cref="Accelerator.Auto"/>, or <c>PYRO_ACCEL</c> (auto, kvm, tcg).</summary>
    public Accelerator Accelerator { get; init; } = ParseAccelerator(FromEnv("PYRO_ACCEL"));

    /// <summary>How long a guest may take from QEMU start to a ready agent. Default 30 s under KVM, 120 s under TCG, or <c>PYRO_BOOT_TIMEOUT_SECONDS</c>.</summary>
    public TimeSpan? BootTimeout { get; init; } = int.TryParse(FromEnv("PYRO_BOOT_TIMEOUT_SECONDS"), out var s) && s > 0 ? TimeSpan.FromSeconds(s) : null;

    /// <summary>Bytes of stdout and of stderr kept per command before the rest is cut (default 1 MiB each).</summary>
    public long MaxOutputBytes { get; init; } = 1024 * 1024;

    /// <summary>
    /// How many workspaces may exist on this host at once (running, stopped or crashed: each holds
    /// a disk, and any may be started). Default: one per GiB of host memory, at least 1; or
    /// <c>PYRO_MAX_WORKSPACES</c>. Create refuses past it with <c>workspace_limit_reached</c>.
    /// </summary>
    public int MaxWorkspaces { get; init; } = PositiveFromEnv("PYRO_MAX_WORKSPACES") is { } w ? (int)Math.Min(w, int.MaxValue) : Host.HostCapacity.Current.DefaultMaxWorkspaces;

    /// <summary>
    /// How many snapshots one workspace may keep. Default 32, or <c>PYRO_MAX_SNAPSHOTS</c>.
    /// Snapshot create refuses past it with <c>snapshot_limit_reached</c>.
    /// </summary>
    public int MaxSnapshots { get; init; } = PositiveFromEnv("PYRO_MAX_SNAPSHOTS") is { } n ? (int)Math.Min(n, int.MaxValue) : 32;

    /// <summary>
    /// Bytes all snapshots of one workspace may take on the host's disk together. Default 4 GiB, or
    /// <c>PYRO_MAX_SNAPSHOT_BYTES</c>. A snapshot that would pass it is refused with
    /// <c>snapshot_limit_reached</c>, and one that grows past it while being written is removed.
    /// </summary>
    public long MaxSnapshotBytes { get; init; } = PositiveFromEnv("PYRO_MAX_SNAPSHOT_BYTES") ?? 4L * 1024 * 1024 * 1024;

    /// <summary>
    /// Most entries returned in one list (files of a directory, command history, workspaces).
    /// Default 10,000, or <c>PYRO_MAX_LIST_ENTRIES</c>. A longer list is cut, and the result says so
    /// (<see cref="CappedList{T}.Truncated"/>, <see cref="CappedList{T}.TotalCount"/>).
    /// </summary>
    public int MaxListEntries { get; init; } = PositiveFromEnv("PYRO_MAX_LIST_ENTRIES") is { } l ? (int)Math.Min(l, int.MaxValue) : 10_000;

    /// <summary>
    /// Most skipped entries a sync, seed or export reports one by one. Default 1,000, or
    /// <c>PYRO_MAX_SKIPPED_ENTRIES</c>. The rest are counted in <c>SkippedTotal</c>.
    /// </summary>
    public int MaxSkippedEntries { get; init; } = PositiveFromEnv("PYRO_MAX_SKIPPED_ENTRIES") is { } k ? (int)Math.Min(k, int.MaxValue) : 1_000;

    private static long? PositiveFromEnv(string name)
    {
        if (FromEnv(name) is not { } text)
        {
            return null;
        }

        return long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var value) && value > 0
            ? value
            : throw new PyroInputException("invalid_limit", $"{name}={text} is not a positive whole number: fix or unset it");
    }

    private static string CacheHome => FromEnv("XDG_CACHE_HOME") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");

    /// <summary>The native supervisor in <paramref name="directory"/> if it was published there, else its managed build.</summary>
    internal static string DefaultSupervisorPath(string directory)
    {
        var native = Path.Combine(directory, "supervisor", "pyro-supervisor");
        return File.Exists(native) ? native : Path.Combine(directory, "pyro-supervisor.dll");
    }

    private static string? FromEnv(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;

    /// <summary>Parses <c>auto</c>, <c>kvm</c> or <c>tcg</c> (any case).</summary>
    public static Accelerator ParseAccelerator(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => Accelerator.Auto,
        "kvm" => Accelerator.Kvm,
        "tcg" => Accelerator.Tcg,
        _ => throw new PyroInputException("invalid_accelerator", $"unknown accelerator '{value}': use auto, kvm or tcg"),
    };
}
