using System.Text;

namespace PyroMcp.Host;

/// <summary>Writes a newc cpio archive, the format the kernel unpacks as an initramfs. Timestamps are 0 so the archive is reproducible.</summary>
internal sealed class CpioWriter(Stream output)
{
    private uint _inode = 1;

    internal void Directory(string name) => Entry(name, 0x4000 | 0x1ed, ReadOnlySpan<byte>.Empty);

    internal void File(string name, ReadOnlySpan<byte> data, bool executable)
        => Entry(name, 0x8000 | (executable ? 0x1ed : 0x1a4), data);

    internal void CharDevice(string name, uint major, uint minor) => Entry(name, 0x2000 | 0x180, ReadOnlySpan<byte>.Empty, major, minor);

    internal void Finish()
    {
        Entry("TRAILER!!!", 0, ReadOnlySpan<byte>.Empty);
        output.Flush();
    }

    private void Entry(string name, int mode, ReadOnlySpan<byte> data, uint rdevMajor = 0, uint rdevMinor = 0)
    {
        var nameBytes = Encoding.UTF8.GetBytes(name + "\0");
        var header = new StringBuilder("070701");
        foreach (var field in new uint[] { _inode++, (uint)mode, 0, 0, 1, 0, (uint)data.Length, 0, 0, rdevMajor, rdevMinor, (uint)nameBytes.Length, 0 })
        {
            header.Append(field.ToString("x8"));
        }

        output.Write(Encoding.ASCII.GetBytes(header.ToString()));
        output.Write(nameBytes);
        Pad(110 + nameBytes.Length);
        output.Write(data);
        Pad(data.Length);
    }

    private void Pad(int length)
    {
        var pad = (4 - (length % 4)) % 4;
        for (var i = 0; i < pad; i++)
        {
            output.WriteByte(0);
        }
    }
}
