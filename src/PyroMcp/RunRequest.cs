namespace PyroMcp;

/// <summary>One command to run in a fresh VM that is deleted afterwards.</summary>
public sealed record RunRequest
{
    /// <summary>Catalog environment, e.g. <c>debian:12</c>.</summary>
    public required string Environment { get; init; }

    /// <summary>
    /// The command. Several items run as argv, without a shell. A single item that contains
    /// whitespace or shell syntax runs through <c>/bin/sh -c</c>.
    /// </summary>
    public required IReadOnlyList<string> Command { get; init; }

    /// <summary>Virtual CPUs, 1 to 32. Default 1.</summary>
    public int VcpuCount { get; init; } = 1;

    /// <summary>Guest memory in MiB, 128 to 65536. Default 1024.</summary>
    public int MemMib { get; init; } = 1024;

    /// <summary>Seconds the command may run before its whole process group is killed (exit 124). 1 to 86400; default 30.</summary>
    public int TimeoutSeconds { get; init; } = 30;

    /// <summary>Extra environment variables for the command.</summary>
    public IReadOnlyDictionary<string, string>? Env { get; init; }

    /// <summary>Working directory in the guest. Default <c>/</c>.</summary>
    public string? Cwd { get; init; }

    /// <summary>
    /// Give the guest outbound network (policy <see cref="NetworkPolicy.Egress"/>: passt on the
    /// host, DNS through the host's resolver). Off by default: the guest has no network device.
    /// The guest never reaches the host itself either way.
    /// </summary>
    public bool Network { get; init; }

    /// <summary>Run on the host, without isolation, when no guest can boot. Off by default: pyro fails closed.</summary>
    public bool AllowHostCompat { get; init; }

    /// <summary>
    /// Boot the guest instead of restoring it from the environment's warm-start template. Off by
    /// default: a run restores from the template (built on first need) and boots cold only when
    /// the template cannot be used, saying why in <see cref="RunResult.ColdStartReason"/>.
    /// </summary>
    public bool Cold { get; init; }

    /// <summary>Overrides <see cref="PyroOptions.Accelerator"/> for this run.</summary>
    public Accelerator? Accelerator { get; init; }

    /// <summary>Receives phase updates (<c>[run] phase=...</c>, and pull phases on first use).</summary>
    public IProgress<PyroProgress>? Progress { get; init; }

    /// <summary>Receives stdout bytes as the guest produces them (up to the output cap).</summary>
    public Func<ReadOnlyMemory<byte>, ValueTask>? OnStdout { get; init; }

    /// <summary>Receives stderr bytes as the guest produces them (up to the output cap).</summary>
    public Func<ReadOnlyMemory<byte>, ValueTask>? OnStderr { get; init; }

    internal string CommandText => Command.Count == 1 ? Command[0] : string.Join(' ', Command.Select(QuoteIfNeeded));

    internal bool IsShellCommand => Command.Count == 1 && Command[0].Any(c => char.IsWhiteSpace(c) || "|&;<>()$`\\\"'*?[]#~=%{}!".Contains(c));

    private static string QuoteIfNeeded(string arg)
        => arg.Length > 0 && arg.All(c => char.IsLetterOrDigit(c) || "-_./:=@+,%".Contains(c)) ? arg : "'" + arg.Replace("'", "'\\''") + "'";

    /// <summary>What the agent is asked to run: argv, or the one string through the shell.</summary>
    internal Protocol.ExecRequest ToExecRequest(string? cwd) => new()
    {
        Argv = IsShellCommand ? null : Command,
        Shell = IsShellCommand ? Command[0] : null,
        Cwd = cwd,
        Env = Env,
        TimeoutMs = TimeoutSeconds * 1000,
    };

    internal void Validate() => Validate(Host.HostCapacity.Current);

    /// <summary>Checks the request, and that <paramref name="host"/> can give the vCPUs and memory asked for (null: no VM is booted, so no check).</summary>
    internal void Validate(Host.HostCapacity? host)
    {
        if (Command.Count == 0 || string.IsNullOrWhiteSpace(Command[0]))
        {
            throw new PyroInputException("missing_command", "no command given: the request's command is empty", nameof(Command));
        }

        if (VcpuCount is < 1 or > 32)
        {
            throw new PyroInputException("invalid_vcpu_count", $"the vCPU count must be between 1 and 32 (got {VcpuCount})", nameof(VcpuCount));
        }

        if (MemMib is < 128 or > 65536)
        {
            throw new PyroInputException("invalid_mem_mib", $"guest memory must be between 128 and 65536 MiB (got {MemMib})", nameof(MemMib));
        }

        host?.Check(VcpuCount, MemMib);

        if (TimeoutSeconds is < 1 or > 86400)
        {
            throw new PyroInputException("invalid_timeout", $"the timeout must be between 1 and 86400 seconds (got {TimeoutSeconds})", nameof(TimeoutSeconds));
        }
    }
}
