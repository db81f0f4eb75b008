using System.Diagnostics;
using PyroMcp.TestKit;
using PyroMcp.Workspaces;

namespace PyroMcp.Tests;

/// <summary>
/// The SDK starts the native supervisor the build published, directly; a managed build named by
/// PYRO_SUPERVISOR_PATH still runs, with dotnet.
/// </summary>
public sealed class SupervisorProgramTests
{
    [Fact]
    public void TheBuildPublishesANativeSupervisorAndTheSdkPicksIt()
    {
        Assert.Equal(Repo.SupervisorPath, PyroOptions.DefaultSupervisorPath(Repo.CliDirectory));
        // An ELF executable, not a managed assembly: it starts without the .NET runtime.
        var header = new byte[4];
        using (var file = File.OpenRead(Repo.SupervisorPath))
        {
            file.ReadExactly(header);
        }

        Assert.Equal([0x7f, (byte)'E', (byte)'L', (byte)'F'], header);
        Assert.True(File.GetUnixFileMode(Repo.SupervisorPath).HasFlag(UnixFileMode.UserExecute), "the native supervisor is not executable");
        Assert.Equal([Repo.SupervisorPath], SupervisorLauncher.Command(Repo.SupervisorPath));
    }

    [Fact]
    public void WithoutTheNativeBuildTheManagedOneRunsWithDotnet()
    {
        var directory = Directory.CreateTempSubdirectory("pyro-supervisor-path-").FullName;
        try
        {
            var managed = Path.Combine(directory, "pyro-supervisor.dll");
            Assert.Equal(managed, PyroOptions.DefaultSupervisorPath(directory));
            var command = SupervisorLauncher.Command(managed);
            Assert.Equal(2, command.Length);
            Assert.Equal("dotnet", Path.GetFileNameWithoutExtension(command[0]));
            Assert.Equal(managed, command[1]);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task BothBuildsStartAndRefuseAMissingWorkspace(bool native)
    {
        // Each really starts: the native one without a runtime, the managed one through dotnet.
        var path = native ? Repo.SupervisorPath : Repo.ManagedSupervisorPath;
        var state = Directory.CreateTempSubdirectory("pyro-supervisor-start-").FullName;
        try
        {
            var command = SupervisorLauncher.Command(path);
            var result = await Processes.RunAsync(command[0], [.. command.Skip(1), "--state-dir", state, "--workspace", "nosuchworkspace"], timeout: TimeSpan.FromMinutes(2));
            Assert.NotEqual(0, result.ExitCode);
            Assert.Contains("pyro-supervisor: no workspace nosuchworkspace", result.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(state, recursive: true);
        }
    }
}
