using System.Formats.Tar;
using System.Text;
using PyroMcp.Host;
using PyroMcp.Protocol;
using PyroMcp.Runtime;
using PyroMcp.Vmm;

namespace PyroMcp.GuestTests;

/// <summary>
/// The agent carries its own loader and libc, so it runs in a root file system that has none:
/// here one that holds a static busybox and nothing else, booted with the real runtime bundle.
/// </summary>
public sealed class AnyRootfsTests : GuestTest
{
    [Fact]
    public async Task ARootfsWithNoLibcServesExecFilesAndTar()
    {
        var busybox = HostTools.Busybox.Require();
        Assert.True(HostTools.IsStaticElf(busybox), $"{busybox} must be the static busybox (busybox-static)");

        // The root: /bin/busybox, /bin/sh, and the empty directories init.sh and the agent use. No /lib, no /lib64, no /usr.
        var root = Path.Combine(HostDir, "root");
        foreach (var dir in new[] { "bin", "dev", "etc", "proc", "run", "sys", "tmp", "workspace" })
        {
            Directory.CreateDirectory(Path.Combine(root, dir));
        }

        File.Copy(busybox, Path.Combine(root, "bin", "busybox"));
        File.SetUnixFileMode(Path.Combine(root, "bin", "busybox"), (UnixFileMode)0x1ED);
        File.CreateSymbolicLink(Path.Combine(root, "bin", "sh"), "busybox");
        var files = Directory.GetFiles(root, "*", SearchOption.AllDirectories);
        var dynamic = files.Where(f => File.ResolveLinkTarget(f, returnFinalTarget: false) is null && IsElf(f) && !HostTools.IsStaticElf(f)).ToList();
        Assert.Empty(dynamic);
        Assert.DoesNotContain(files, f => Path.GetFileName(f).Contains(".so", StringComparison.Ordinal));

        var image = Path.Combine(HostDir, "rootfs.ext4");
        var mkfs = await Processes.RunAsync(HostTools.MkfsExt4.Require(), ["-q", "-F", "-d", root, image, "64M"], timeout: TimeSpan.FromMinutes(2));
        Assert.True(mkfs.ExitCode == 0, mkfs.ToString());

        var options = PyroScratch.Options;
        var bundle = await RuntimeBundle.EnsureAsync(options, null, CancellationToken.None);
        Assert.Contains("libc.so.6", bundle.Manifest.AgentLibraries.Keys);
        var accelerator = KvmProbe.Detect().Choose(options.Accelerator).Chosen;
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var vm = await QemuVm.StartAsync(QemuVm.NewId(), new VmSpec(1, 256, accelerator), image, bundle, options, deadline.Token);
        await using var vmScope = vm;
        vm.DiscardOnDispose = true;

        // exec: the guest's own /bin/sh (busybox), with no libc on the disk; the agent that started
        // it (its parent) has the libc from /run/pyro/lib mapped, none from the root.
        var exec = await ExecAsync(vm, "test ! -e /lib && test ! -e /lib64 && test ! -e /usr && echo no-libc; "
            + "grep -c ' /run/pyro/lib/libc.so.6$' /proc/$PPID/maps; grep -c ' /lib' /proc/$PPID/maps; echo made > /workspace/by-exec", deadline.Token);
        Assert.Equal(0, exec.Exit.ExitCode);
        var lines = exec.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("no-libc", lines[0]);
        Assert.True(int.Parse(lines[1], System.Globalization.CultureInfo.InvariantCulture) >= 1, "the agent has no libc mapped from /run/pyro/lib:\n" + exec.Stdout);
        Assert.Equal("0", lines[2]);

        // files.write then files.read.
        var content = Encoding.UTF8.GetBytes("written by the host into a guest with no libc\n");
        var written = await vm.Agent.CallAsync(new AgentRequest { Op = AgentOps.FilesWrite, Files = new FilesRequest { Path = "/workspace/notes/a.txt", CreateParents = true } },
            null, new MemoryStream(content), deadline.Token);
        Assert.Equal("file", written.File?.Type);
        var read = new MemoryStream();
        await vm.Agent.CallAsync(new AgentRequest { Op = AgentOps.FilesRead, Files = new FilesRequest { Path = "/workspace/notes/a.txt", MaxBytes = 1 << 20 } },
            data => { read.Write(data.Span); return ValueTask.CompletedTask; }, null, deadline.Token);
        Assert.Equal(content, read.ToArray());

        // tar.in: a tree lands in the guest, and the guest's shell sees it.
        var tarIn = new MemoryStream();
        using (var writer = new TarWriter(tarIn, TarEntryFormat.Pax, leaveOpen: true))
        {
            writer.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "tree/"));
            writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "tree/one.txt") { DataStream = new MemoryStream(Encoding.UTF8.GetBytes("one\n")) });
            writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "tree/two.txt") { DataStream = new MemoryStream(Encoding.UTF8.GetBytes("two\n")) });
        }

        tarIn.Position = 0;
        var unpacked = await vm.Agent.CallAsync(new AgentRequest { Op = AgentOps.TarIn, Tar = new TarRequest { Path = "/workspace/in" } }, null, tarIn, deadline.Token);
        Assert.True(unpacked.Tar?.Entries >= 2, $"tar.in unpacked {unpacked.Tar?.Entries} entries");
        var cat = await ExecAsync(vm, "cat /workspace/in/tree/one.txt /workspace/in/tree/two.txt", deadline.Token);
        Assert.Equal("one\ntwo\n", cat.Stdout);

        // tar.out: /workspace comes back with what exec, files.write and tar.in put there.
        var tarOut = new MemoryStream();
        await vm.Agent.CallAsync(new AgentRequest { Op = AgentOps.TarOut, Tar = new TarRequest { Path = "/workspace" } },
            data => { tarOut.Write(data.Span); return ValueTask.CompletedTask; }, null, deadline.Token);
        tarOut.Position = 0;
        var entries = new Dictionary<string, string>();
        using (var reader = new TarReader(tarOut))
        {
            while (reader.GetNextEntry() is { } entry)
            {
                if (entry.EntryType is TarEntryType.RegularFile or TarEntryType.V7RegularFile && entry.DataStream is { } data)
                {
                    entries[entry.Name.TrimStart('.', '/')] = new StreamReader(data).ReadToEnd();
                }
            }
        }

        Assert.Equal("made\n", entries.GetValueOrDefault("by-exec"));
        Assert.Equal(Encoding.UTF8.GetString(content), entries.GetValueOrDefault("notes/a.txt"));
        Assert.Equal("one\n", entries.GetValueOrDefault("in/tree/one.txt"));
        Assert.Equal("two\n", entries.GetValueOrDefault("in/tree/two.txt"));

        Figures.Record("any rootfs", $"rootfs with no libc ({files.Length} files, {dynamic.Count} dynamic ELF, static busybox only): exec, files.write/read and tar.in/out ({entries.Count} files back) served by the agent with its own loader");
    }

    private static async Task<(ExecExit Exit, string Stdout)> ExecAsync(QemuVm vm, string script, CancellationToken cancellationToken)
    {
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var exit = await vm.Agent.ExecAsync(new ExecRequest { Argv = ["/bin/sh", "-c", script], Cwd = "/workspace", TimeoutMs = 60_000 },
            data => { stdout.Append(Encoding.UTF8.GetString(data.Span)); return ValueTask.CompletedTask; },
            data => { stderr.Append(Encoding.UTF8.GetString(data.Span)); return ValueTask.CompletedTask; }, 1 << 20, cancellationToken);
        Assert.True(exit.ExitCode == 0, $"'{script}' exited {exit.ExitCode}\n{stdout}\n{stderr}");
        return (exit, stdout.ToString());
    }

    private static bool IsElf(string path)
    {
        Span<byte> magic = stackalloc byte[4];
        using var file = File.OpenRead(path);
        return file.Read(magic) == 4 && magic.SequenceEqual("\u007FELF"u8);
    }
}
