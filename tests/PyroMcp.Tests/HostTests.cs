using System.Text;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Vmm;

namespace PyroMcp.Tests;

public sealed class HostTests
{
    [Fact]
    public void BoundedTailKeepsTheLastBytesAndDropsControlCharacters()
    {
        var tail = new BoundedTail(16);
        tail.Append(Encoding.UTF8.GetBytes("first line\nsecond\u001b[31m line\nthird\n"));

        var text = tail.Text();
        Assert.True(Encoding.UTF8.GetByteCount(text) <= 16);
        Assert.EndsWith("third", text);
        Assert.DoesNotContain('\u001b', text);
        tail.Append(new byte[1_000_000]);
        Assert.Equal("", tail.Text());
    }

    [Fact]
    public void CpioEntriesAreNewcWithFourByteAlignment()
    {
        using var output = new MemoryStream();
        var cpio = new CpioWriter(output);
        cpio.Directory("bin");
        cpio.File("bin/tool", "abc"u8, executable: true);
        cpio.CharDevice("dev/console", 5, 1);
        cpio.Finish();
        var bytes = output.ToArray();
        var text = Encoding.ASCII.GetString(bytes);

        Assert.Equal(0, bytes.Length % 4);
        Assert.StartsWith("070701", text);
        var file = text.IndexOf("bin/tool\0", StringComparison.Ordinal);
        var header = text[(file - 110)..file];
        Assert.Equal("000081ed", header[14..22]);  // regular file, 0755
        Assert.Equal("00000003", header[54..62]);  // size
        Assert.Equal(0, text.IndexOf("abc", StringComparison.Ordinal) % 4);  // data starts 4-aligned
        Assert.Contains("abc", text);
        var dev = text.IndexOf("dev/console\0", StringComparison.Ordinal);
        var devHeader = text[(dev - 110)..dev];
        Assert.Equal("00002180", devHeader[14..22]);  // char device, 0600
        Assert.Equal("00000005", devHeader[78..86]);  // rdev major
        Assert.Contains("TRAILER!!!", text);
    }

    [Fact]
    public void IntegrityCatchesAnyWriteEvenWithTheMtimePutBack()
    {
        var dir = Directory.CreateTempSubdirectory("pyro-integrity-").FullName;
        try
        {
            var file = Path.Combine(dir, "image");
            var stamp = Path.Combine(dir, "image.stamp");
            File.WriteAllBytes(file, new byte[1 << 20]);
            var sha = FileIntegrity.HashAndStamp(file, stamp);
            Assert.True(FileIntegrity.Verify(file, stamp, sha));

            var mtime = File.GetLastWriteTimeUtc(file);
            using (var stream = new FileStream(file, FileMode.Open, FileAccess.Write))
            {
                stream.Position = 4096;
                stream.WriteByte(1);
            }

            File.SetLastWriteTimeUtc(file, mtime);
            Assert.False(FileIntegrity.Verify(file, stamp, sha));
            Assert.False(FileIntegrity.Verify(Path.Combine(dir, "missing"), stamp, sha));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void UnknownEnvironmentsNameTheKnownOnes()
    {
        var ex = Assert.Throws<PyroInputException>(() => EnvironmentCatalog.Resolve("alpine:3", PyroScratch.Options));
        Assert.Equal("unknown_environment", ex.Code);
        Assert.Contains("debian:12, debian:12-base, debian:12-build", ex.Message);
        Assert.Equal("debian_12-build-1.0.0", EnvironmentCatalog.Resolve("debian:12-build", PyroScratch.Options).DirectoryName);
    }

    [Fact]
    public void AskingForKvmWhereItCannotWorkIsAnErrorThatNamesTheWayOut()
    {
        var broken = new KvmProbe(true, true, true, false, "nested PVM");
        var ex = Assert.Throws<HostRequirementException>(() => broken.Choose(Accelerator.Kvm));
        Assert.Equal("kvm_unavailable", ex.Code);
        Assert.Contains("PYRO_ACCEL=tcg", ex.Message);
        Assert.DoesNotContain("--accel", ex.Message);
        Assert.Equal(Accelerator.Tcg, broken.Choose(Accelerator.Auto).Chosen);
        Assert.Equal(Accelerator.Kvm, new KvmProbe(true, true, true, true, "ok").Choose(Accelerator.Auto).Chosen);
        Assert.Equal(Accelerator.Tcg, new KvmProbe(true, true, true, true, "ok").Choose(Accelerator.Tcg).Chosen);
    }

    [Theory]
    [InlineData(new[] { "git", "--version" }, false)]
    [InlineData(new[] { "true" }, false)]
    [InlineData(new[] { "echo hi | wc -c" }, true)]
    [InlineData(new[] { "ls *.txt" }, true)]
    [InlineData(new[] { "sh", "-c", "echo hi" }, false)]
    public void OneStringWithShellSyntaxRunsThroughTheShell(string[] command, bool shell)
    {
        Assert.Equal(shell, new RunRequest { Environment = "debian:12", Command = command }.IsShellCommand);
    }

    [Fact]
    public void ProgressLinesQuoteValuesWithSpaces()
    {
        var line = new PyroProgress("pull", "repair", [new("environment", "debian:12"), new("reason", "a \"bad\" disk")]).ToString();
        Assert.Equal("[pull] phase=repair environment=debian:12 reason=\"a \\\"bad\\\" disk\"", line);
    }
}
