using System.Diagnostics;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent.Tests;

/// <summary>
/// The service state dir as something in the guest may leave it: the agent boots over it without
/// crashing, loads only what it wrote, and writes nothing through it to anywhere else.
/// </summary>
public sealed class ServiceMetadataHostileTests
{
    [Fact]
    public async Task HostileStateDirNeitherCrashesTheAgentNorLeadsItOutside()
    {
        var outside = Directory.CreateTempSubdirectory("pyro-svc-outside-").FullName;
        try
        {
            var planted = Path.Combine(outside, "service.json");
            File.WriteAllBytes(planted, ProtocolJsonContext.Encode(Info("linked", "running")));
            File.WriteAllText(Path.Combine(outside, "victim"), "untouched");
            var before = Snapshot(outside);
            var tried = 0;

            void Prepare(string state)
            {
                void Dir(string name, Action<string> fill)
                {
                    tried++;
                    var dir = Directory.CreateDirectory(Path.Combine(state, name)).FullName;
                    fill(Path.Combine(dir, "service.json"));
                }

                Dir("garbage", f => File.WriteAllText(f, "{ not json at all"));
                Dir("empty", f => File.WriteAllText(f, ""));
                Dir("nulljson", f => File.WriteAllText(f, "null"));
                Dir("array", f => File.WriteAllText(f, "[1,2,3]"));
                Dir("deep", f => File.WriteAllText(f, new string('[', 100_000)));
                Dir("big", f =>
                {
                    using var file = File.Create(f);
                    file.SetLength(50L * 1024 * 1024);
                });
                Dir("escape", f => File.WriteAllBytes(f, ProtocolJsonContext.Encode(Info("../../escape", "running"))));
                Dir("othername", f => File.WriteAllBytes(f, ProtocolJsonContext.Encode(Info("good", "running"))));
                Dir("badstate", f => File.WriteAllBytes(f, ProtocolJsonContext.Encode(Info("badstate", "pwned"))));
                Dir("nullfields", f => File.WriteAllText(f, "{\"name\":\"nullfields\",\"state\":\"running\",\"command\":null,\"cwd\":null,\"readiness\":{\"type\":null,\"target\":null}}"));
                Dir("missingfields", f => File.WriteAllText(f, "{\"name\":\"missingfields\"}"));
                Dir("hugecommand", f => File.WriteAllBytes(f, ProtocolJsonContext.Encode(Info("hugecommand", "running") with { Command = new string('x', 60_000) })));
                Dir("linkfile", f => File.CreateSymbolicLink(f, planted));
                Dir("dirfile", f => Directory.CreateDirectory(f));
                Dir("fifo", f => Run("/bin/busybox", "mkfifo", f));
                Dir("devzero", f => File.CreateSymbolicLink(f, "/dev/zero"));
                Dir("good", f => File.WriteAllBytes(f, ProtocolJsonContext.Encode(Info("good", "running"))));

                tried++;
                Directory.CreateSymbolicLink(Path.Combine(state, "linked"), outside);
                tried++;
                File.WriteAllText(Path.Combine(state, "plainfile"), "{}");
                tried++;
                Directory.CreateDirectory(Path.Combine(state, "bad name"));
                File.WriteAllBytes(Path.Combine(state, "bad name", "service.json"), ProtocolJsonContext.Encode(Info("bad name", "running")));
            }

            var crashes = 0;
            AgentHarness? agent = null;
            try
            {
                agent = new AgentHarness("/bin/busybox", Prepare);
            }
            catch (Exception)
            {
                crashes++;
            }

            Assert.NotNull(agent);
            await using (agent)
            {
                var listed = (await agent.ServiceAsync(AgentOps.ServiceList, new ServiceRequest())).Ok.Services!;
                var good = Assert.Single(listed);
                Assert.Equal(("good", "stopped", "the workspace was stopped or restarted"), (good.Name, good.State, good.Reason));

                // A start over the symlinked name replaces the link with a directory of the agent's own.
                var started = (await agent.ServiceAsync(AgentOps.ServiceStart, new ServiceRequest { Name = "linked", Command = "echo into-the-log; exec sleep 1000" })).Ok.Service!;
                Assert.Equal("running", started.State);
                Assert.Null(new DirectoryInfo(Path.Combine(agent.StateDir, "linked")).LinkTarget);
                await agent.ServiceAsync(AgentOps.ServiceStop, new ServiceRequest { Name = "linked" });

                var after = Snapshot(outside);
                var writtenOutside = after.Count(kv => !before.TryGetValue(kv.Key, out var old) || old != kv.Value) + before.Keys.Count(k => !after.ContainsKey(k));
                Figures.Record("service metadata", $"{tried} hostile state entries tried, {crashes} crashes, {writtenOutside} written outside, {listed.Count} loaded");
                Assert.Equal(0, crashes);
                Assert.Equal(0, writtenOutside);
            }
        }
        finally
        {
            Directory.Delete(outside, recursive: true);
        }
    }

    private static ServiceInfo Info(string name, string state) => new()
    {
        Name = name,
        State = state,
        Command = "sleep 1000",
        Cwd = "/",
        Pid = 4242,
        StartedAtMs = 1,
    };

    private static Dictionary<string, string> Snapshot(string dir)
        => Directory.GetFiles(dir, "*", SearchOption.AllDirectories).ToDictionary(
            f => f,
            f => Convert.ToHexString(File.ReadAllBytes(f)) + "@" + File.GetLastWriteTimeUtc(f).Ticks);

    private static void Run(string program, params string[] args)
    {
        using var process = Process.Start(program, args);
        process.WaitForExit();
        Assert.Equal(0, process.ExitCode);
    }
}
