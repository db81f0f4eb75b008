namespace PyroMcp;

/// <summary>Where pyro keeps its files and how it starts VMs. Every value has an environment-variable override.</summary>
public sealed record PyroOptions
{
    /// <summary>Environment cache. Default <c>~/.cache/pyro/environments</c>, or <c>PYRO_ENVIRONMENT_CACHE_DIR</c>.</summary>
    public string EnvironmentCacheDir { get; init; } = FromEnv("PYRO_ENVIRONMENT_CACHE_DIR") ?? Path.Combine(CacheHome, "pyro", "environments");

    /// <summary>Runtime bundle cache (kernel, initramfs). Default <c>~/.cache/pyro/runtime</c>, or <c>PYRO_RUNTIME_CACHE_DIR</c>.</summary>
    public string RuntimeCacheDir { get; init; } = FromEnv("PYRO_RUNTIME_CACHE_DIR") ?? Path.Combine(CacheHome, "pyro", "runtime");

    /// <summary>Workspace state: the SQLite database and each workspace's disk, baseline and snapshots. Default <c>~/.local/state/pyro</c>, or <c>PYRO_STATE_DIR</c>.</summary>
    public string StateDir { get; init; } = FromEnv("PYRO_STATE_DIR")
        ?? Path.Combine(FromEnv("XDG_STATE_HOME") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "state"), "pyro");

    /// <summary>The workspace supervisor program. Default: <c>pyro-supervisor.dll</c> beside this assembly, or <c>PYRO_SUPERVISOR_PATH</c>.</summary>
    public string SupervisorPath { get; init; } = FromEnv("PYRO_SUPERVISOR_PATH") ?? Path.Combine(AppContext.BaseDirectory, "pyro-supervisor.dll");

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

    private static string CacheHome => FromEnv("XDG_CACHE_HOME") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");

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
