using System.Globalization;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;

namespace PyroMcp.Patching;

/// <summary>
/// git's binary patch format: "GIT binary patch", then "literal N" or "delta N" and lines of
/// base85-encoded zlib data, each prefixed with a letter giving its decoded length (A-Z = 1-26,
/// a-z = 27-52), ended by an empty line. Bytes that cannot travel as text lines (not UTF-8, NUL)
/// travel this way, so a patch stays exact and <c>git apply</c> reads it.
/// </summary>
internal static class GitBinary
{
    private const string Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";
    private const int BytesPerLine = 52;

    private static readonly sbyte[] Values = BuildValues();

    /// <summary>zlib's encoding of no bytes: header, an empty final block, the Adler-32 of nothing.</summary>
    private static readonly byte[] EmptyZlib = [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01];

    /// <summary>The blob id git gives these bytes (SHA-1 of "blob N\0" + bytes), as 40 hex digits.</summary>
    internal static string BlobId(ReadOnlySpan<byte> content)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
        sha.AppendData(Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"blob {content.Length}\0")));
        sha.AppendData(content);
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>The all-zero id git writes for the side of a creation or deletion that does not exist.</summary>
    internal const string NullId = "0000000000000000000000000000000000000000";

    /// <summary>Appends "literal N", the encoded lines and the empty line that ends them.</summary>
    internal static void AppendLiteral(StringBuilder output, ReadOnlySpan<byte> content)
    {
        output.Append("literal ").Append(content.Length.ToString(CultureInfo.InvariantCulture)).Append('\n');
        using var compressed = new MemoryStream();
        using (var zlib = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            zlib.Write(content);
        }

        // ZLibStream writes nothing at all for no input; git needs a real (empty) zlib stream.
        var data = compressed.Length > 0 ? compressed.GetBuffer().AsSpan(0, (int)compressed.Length) : EmptyZlib;
        Span<char> digits = stackalloc char[5];
        for (var start = 0; start < data.Length; start += BytesPerLine)
        {
            var chunk = data.Slice(start, Math.Min(BytesPerLine, data.Length - start));
            output.Append(chunk.Length <= 26 ? (char)('A' + chunk.Length - 1) : (char)('a' + chunk.Length - 27));
            for (var i = 0; i < chunk.Length; i += 4)
            {
                uint word = 0;
                for (var j = 0; j < 4; j++)
                {
                    word = (word << 8) | (i + j < chunk.Length ? chunk[i + j] : 0u);
                }

                for (var d = 4; d >= 0; d--)
                {
                    digits[d] = Alphabet[(int)(word % 85)];
                    word /= 85;
                }

                output.Append(digits);
            }

            output.Append('\n');
        }

        output.Append('\n');
    }

    /// <summary>Decodes one data line; null when it is not one (the message says why).</summary>
    internal static byte[]? DecodeLine(string line, out string? error)
    {
        error = null;
        if (line.Length < 6)
        {
            error = "a binary data line is too short";
            return null;
        }

        var first = line[0];
        var length = first is >= 'A' and <= 'Z' ? first - 'A' + 1 : first is >= 'a' and <= 'z' ? first - 'a' + 27 : -1;
        if (length < 0 || line.Length - 1 != (length + 3) / 4 * 5)
        {
            error = "a binary data line has the wrong length for its length letter";
            return null;
        }

        var result = new byte[(length + 3) / 4 * 4];
        for (int i = 1, o = 0; i < line.Length; i += 5, o += 4)
        {
            ulong word = 0;
            for (var d = 0; d < 5; d++)
            {
                var ch = line[i + d];
                var value = ch < 128 ? Values[ch] : -1;
                if (value < 0)
                {
                    error = $"'{ch}' is not a base85 digit";
                    return null;
                }

                word = word * 85 + (ulong)value;
            }

            if (word > uint.MaxValue)
            {
                error = "a base85 group is out of range";
                return null;
            }

            result[o] = (byte)(word >> 24);
            result[o + 1] = (byte)(word >> 16);
            result[o + 2] = (byte)(word >> 8);
            result[o + 3] = (byte)word;
        }

        return result.AsSpan(0, length).ToArray();
    }

    /// <summary>Inflates zlib data that must come to exactly <paramref name="expected"/> bytes; null if it does not.</summary>
    internal static byte[]? Inflate(byte[] compressed, long expected)
    {
        // Deflate expands at most about 1032:1, so a size the data cannot reach is refused before it is allocated.
        if (expected > (compressed.LongLength * 1032) + 64)
        {
            return null;
        }

        try
        {
            using var zlib = new ZLibStream(new MemoryStream(compressed), CompressionMode.Decompress);
            var result = new byte[expected];
            var filled = 0;
            while (filled < result.Length)
            {
                var read = zlib.Read(result, filled, result.Length - filled);
                if (read == 0)
                {
                    return null;
                }

                filled += read;
            }

            // One more byte means the data is longer than its header says.
            return zlib.Read(new byte[1], 0, 1) == 0 ? result : null;
        }
        catch (InvalidDataException)
        {
            return null;
        }
    }

    /// <summary>
    /// Applies a git delta (base size, result size, then copy and insert instructions) to
    /// <paramref name="source"/>. Every size and offset is checked before use; null with
    /// <paramref name="error"/> set when the delta does not fit the source.
    /// </summary>
    internal static byte[]? ApplyDelta(ReadOnlySpan<byte> source, ReadOnlySpan<byte> delta, long maxResult, out string? error)
    {
        var p = 0;
        var baseSize = Varint(delta, ref p);
        var resultSize = Varint(delta, ref p);
        if (baseSize < 0 || resultSize < 0)
        {
            error = "the delta header is malformed";
            return null;
        }

        if (baseSize != source.Length)
        {
            error = $"the delta is for a file of {baseSize} bytes but the file has {source.Length}";
            return null;
        }

        if (resultSize > maxResult)
        {
            error = $"the delta makes a file of {resultSize} bytes, more than the limit of {maxResult}";
            return null;
        }

        var result = new byte[resultSize];
        var o = 0;
        while (p < delta.Length)
        {
            var op = delta[p++];
            if ((op & 0x80) != 0)
            {
                long offset = 0, size = 0;
                for (var bit = 0; bit < 4; bit++)
                {
                    if ((op & (1 << bit)) != 0)
                    {
                        if (p >= delta.Length) { error = "the delta ends inside a copy"; return null; }
                        offset |= (long)delta[p++] << (8 * bit);
                    }
                }

                for (var bit = 0; bit < 3; bit++)
                {
                    if ((op & (0x10 << bit)) != 0)
                    {
                        if (p >= delta.Length) { error = "the delta ends inside a copy"; return null; }
                        size |= (long)delta[p++] << (8 * bit);
                    }
                }

                if (size == 0)
                {
                    size = 0x10000;
                }

                if (offset + size > source.Length || o + size > result.Length)
                {
                    error = "a copy of the delta reaches past the end of the file";
                    return null;
                }

                source.Slice((int)offset, (int)size).CopyTo(result.AsSpan(o));
                o += (int)size;
            }
            else if (op != 0)
            {
                if (p + op > delta.Length || o + op > result.Length)
                {
                    error = "an insert of the delta reaches past its end";
                    return null;
                }

                delta.Slice(p, op).CopyTo(result.AsSpan(o));
                p += op;
                o += op;
            }
            else
            {
                error = "the delta has a reserved instruction (0)";
                return null;
            }
        }

        if (o != result.Length)
        {
            error = $"the delta makes {o} bytes but promises {result.Length}";
            return null;
        }

        error = null;
        return result;
    }

    private static long Varint(ReadOnlySpan<byte> data, ref int p)
    {
        long value = 0;
        for (var shift = 0; shift < 63; shift += 7)
        {
            if (p >= data.Length)
            {
                return -1;
            }

            var b = data[p++];
            value |= (long)(b & 0x7f) << shift;
            if ((b & 0x80) == 0)
            {
                return value;
            }
        }

        return -1;
    }

    private static sbyte[] BuildValues()
    {
        var values = new sbyte[128];
        Array.Fill(values, (sbyte)-1);
        for (var i = 0; i < Alphabet.Length; i++)
        {
            values[Alphabet[i]] = (sbyte)i;
        }

        return values;
    }
}
