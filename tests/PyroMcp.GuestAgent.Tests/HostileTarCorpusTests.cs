using PyroMcp.Protocol;
using static PyroMcp.GuestAgent.Tests.AgentHarness;

namespace PyroMcp.GuestAgent.Tests;

/// <summary>Runs alone: allocation is measured for the whole process, so no other test may run meanwhile.</summary>
[CollectionDefinition("allocation", DisableParallelization = true)]
public sealed class AllocationCollection;

/// <summary>
/// The hostile tar corpus through the agent's tar.in (seed archives are whatever the user
/// downloaded). Nothing may land, change or be linked to outside the workspace root, and an
/// archive that only claims a huge header must not make the agent allocate more than a few MiB.
/// </summary>
[Collection("allocation")]
public sealed class HostileTarCorpusTests : IAsyncLifetime
{
    private const long HugeHeaderAllocationLimit = 8L * 1024 * 1024;
    private readonly AgentHarness _agent = new();

    [Fact]
    public async Task TheHostileCorpusWritesNothingOutsideTheWorkspace()
    {
        Directory.CreateDirectory(Path.Combine(_agent.Outside, "sub"));
        Directory.CreateDirectory(Path.Combine(_agent.Outside, "dirtarget"));
        File.WriteAllText(Path.Combine(_agent.Outside, "sentinel"), "host file");
        File.WriteAllText(Path.Combine(_agent.Outside, "sub", "secret"), "host secret");
        var corpus = HostileTarCorpus.Build(_agent.Outside, _agent.Elsewhere).ToList();

        // Links already in a destination: the archive writes through them unless every parent is checked.
        Directory.CreateDirectory(_agent.InRoot("dest-planted"));
        File.CreateSymbolicLink(_agent.InRoot("dest-planted/dirlink"), _agent.Outside);
        File.CreateSymbolicLink(_agent.InRoot("dest-planted/filelink"), Path.Combine(_agent.Outside, "sentinel"));
        var planted = new RawTar().File("dirlink/victim", "pwned").File("filelink", "replaces the link, not its target")
            .Directory("dirlink/sub/").File("dirlink/sub/deeper", "x").HardLink("hard", "filelink");
        corpus.Add(new HostileArchive("links already in the destination", planted.ToArray(), planted.Entries));
        var before = TreeSnapshot.Take(_agent.Outside, _agent.Elsewhere);

        var entries = 0;
        var refused = new List<string>();
        var hugeAllocations = new List<(string Name, long Bytes)>();
        for (var i = 0; i < corpus.Count; i++)
        {
            var archive = corpus[i];
            entries += archive.Entries;
            var destination = archive.Name == "links already in the destination" ? "dest-planted" : $"dest-{i}";
            var allocated = GC.GetTotalAllocatedBytes(precise: true);
            var reply = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = destination }, archive.Bytes);
            var used = GC.GetTotalAllocatedBytes(precise: true) - allocated;
            if (reply.Error is { } error)
            {
                Assert.True(error.Code == "bad_archive", $"{archive.Name}: {error.Code}: {error.Message}");
                refused.Add(archive.Name);
            }

            if (archive.HugeHeader)
            {
                hugeAllocations.Add((archive.Name, used));
            }
        }

        var after = TreeSnapshot.Take(_agent.Outside, _agent.Elsewhere);
        var escaped = TreeSnapshot.Differences(before, after);
        escaped.AddRange(_agent.EscapedEntries().Where(p => !before.ContainsKey(p)));
        var hugeMax = hugeAllocations.Max(h => h.Bytes);
        Figures.Record("hostile tar corpus (tar.in, guest agent)",
            $"{entries} entries tried in {corpus.Count} archives ({refused.Count} refused whole), {escaped.Count} written outside, " +
            $"huge-header archives allocated at most {hugeMax / 1048576.0:F1} MiB, peak memory {Figures.PeakRssMib():F0} MiB");

        Assert.Empty(escaped);
        Assert.Equal("host file", File.ReadAllText(Path.Combine(_agent.Outside, "sentinel")));
        Assert.Equal("replaces the link, not its target", File.ReadAllText(_agent.InRoot("dest-planted/filelink")));
        Assert.All(hugeAllocations, h => Assert.True(h.Bytes < HugeHeaderAllocationLimit, $"{h.Name} made the agent allocate {h.Bytes} bytes"));
        Assert.All(corpus.Where(a => a.HugeHeader), a => Assert.Contains(a.Name, refused));
    }

    [Fact]
    public async Task AHugePaxHeaderIsABadArchiveThatNamesTheLimit()
    {
        var reply = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "dest" }, new RawTar().HugeMetadata('x', 1L << 30).ToArray(end: false));
        var next = await _agent.TarAsync(AgentOps.TarIn, new TarRequest { Path = "dest" }, new RawTar().File("after", "ok").ToArray());

        Assert.Equal("bad_archive", reply.FailureCode);
        Assert.Contains("at most 65536", reply.Error!.Message);
        Assert.Equal(1, next.Ok.Tar!.Entries);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _agent.DisposeAsync();
}
