using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace PyroMcp.TestKit;

/// <summary>
/// Writes tar archives byte by byte, headers a well-behaved writer never makes included: sizes
/// that lie, pax records that rename an entry after its header, GNU long names, base-256 sizes.
/// <see cref="Entries"/> counts the entries written (a pax or long-name record belongs to the
/// entry after it).
/// </summary>
internal sealed class RawTar
{
    private readonly MemoryStream _bytes = new();

    internal int Entries { get; private set; }

    internal byte[] ToArray(bool end = true)
    {
        if (end)
        {
            _bytes.Write(new byte[1024]);
        }

        return _bytes.ToArray();
    }

    internal RawTar File(string name, string content, int mode = 0x1A4, bool gnu = false) => File(name, Encoding.UTF8.GetBytes(content), mode, gnu);

    internal RawTar File(string name, byte[] content, int mode = 0x1A4, bool gnu = false)
    {
        Entry(name, '0', content.Length, mode: mode, gnu: gnu);
        return Data(content);
    }

    internal RawTar Directory(string name, int mode = 0x1ED) => Entry(name, '5', 0, mode: mode);

    internal RawTar Symlink(string name, string target, bool gnu = false) => Entry(name, '2', 0, target, gnu: gnu);

    internal RawTar HardLink(string name, string target) => Entry(name, '1', 0, target);

    internal RawTar Device(string name, char type, int major, int minor) => Entry(name, type, 0, major: major, minor: minor);

    /// <summary>One header; the data (if any) is up to the caller.</summary>
    internal RawTar Entry(string name, char type, long size, string linkName = "", int mode = 0x1A4, bool gnu = false, int major = 0, int minor = 0, byte[]? sizeField = null)
    {
        if (type is not ('x' or 'g' or 'L' or 'K'))
        {
            Entries++;
        }

        _bytes.Write(Header(name, type, size, linkName, mode, gnu, major, minor, sizeField));
        return this;
    }

    /// <summary>Data padded to the next 512-byte block.</summary>
    internal RawTar Data(byte[] content)
    {
        _bytes.Write(content);
        _bytes.Write(new byte[(512 - (content.Length % 512)) % 512]);
        return this;
    }

    /// <summary>A pax extended header ('x', or 'g' for global) holding <paramref name="records"/>.</summary>
    internal RawTar Pax(params (string Key, string Value)[] records) => Pax('x', records);

    internal RawTar Pax(char type, params (string Key, string Value)[] records)
    {
        var data = new MemoryStream();
        foreach (var (key, value) in records)
        {
            data.Write(PaxRecord(key, value));
        }

        Entry("PaxHeaders/entry", type, data.Length);
        return Data(data.ToArray());
    }

    /// <summary>A GNU long name ('L') or long link name ('K'), NUL-terminated as GNU tar writes it.</summary>
    internal RawTar GnuLong(char type, string value)
    {
        var data = Encoding.UTF8.GetBytes(value + "\0");
        Entry("././@LongLink", type, data.Length, gnu: true);
        return Data(data);
    }

    /// <summary>A metadata header that claims <paramref name="claimed"/> bytes and carries only a few.</summary>
    internal RawTar HugeMetadata(char type, long claimed, bool base256 = false)
    {
        byte[]? field = null;
        if (base256)
        {
            field = new byte[12];
            field[0] = 0x80;
            System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(field.AsSpan(4), claimed);
        }

        Entry("././@LongLink", type, claimed, gnu: type is 'L' or 'K', sizeField: field);
        return Data(Encoding.UTF8.GetBytes("20 path=../../evil\n"));
    }

    internal static byte[] PaxRecord(string key, string value)
    {
        var body = Encoding.UTF8.GetByteCount($" {key}={value}\n");
        var length = body + body.ToString(System.Globalization.CultureInfo.InvariantCulture).Length;
        if (length.ToString(System.Globalization.CultureInfo.InvariantCulture).Length != body.ToString(System.Globalization.CultureInfo.InvariantCulture).Length)
        {
            length++;
        }

        return Encoding.UTF8.GetBytes($"{length} {key}={value}\n");
    }

    private static byte[] Header(string name, char type, long size, string linkName, int mode, bool gnu, int major, int minor, byte[]? sizeField)
    {
        var h = new byte[512];
        Put(h, 0, 100, Encoding.UTF8.GetBytes(name));
        Octal(h, 100, 8, mode);
        Octal(h, 108, 8, 0);
        Octal(h, 116, 8, 0);
        if (sizeField is not null)
        {
            sizeField.CopyTo(h, 124);
        }
        else
        {
            Octal(h, 124, 12, size);
        }

        Octal(h, 136, 12, 1_700_000_000);
        h[156] = (byte)type;
        Put(h, 157, 100, Encoding.UTF8.GetBytes(linkName));
        Put(h, 257, 8, gnu ? "ustar  \0"u8.ToArray() : "ustar\u000000"u8.ToArray());
        Octal(h, 329, 8, major);
        Octal(h, 337, 8, minor);
        for (var i = 148; i < 156; i++)
        {
            h[i] = (byte)' ';
        }

        var sum = h.Sum(b => (int)b);
        Put(h, 148, 8, Encoding.ASCII.GetBytes(Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 "));
        return h;
    }

    private static void Put(byte[] header, int offset, int length, byte[] value) => value.AsSpan(0, Math.Min(length, value.Length)).CopyTo(header.AsSpan(offset));

    private static void Octal(byte[] header, int offset, int length, long value)
        => Put(header, offset, length, Encoding.ASCII.GetBytes(Convert.ToString(value, 8).PadLeft(length - 1, '0') + "\0"));
}

/// <summary>One archive of the hostile corpus: what it tries, and whether the whole archive may be refused.</summary>
internal sealed record HostileArchive(string Name, byte[] Bytes, int Entries, bool HugeHeader = false);

/// <summary>
/// The hostile tar corpus both directions are fed. <c>outside</c> is a directory next to the
/// destination and <c>elsewhere</c> one far from it; every archive tries to write, link or
/// rename something into one of them.
/// </summary>
internal static class HostileTarCorpus
{
    internal static IReadOnlyList<HostileArchive> Build(string outside, string elsewhere)
    {
        var list = new List<HostileArchive>();
        void Add(string name, RawTar tar, bool huge = false, bool end = true) => list.Add(new HostileArchive(name, tar.ToArray(end), tar.Entries, huge));

        Add("traversal", new RawTar()
            .File("../evil", "up one").File("../outside/evil", "into the sibling").File("a/../../evil", "mid-path")
            .File("./../evil2", "dot first").File("a/b/../../../evil3", "deep").File("fine.txt", "legitimate"));
        Add("absolute names", new RawTar()
            .File(Path.Combine(outside, "abs-evil"), "absolute").File(Path.Combine(elsewhere, "evil"), "absolute elsewhere")
            .Directory("/").File("//double-slash", "x"));
        Add("link then write through it", new RawTar()
            .Symlink("abs", outside).File("abs/evil", "through an absolute link")
            .Symlink("rel", "../outside").File("rel/evil", "through a relative link")
            .Symlink("deep/er/up", "../../..").File("deep/er/up/outside/evil", "through a climbing link")
            .Symlink("victim-link", Path.Combine(outside, "sentinel")).File("victim-link", "write over the link's target"));
        Add("link to a directory, then a file under it; link chains", new RawTar()
            .Directory("real/").Symlink("alias", "real").File("alias/file", "through an inside link")
            .Symlink("a/b/x", "../..").Symlink("a/b/y", "x/..").File("a/b/y/outside/evil", "through a chain")
            .Symlink("a/b/z", "y/outside").File("a/b/z/evil", "through a longer chain")
            .Symlink("loop", "loop").File("loop/evil", "through a loop"));
        Add("hard links out and in", new RawTar()
            .File("inside", "x").HardLink("hard-in", "inside")
            .HardLink("hard-out", Path.Combine(outside, "sentinel")).HardLink("hard-up", "../outside/sentinel")
            .HardLink("hard-then-write", Path.Combine(outside, "sentinel")).File("hard-then-write", "overwrite the sentinel"));
        Add("devices and fifos", new RawTar()
            .Device("mem", '3', 1, 1).Device("disk", '4', 8, 0).Device("pipe", '6', 0, 0).Device("../outside/dev", '3', 1, 3));
        Add("pax path and linkpath overrides", new RawTar()
            .Pax(("path", "../outside/pax-evil")).File("benign", "renamed by pax")
            .Pax(("path", Path.Combine(outside, "pax-abs"))).File("benign2", "renamed absolute")
            .Pax(("linkpath", outside)).Symlink("benign-link", "harmless").File("benign-link/evil", "through a pax link")
            .Pax(("path", "ok/../../outside/pax-dir")).Directory("benign-dir/")
            .Pax('g', ("path", "../outside/global")).File("after-global", "global headers rename nothing"));
        Add("GNU long names", new RawTar()
            .GnuLong('L', "../../outside/gnu-evil").File("short", "renamed by L", gnu: true)
            .GnuLong('L', Path.Combine(outside, "gnu-abs")).File("short2", "renamed absolute", gnu: true)
            .GnuLong('K', outside).Symlink("gnulink", "harmless", gnu: true).File("gnulink/evil", "through a K link")
            .GnuLong('L', "long/" + new string('n', 200)).File("short3", "a legitimate long name", gnu: true));
        Add("GNU sparse entry", new RawTar()
            .GnuLong('L', "../outside/sparse-evil").Entry("sparse", 'S', 512, gnu: true).Data(new byte[512])
            .GnuLong('L', "sparse-ok").Entry("sparse", 'S', 512, gnu: true).Data(new byte[512]));
        Add("GNU sparse entry without a long name", new RawTar().Entry("sparse", 'S', 512).Data(new byte[512]));
        var map = Encoding.ASCII.GetBytes("1\n1099511627264\n512\n").Concat(new byte[512 - 20]).Concat(new byte[512]).ToArray();
        Add("pax sparse 1.0 expanding to 1 TiB", new RawTar()
            .Pax(("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"), ("GNU.sparse.name", "../outside/sparse-pax"), ("GNU.sparse.realsize", "1099511627776"))
            .File("GNUSparseFile.0/a", map)
            .Pax(("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"), ("GNU.sparse.name", "sparse-bomb"), ("GNU.sparse.realsize", "1099511627776"))
            .File("GNUSparseFile.0/b", map));
        Add("name over PATH_MAX (pax)", new RawTar().Pax(("path", string.Concat(Enumerable.Repeat("a/", 2500)) + "f")).File("x", "long"), huge: true);
        Add("name over PATH_MAX (GNU)", new RawTar().GnuLong('L', new string('n', 5000)).File("x", "long", gnu: true), huge: true);
        Add("name over NAME_MAX", new RawTar().Pax(("path", new string('n', 300))).File("x", "long component").File("after", "y"));
        Add("duplicate names", new RawTar()
            .File("f", "first").File("f", "second").Symlink("f", "elsewhere").Directory("f/")
            .Directory("d/").File("d", "file over a directory").Symlink("d", outside).File("d/inner", "under d"));
        Add("pax header of 1 GiB", new RawTar().HugeMetadata('x', 1L << 30), huge: true, end: false);
        Add("global pax header of 1 TiB (base-256)", new RawTar().HugeMetadata('g', 1L << 40, base256: true), huge: true, end: false);
        Add("GNU long name of 1 GiB", new RawTar().HugeMetadata('L', 1L << 30), huge: true, end: false);
        Add("GNU long link of 8 GiB", new RawTar().HugeMetadata('K', 8L << 30), huge: true, end: false);
        Add("pax header one byte over 64 KiB", new RawTar().HugeMetadata('x', (64 * 1024) + 1), huge: true, end: false);

        // A pax size record of 0 makes the "data" of the next entry its successor's header: a
        // guard that framed by the header's size would skip right past the huge one hidden there.
        var hidden = new RawTar().HugeMetadata('x', 1L << 30).ToArray(end: false);
        var smuggle = new RawTar().Pax(("size", "0")).Entry("cover", '0', hidden.Length).Data(hidden);
        Add("pax size record hiding a 1 GiB header", smuggle, huge: true, end: false);

        var bomb = new RawTar();
        for (var i = 0; i < 6000; i++)
        {
            bomb.File($"bomb/{i:D5}", "");
        }

        for (var i = 0; i < 4000; i++)
        {
            bomb.Device($"fifo-{i:D5}", '6', 0, 0);
        }

        Add("bomb of 10000 tiny entries", bomb);
        return list;
    }
}

/// <summary>
/// Every name under some directories with what lstat and the content say about it, to prove an
/// operation left them exactly as they were: no file added, removed, changed, re-moded or linked to.
/// </summary>
internal static class TreeSnapshot
{
    internal static SortedDictionary<string, string> Take(params string[] roots)
    {
        var snapshot = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var root in roots)
        {
            snapshot[root] = Describe(root);
            foreach (var path in System.IO.Directory.EnumerateFileSystemEntries(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }))
            {
                snapshot[path] = Describe(path);
            }
        }

        return snapshot;
    }

    /// <summary>Paths added, removed or changed between two snapshots.</summary>
    internal static List<string> Differences(SortedDictionary<string, string> before, SortedDictionary<string, string> after)
        => before.Keys.Union(after.Keys)
            .Where(k => !before.TryGetValue(k, out var b) || !after.TryGetValue(k, out var a) || a != b)
            .ToList();

    private static string Describe(string path)
    {
        var buffer = new byte[144];
        if (LStat(path, buffer) != 0)
        {
            return "gone";
        }

        var mode = BitConverter.ToUInt32(buffer, 24);
        var links = BitConverter.ToUInt64(buffer, 16);
        var size = BitConverter.ToInt64(buffer, 48);
        var mtime = BitConverter.ToInt64(buffer, 88) + "." + BitConverter.ToInt64(buffer, 96);
        var ctime = BitConverter.ToInt64(buffer, 104) + "." + BitConverter.ToInt64(buffer, 112);
        var content = (mode & 0xF000) switch
        {
            0x8000 => Convert.ToHexString(SHA256.HashData(System.IO.File.ReadAllBytes(path))),
            0xA000 => new FileInfo(path).LinkTarget,
            _ => "",
        };
        return $"{Convert.ToString(mode, 8)} links={links} size={size} mtime={mtime} ctime={ctime} {content}";
    }

    [DllImport("libc", EntryPoint = "lstat", SetLastError = true)]
    private static extern int LStat(string path, byte[] buffer);
}
