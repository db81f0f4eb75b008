using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace PyroMcp.GuestTests;

/// <summary>Where the checkout and its build outputs are.</summary>
internal static class Repo
{
    internal static string Root { get; } = FindRoot();

    /// <summary>release or debug, whichever built these tests.</summary>
    internal static string Configuration { get; } = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Name;

    internal static string CliDll => Path.Combine(Root, "artifacts", "bin", "PyroMcp.Cli", Configuration, "pyro.dll");

    internal static string AgentPath => Path.Combine(Root, "artifacts", "bin", "PyroMcp.Cli", Configuration, "guest", "pyro-agent");

    /// <summary>Scratch for the VMs of this test run only, so leftovers can be counted exactly.</summary>
    internal static string RunDir { get; } = Directory.CreateTempSubdirectory("pyro-test-run-").FullName;

    /// <summary>Workspace state of this test run only.</summary>
    internal static string StateDir { get; } = Directory.CreateTempSubdirectory("pyro-test-state-").FullName;

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "pyro.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("cannot find the checkout root (pyro.slnx) above " + AppContext.BaseDirectory);
    }
}

internal sealed record CliResult(int ExitCode, string Stdout, string Stderr)
{
    internal JsonElement Json => JsonDocument.Parse(Stdout).RootElement;

    public override string ToString() => $"exit {ExitCode}\n--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";
}

/// <summary>Runs the built CLI as a user would, in a child process.</summary>
internal static class Cli
{
    internal static Process Start(IEnumerable<string> args, IDictionary<string, string>? env = null)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Repo.CliDll);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["PYRO_RUN_DIR"] = Repo.RunDir;
        start.Environment["PYRO_STATE_DIR"] = Repo.StateDir;
        foreach (var (key, value) in env ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        return Process.Start(start)!;
    }

    internal static async Task<CliResult> RunAsync(IEnumerable<string> args, IDictionary<string, string>? env = null, TimeSpan? timeout = null)
    {
        using var process = Start(args, env);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var limit = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(5));
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"pyro {string.Join(' ', args)} did not finish; stderr so far:\n{await stderr}");
        }

        return new CliResult(process.ExitCode, await stdout, await stderr);
    }

    internal static Task<CliResult> RunAsync(params string[] args) => RunAsync((IEnumerable<string>)args);
}

/// <summary>Checks that nothing a test started outlives it: no QEMU of this run, no VM scratch.</summary>
internal static class Leftovers
{
    internal static IReadOnlyList<string> QemuProcesses()
    {
        var found = new List<string>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out _))
            {
                continue;
            }

            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                if ((cmdline.Contains("qemu-system") || cmdline.Contains("pyro-supervisor")) && (cmdline.Contains(Repo.RunDir) || cmdline.Contains(Repo.StateDir)))
                {
                    found.Add(cmdline);
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return found;
    }

    internal static IReadOnlyList<string> VmDirectories()
    {
        var vms = Path.Combine(Repo.RunDir, "vms");
        var workspaces = Path.Combine(Repo.StateDir, "workspaces");
        return [.. Directory.Exists(vms) ? Directory.GetDirectories(vms) : [], .. Directory.Exists(workspaces) ? Directory.GetDirectories(workspaces) : []];
    }

    /// <summary>Asserts the machine is clean, giving a VM that is being torn down a moment to go.</summary>
    internal static async Task AssertNoneAsync()
    {
        for (var i = 0; i < 50 && (QemuProcesses().Count > 0 || VmDirectories().Count > 0); i++)
        {
            await Task.Delay(100);
        }

        Assert.Empty(QemuProcesses());
        Assert.Empty(VmDirectories());
    }
}

/// <summary>
/// Once per run: the host must be able to boot guests and debian:12 must be in the cache.
/// A host that cannot is a failure with the doctor's words, never a silent skip.
/// </summary>
public sealed class GuestFixture : IAsyncLifetime
{
    public async Task InitializeAsync()
    {
        Assert.True(File.Exists(Repo.CliDll), $"the CLI is not built at {Repo.CliDll}: run ./test.sh");
        var doctor = await Cli.RunAsync("doctor");
        Assert.True(doctor.ExitCode == 0, "this host cannot boot guests; pyro doctor says:\n" + doctor);
        var pull = await Cli.RunAsync(["env", "pull", "debian:12"], timeout: TimeSpan.FromMinutes(10));
        Assert.True(pull.ExitCode == 0, "could not build debian:12:\n" + pull);
    }

    public Task DisposeAsync()
    {
        try
        {
            Directory.Delete(Repo.RunDir, recursive: true);
            Directory.Delete(Repo.StateDir, recursive: true);
        }
        catch (IOException)
        {
        }

        return Task.CompletedTask;
    }
}

[CollectionDefinition("guest")]
public sealed class GuestCollection : ICollectionFixture<GuestFixture>;

/// <summary>Base for guest tests: after each test, nothing of it may remain.</summary>
[Collection("guest")]
public abstract class GuestTest : IAsyncLifetime
{
    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual async Task DisposeAsync() => await Leftovers.AssertNoneAsync();

    internal static string Text(params string[] lines) => string.Join('\n', lines);

    internal static string Utf8(byte[] bytes) => Encoding.UTF8.GetString(bytes);
}
