using System.Text;

namespace PyroMcp.Vmm;

/// <summary>Keeps the last bytes written to it. The guest can print without end; the host keeps a fixed amount.</summary>
internal sealed class BoundedTail(int capacity)
{
    private readonly byte[] _buffer = new byte[capacity];
    private readonly Lock _lock = new();
    private long _written;

    internal void Append(ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            if (data.Length >= capacity)
            {
                data[^capacity..].CopyTo(_buffer);
                _written = capacity;
                return;
            }

            foreach (var b in data)
            {
                _buffer[_written++ % capacity] = b;
            }
        }
    }

    /// <summary>The kept bytes as text, at most <paramref name="lines"/> lines, control characters other than newline removed.</summary>
    internal string Text(int lines = 25)
    {
        byte[] copy;
        lock (_lock)
        {
            var count = (int)Math.Min(_written, capacity);
            copy = new byte[count];
            var start = _written > capacity ? (int)(_written % capacity) : 0;
            for (var i = 0; i < count; i++)
            {
                copy[i] = _buffer[(start + i) % capacity];
            }
        }

        var text = Encoding.UTF8.GetString(copy);
        var clean = new StringBuilder(text.Length);
        foreach (var c in text)
        {
            if (c == '\n' || c == '\t' || !char.IsControl(c))
            {
                clean.Append(c);
            }
        }

        var all = clean.ToString().Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0).ToArray();
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }
}
