using System.Text;

namespace PyroMcp.GuestTests;

/// <summary>
/// An image no one here built the disk of: umoci makes a busybox-only image (no libc) with a
/// User, WorkingDir and Env, skopeo pushes it to docker-registry as Docker schema 2, pyro
/// imports it from there and boots it, once for <c>run</c> and once as a workspace.
/// </summary>
public sealed class ImportedImageTests : GuestTest
{
    [Fact]
    public async Task AnImportedBusyboxImageRunsWithItsUserWorkingDirAndEnvAndServesAWorkspace()
    {
        await using var lab = await ImageLab.CreateAsync();
        var reference = await lab.PushAsync("team/busybox", dockerV2s2: true);
        var cache = Path.Combine(HostDir, "environments");
        var options = PyroScratch.Options with { EnvironmentCacheDir = cache };
        var pyro = new Pyro(options);
        var environment = await pyro.ImportEnvironmentAsync(reference, "busybox-app:1.0");
        Assert.Equal("application/vnd.docker.distribution.manifest.v2+json", environment.Image?.ManifestMediaType);

        // run: the image's user, working directory and variables, PATH given as Docker gives it.
        var run = await pyro.RunAsync(new RunRequest { Environment = environment.Name, Command = ["sh -c 'id; pwd; env; test ! -e /lib && echo no-libc'"], TimeoutSeconds = 120 });
        Assert.True(run.ExitCode == 0, $"run exited {run.ExitCode}\n{run.Stdout}\n{run.Stderr}");
        var lines = run.Stdout.Split('\n');
        Assert.StartsWith("uid=1000(app) gid=1000(app)", lines[0], StringComparison.Ordinal);
        Assert.Equal(ImageLab.WorkingDir, lines[1]);
        Assert.Contains("GREETING=hello from the image", lines);
        Assert.Contains("APP_MODE=imported", lines);
        Assert.Contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", lines);
        Assert.Contains("HOME=/home/app", lines);
        Assert.Contains("no-libc", lines);

        // A request's own env and cwd win over the image's.
        var overridden = await pyro.RunAsync(new RunRequest
        {
            Environment = environment.Name, Command = ["sh -c 'pwd; echo $GREETING'"], Cwd = "/tmp", Env = new Dictionary<string, string> { ["GREETING"] = "from the request" }, TimeoutSeconds = 120,
        });
        Assert.Equal("/tmp\nfrom the request\n", overridden.Stdout);

        // A workspace: exec as the image's user in /workspace (which that user owns), file ops by the agent.
        var workspace = await pyro.CreateWorkspaceAsync(new WorkspaceCreateRequest { Environment = environment.Name });
        DeleteAfterwards(workspace.WorkspaceId, new Dictionary<string, string> { ["PYRO_ENVIRONMENT_CACHE_DIR"] = cache });
        var exec = await pyro.ExecWorkspaceAsync(workspace.WorkspaceId, new WorkspaceExecRequest { Command = ["id -un; pwd; echo $APP_MODE; echo made > by-exec; cat /etc/motd"] });
        Assert.True(exec.ExitCode == 0, $"exec exited {exec.ExitCode}\n{exec.Stdout}\n{exec.Stderr}");
        Assert.Equal("app\n/workspace\nimported\nsecond layer\n", exec.Stdout);
        await pyro.WriteWorkspaceFileAsync(workspace.WorkspaceId, "notes/a.txt", new MemoryStream(Encoding.UTF8.GetBytes("from the host\n")));
        var cat = await pyro.ExecWorkspaceAsync(workspace.WorkspaceId, new WorkspaceExecRequest { Command = ["cat notes/a.txt"] });
        Assert.Equal("from the host\n", cat.Stdout);
        var read = await pyro.ReadWorkspaceFileAsync(workspace.WorkspaceId, "by-exec");
        Assert.Equal("made\n", Encoding.UTF8.GetString(read.Content));
        // A service runs as the image's user too, with its Env.
        await pyro.StartServiceAsync(workspace.WorkspaceId, new ServiceStartRequest
        {
            Name = "whoami", Command = "echo \"$(id -u) $APP_MODE\" > service.out; exec sleep 600", Readiness = ServiceReadiness.File("service.out"),
        });
        var service = await pyro.ReadWorkspaceFileAsync(workspace.WorkspaceId, "service.out");
        Assert.Equal("1000 imported\n", Encoding.UTF8.GetString(service.Content));
        await pyro.StopServiceAsync(workspace.WorkspaceId, "whoami");
        Assert.True(await pyro.DeleteWorkspaceAsync(workspace.WorkspaceId));
        Forget(workspace.WorkspaceId);

        Figures.Record("imported image (guest)", $"umoci busybox image via skopeo and docker-registry (Docker schema 2): run as uid 1000 in {ImageLab.WorkingDir} with the image's Env; a workspace served exec, file ops and a service as that user");
    }
}
