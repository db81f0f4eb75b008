namespace PyroMcp.TestKit;

/// <summary>Where the checkout and its build outputs are, and the scratch directories of this test run.</summary>
internal static class Repo
{
    private static readonly Lazy<string> LazyRunDir = new(() => Scratch("pyro-test-run-"));
    private static readonly Lazy<string> LazyStateDir = new(() => Scratch("pyro-test-state-"));

    /// <summary>The checkout (the directory with pyro.slnx) these tests were built from.</summary>
    internal static string Root => RootOrNull ?? throw new InvalidOperationException("cannot find the checkout root (pyro.slnx) above " + AppContext.BaseDirectory);

    /// <summary>The checkout, or null when the tests run from somewhere else.</summary>
    internal static string? RootOrNull { get; } = FindRoot();

    /// <summary>release or debug, whichever built these tests.</summary>
    internal static string Configuration { get; } = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Name;

    /// <summary>The directory the CLI was built into: pyro.dll, supervisor/pyro-supervisor, guest/pyro-agent.</summary>
    internal static string CliDirectory => Path.Combine(Root, "artifacts", "bin", "PyroMcp.Cli", Configuration);

    internal static string CliDll => Path.Combine(CliDirectory, "pyro.dll");

    /// <summary>
    /// The native CLI, as <c>./pyro</c> runs it: published (Native AOT) with its supervisor and
    /// guest agent by ./test.sh and scripts/host-setup.sh into artifacts/pyro.
    /// </summary>
    internal static string Cli => Path.Combine(Root, "artifacts", "pyro", "pyro");

    internal static string AgentPath => Path.Combine(CliDirectory, "guest", "pyro-agent");

    /// <summary>The native supervisor the CLI build published (what the SDK starts by default).</summary>
    internal static string SupervisorPath => Path.Combine(CliDirectory, "supervisor", "pyro-supervisor");

    /// <summary>The managed build of the supervisor, run with dotnet when PYRO_SUPERVISOR_PATH names it.</summary>
    internal static string ManagedSupervisorPath => Path.Combine(CliDirectory, "pyro-supervisor.dll");

    /// <summary>Scratch for the VMs of this test run only, so leftovers can be counted exactly. Made on first use, removed when the test process exits.</summary>
    internal static string RunDir => LazyRunDir.Value;

    /// <summary>Workspace state of this test run only. Made on first use, removed when the test process exits.</summary>
    internal static string StateDir => LazyStateDir.Value;

    /// <summary>The variables that point a child pyro at this run's scratch directories.</summary>
    internal static Dictionary<string, string> ScratchEnvironment => new()
    {
        ["PYRO_RUN_DIR"] = RunDir,
        ["PYRO_STATE_DIR"] = StateDir,
    };

    /// <summary>Removes the run's scratch directories (those that were made), whatever is in them.</summary>
    internal static void DeleteScratch()
    {
        foreach (var dir in new[] { LazyRunDir, LazyStateDir }.Where(d => d.IsValueCreated).Select(d => d.Value))
        {
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (DirectoryNotFoundException)
            {
            }
            catch (IOException)
            {
            }
        }
    }

    private static string Scratch(string prefix)
    {
        // xunit 2 has no assembly-level fixture: the process exit is the one place every project shares.
        AppDomain.CurrentDomain.ProcessExit -= OnExit;
        AppDomain.CurrentDomain.ProcessExit += OnExit;
        return Directory.CreateTempSubdirectory(prefix).FullName;
    }

    private static void OnExit(object? sender, EventArgs e) => DeleteScratch();

    private static string? FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "pyro.slnx")))
            {
                return dir.FullName;
            }
        }

        return null;
    }
}
