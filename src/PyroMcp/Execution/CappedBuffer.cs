using System.Text;

namespace PyroMcp;

/// <summary>Collects a command's output up to a cap (<see cref="PyroOptions.MaxOutputBytes"/>).</summary>
/// <remarks>In the root namespace rather than <c>PyroMcp.Execution</c>: file reads and host-compat runs cap with it too.</remarks>
internal sealed class CappedBuffer(long cap)
{
    private readonly MemoryStream _data = new();

    internal void Append(ReadOnlySpan<byte> data)
    {
        var room = (int)Math.Max(0, Math.Min(data.Length, cap - _data.Length));
        Overflowed |= room < data.Length;
        _data.Write(data[..room]);
    }

    /// <summary>More arrived than the cap allowed.</summary>
    internal bool Overflowed { get; private set; }

    internal string Text => Encoding.UTF8.GetString(_data.GetBuffer(), 0, (int)_data.Length);

    internal byte[] Bytes => _data.ToArray();

    /// <summary>A sink that keeps what it gets here (up to the cap) and passes everything on to <paramref name="sink"/>.</summary>
    internal Func<ReadOnlyMemory<byte>, ValueTask> Tee(Func<ReadOnlyMemory<byte>, ValueTask>? sink)
        => async data =>
        {
            Append(data.Span);
            if (sink is not null)
            {
                await sink(data).ConfigureAwait(false);
            }
        };
}
