using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using PyroMcp.Protocol.Secrets;
using Xunit.Abstractions;

namespace PyroMcp.Tests;

/// <summary>
/// The secret redactor: every spelling of every value becomes <c>[REDACTED:NAME]</c>, nothing else
/// changes, bytes around a secret survive exactly, and chunked streams give exactly the one-shot
/// result however the input is split. The encodings the tests look for are computed here with the
/// framework's encoders, not taken from the redactor.
/// </summary>
public sealed class SecretRedactorTests(ITestOutputHelper output)
{
    private const string Token = "tok_9f8e7d6c5b4a3f2e1d0c";

    private static readonly JsonSerializerOptions Relaxed = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static SecretRedactor Redactor(params (string Name, string Value)[] secrets) =>
        new(secrets.Select(s => KeyValuePair.Create(s.Name, s.Value)));

    /// <summary>The ways the tests expect a value to be spelt: kind -> text.</summary>
    private static IEnumerable<(string Kind, string Text)> Encodings(string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        var base64 = Convert.ToBase64String(bytes);
        var escaped = Uri.EscapeDataString(value);
        var json = JsonSerializer.Serialize(value);
        yield return ("raw", value);
        yield return ("base64", base64);
        yield return ("base64 unpadded", base64.TrimEnd('='));
        yield return ("base64url", base64.TrimEnd('=').Replace('+', '-').Replace('/', '_'));
        yield return ("hex lower", Convert.ToHexStringLower(bytes));
        yield return ("hex upper", Convert.ToHexString(bytes));
        yield return ("url", escaped);
        yield return ("url lower", LowerPercent(escaped));
        yield return ("form", escaped.Replace("%20", "+", StringComparison.Ordinal));
        yield return ("json", json[1..^1]);
        yield return ("json relaxed", JsonSerializer.Serialize(value, Relaxed)[1..^1]);
    }

    private static string LowerPercent(string escaped)
    {
        var chars = escaped.ToCharArray();
        for (var i = 0; i + 2 < chars.Length; i++)
        {
            if (chars[i] == '%')
            {
                chars[i + 1] = char.ToLowerInvariant(chars[i + 1]);
                chars[i + 2] = char.ToLowerInvariant(chars[i + 2]);
            }
        }

        return new string(chars);
    }

    [Theory]
    [InlineData(Token)]
    [InlineData("pässwörd-ключ-🔑-秘密")]
    [InlineData("a \"quoted\" value\nwith 100% + more\\back\tslash & <tags>")]
    [InlineData("p@ss w0rd+/=?&#~!*()'")]
    public void EveryFormIsRedactedWithItsNameAndTheTextAroundIsKept(string value)
    {
        var redactor = Redactor(("API_TOKEN", value), ("OTHER", "unrelated-other-secret"));
        var kinds = 0;

        foreach (var (kind, text) in Encodings(value).DistinctBy(e => e.Text))
        {
            var redacted = redactor.Redact($"before <{text}> after");

            Assert.True(redacted == "before <[REDACTED:API_TOKEN]> after", $"{kind} form '{text}' gave '{redacted}'");
            Assert.True(redactor.Contains(text), kind);
            Assert.False(redactor.Contains(redacted), kind);
            kinds++;
        }

        Assert.True(kinds >= 4, $"only {kinds} distinct forms");
    }

    [Fact]
    public void Base64AtEachAlignmentInsideALongerStreamIsRedacted()
    {
        var value = Token + "/with+base64?chars>>>";
        var redactor = Redactor(("API_TOKEN", value));
        var random = new Random(7);
        var tried = 0;

        for (var prefix = 0; prefix < 6; prefix++)
        {
            for (var suffix = 0; suffix < 4; suffix++)
            {
                var around = new byte[prefix + suffix];
                random.NextBytes(around);
                var bytes = around[..prefix].Concat(Encoding.UTF8.GetBytes(value)).Concat(around[prefix..]).ToArray();
                var standard = Convert.ToBase64String(bytes);
                foreach (var stream in new[] { standard, standard.TrimEnd('=').Replace('+', '-').Replace('/', '_') })
                {
                    var redacted = redactor.Redact($"data: {stream};");

                    Assert.Contains("[REDACTED:API_TOKEN]", redacted);
                    Assert.False(redactor.Contains(redacted));
                    // What survives is the characters of the neighbouring bytes, the one on each side
                    // that mixes their bits with the value's, and the padding.
                    var survivors = redacted.Length - "data: [REDACTED:API_TOKEN];".Length;
                    Assert.True(survivors <= (8 * prefix + 5) / 6 + 1 + (8 * suffix + 5) / 6 + 1 + 2, redacted);
                    tried++;
                }
            }
        }

        Assert.Equal(48, tried);
    }

    [Fact]
    public void UnrelatedTextIsTheSameInstanceAndRedactingTwiceChangesNothingMore()
    {
        var redactor = Redactor(("API_TOKEN", Token), ("DB_PASSWORD", "hunter2-correct-horse"));
        var unrelated = "tok_ but not the token, 746f6b5f, dG9rX, hunter2 alone, %74%6F";
        var mixed = $"a={Token}&b={Uri.EscapeDataString("hunter2-correct-horse")}&c={Convert.ToHexString(Encoding.UTF8.GetBytes(Token))}";

        var once = redactor.Redact(mixed);
        var twice = redactor.Redact(once);

        Assert.Same(unrelated, redactor.Redact(unrelated));
        Assert.False(redactor.Contains(unrelated));
        Assert.Equal("a=[REDACTED:API_TOKEN]&b=[REDACTED:DB_PASSWORD]&c=[REDACTED:API_TOKEN]", once);
        Assert.Same(once, twice);
    }

    [Fact]
    public void WhenOneValueIsAPrefixOfAnotherTheLongestMatchWins()
    {
        var redactor = Redactor(("SHORT", "abcdef12"), ("LONG", "abcdef12345678"), ("MIDDLE", "ef12345"));

        var redacted = redactor.Redact("1 abcdef12345678 2 abcdef12 3 abcdef1234 4 xef12345");

        // At "abcdef1234" SHORT matches first (leftmost); MIDDLE would start later and overlaps.
        Assert.Equal("1 [REDACTED:LONG] 2 [REDACTED:SHORT] 3 [REDACTED:SHORT]34 4 x[REDACTED:MIDDLE]", redacted);
    }

    [Fact]
    public void AMultiLineValueIsRedactedAsATerminalPrintsIt()
    {
        var key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----\n";
        var redactor = Redactor(("KEY", key));

        Assert.Equal("$ cat key\r\n[REDACTED:KEY]$ ", redactor.Redact("$ cat key\r\n" + key.Replace("\n", "\r\n", StringComparison.Ordinal) + "$ "));
        Assert.Equal("[REDACTED:KEY]", redactor.Redact(key));
    }

    [Fact]
    public void TwoSecretsWithTheSameValueUseTheNameThatSortsFirst()
    {
        var redactor = Redactor(("ZETA", "shared-value-1"), ("ALPHA", "shared-value-1"), ("MU", "shared-value-1"));

        Assert.Equal(["ALPHA", "MU", "ZETA"], redactor.Names);
        Assert.Equal("x [REDACTED:ALPHA] y [REDACTED:ALPHA]", redactor.Redact($"x shared-value-1 y {Convert.ToBase64String("shared-value-1"u8)}"));
    }

    [Fact]
    public void ByteRedactionKeepsEveryOtherByteOfBinaryData()
    {
        var redactor = Redactor(("KEY", "ключ-secret"));
        byte[] before = [0x00, 0xff, 0xc3, 0x28, 0x80, 0xd0];   // invalid UTF-8, and a lead byte cut short
        byte[] after = [0xfe, 0x00, 0xe2, 0x82, 0x00, 0xff];
        var marker = "[REDACTED:KEY]"u8.ToArray();
        var value = Encoding.UTF8.GetBytes("ключ-secret");
        var hex = Encoding.ASCII.GetBytes(Convert.ToHexStringLower(value));

        var input = before.Concat(value).Concat(after).Concat(hex).Concat(before).ToArray();
        var redacted = redactor.Redact(input);

        Assert.Equal(before.Concat(marker).Concat(after).Concat(marker).Concat(before).ToArray(), redacted);

        var random = new Random(3);
        var noise = new byte[1 << 16];
        random.NextBytes(noise);
        Assert.Equal(noise, redactor.Redact(noise));
    }

    [Fact]
    public void ByteStreamsMatchAValueSplitInsideAUtf8Sequence()
    {
        var value = "pässwörd-ключ-🔑";
        var redactor = Redactor(("P", value));
        var input = Encoding.UTF8.GetBytes($"\u00ff start {value} end \u00ff");

        for (var split = 0; split <= input.Length; split++)
        {
            var stream = redactor.NewByteStream();
            var output = stream.Push(input.AsSpan(0, split)).Concat(stream.Push(input.AsSpan(split))).Concat(stream.Flush()).ToArray();

            Assert.Equal(Encoding.UTF8.GetBytes("\u00ff start [REDACTED:P] end \u00ff"), output);
        }
    }

    [Fact]
    public void HoldBackIsTheLengthOfTheSuffixThatMayStartAForm()
    {
        var redactor = Redactor(("API_TOKEN", Token));
        var hex = Convert.ToHexStringLower(Encoding.UTF8.GetBytes(Token));

        Assert.Equal(3, redactor.HoldBack("output: tok"));
        Assert.Equal(Token.Length - 1, redactor.HoldBack("x" + Token[..^1]));
        Assert.Equal(10, redactor.HoldBack("dump " + hex[..10]));
        Assert.Equal(0, redactor.HoldBack("output: tok!"));
        Assert.Equal(0, redactor.HoldBack(""));
        // A whole form is not a proper prefix of anything: nothing needs to wait.
        Assert.Equal(0, redactor.HoldBack("x" + Token));
        Assert.Equal(0, SecretRedactor.None.HoldBack("tok"));
    }

    [Fact]
    public void AStreamHoldsBackOnlyWhatMayStillBecomeAForm()
    {
        var redactor = Redactor(("API_TOKEN", Token), ("BIG", new string('q', 3000) + "!"));
        var stream = redactor.NewTextStream();

        var released = stream.Push("prompt$ ");
        Assert.Equal("prompt$ ", released);
        Assert.Equal(0, stream.Pending);

        released = stream.Push("echo tok_9f8");
        Assert.Equal("echo ", released);
        Assert.Equal(7, stream.Pending);

        released = stream.Push("e7d6c5b4a3f2e1d0c done");
        Assert.Equal("[REDACTED:API_TOKEN] done", released);
        Assert.Equal(0, stream.Pending);

        // A long run of what could be the start of the 3001-character value stays bounded, and
        // comes out whole at the end since the value never completes.
        var maxPending = 0;
        var all = new StringBuilder();
        for (var i = 0; i < 1000; i++)
        {
            all.Append(stream.Push(new string('q', 97)));
            maxPending = Math.Max(maxPending, stream.Pending);
        }

        all.Append(stream.Flush());
        // All of the run that may still be the value's first 3000 characters, no more.
        Assert.Equal(3000, maxPending);
        Assert.True(maxPending < redactor.LongestForm);
        Assert.Equal(new string('q', 97_000), all.ToString());
        Assert.Equal(0, stream.Pending);
    }

    [Fact]
    public void EveryTwoAndThreeWaySplitOfOverlappingSecretsGivesTheOneShotResult()
    {
        var redactor = Redactor(("A", "abcabcabd"), ("B", "abcab"), ("C", "cabd-x"), ("D", "bd-xyz"));
        var text = "abcabcabd-xyz abcabcabcabd-xyz abcab abcabcab cabd-x" + Convert.ToBase64String("abcabcabd"u8) + "abcabcab";
        var expected = redactor.Redact(text);
        var bytes = Encoding.UTF8.GetBytes(text);
        var tried = 0;

        for (var i = 0; i <= text.Length; i++)
        {
            for (var j = i; j <= text.Length; j++)
            {
                var stream = redactor.NewTextStream();
                var streamed = stream.Push(text[..i]) + stream.Push(text[i..j]) + stream.Push(text[j..]) + stream.Flush();
                Assert.Equal(expected, streamed);

                var byteStream = redactor.NewByteStream();
                byte[] streamedBytes = [.. byteStream.Push(bytes.AsSpan(0, i)), .. byteStream.Push(bytes.AsSpan(i, j - i)), .. byteStream.Push(bytes.AsSpan(j)), .. byteStream.Flush()];
                Assert.Equal(Encoding.UTF8.GetBytes(expected), streamedBytes);
                tried++;
            }
        }

        // Longest at a position, but leftmost first: in "abcabcabcabd", B at its start wins over A three characters on.
        Assert.Equal("[REDACTED:A]-xyz [REDACTED:B]c[REDACTED:B]d-xyz [REDACTED:B] [REDACTED:B]cab [REDACTED:C][REDACTED:A][REDACTED:B]cab", expected);
        Assert.Equal((text.Length + 1) * (text.Length + 2) / 2, tried);
    }

    [Fact]
    public void OneRedactorIsSharedByManyThreads()
    {
        var redactor = Redactor(("API_TOKEN", Token), ("DB", "hunter2-correct-horse"));
        var text = $"x {Token} y {Convert.ToHexString(Encoding.UTF8.GetBytes("hunter2-correct-horse"))} z";
        var bytes = Encoding.UTF8.GetBytes(text);
        var expected = "x [REDACTED:API_TOKEN] y [REDACTED:DB] z";
        var wrong = 0;

        // The byte matcher is built on first use: every thread races for it here.
        Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 8 }, _ =>
        {
            var stream = redactor.NewByteStream();
            var streamed = Encoding.UTF8.GetString([.. stream.Push(bytes.AsSpan(0, 7)), .. stream.Push(bytes.AsSpan(7)), .. stream.Flush()]);
            if (streamed != expected || Encoding.UTF8.GetString(redactor.Redact(bytes)) != expected || redactor.Redact(text) != expected)
            {
                Interlocked.Increment(ref wrong);
            }
        });

        Assert.Equal(0, wrong);
    }

    [Fact]
    public void AnEmptyRedactorPassesEverythingThroughUnchanged()
    {
        var empty = new SecretRedactor([]);
        var text = "anything " + Token;
        byte[] bytes = [0, 1, 0xff];

        Assert.True(SecretRedactor.None.IsEmpty);
        Assert.True(empty.IsEmpty);
        Assert.Empty(empty.Names);
        Assert.Same(text, SecretRedactor.None.Redact(text));
        Assert.Equal(bytes, SecretRedactor.None.Redact(bytes));
        Assert.False(SecretRedactor.None.Contains(text));
        var stream = SecretRedactor.None.NewTextStream();
        Assert.Same(text, stream.Push(text));
        Assert.Equal("", stream.Flush());
        var byteStream = SecretRedactor.None.NewByteStream();
        Assert.Equal(bytes, byteStream.Push(bytes));
        Assert.Empty(byteStream.Flush());
    }

    [Fact]
    public void AnEmptyOrOversizedValueIsRefused()
    {
        Assert.Throws<ArgumentException>(() => Redactor(("EMPTY", "")));
        Assert.Throws<ArgumentException>(() => Redactor(("HUGE", new string('x', 65_537))));
        Assert.Equal(["MAX"], Redactor(("MAX", new string('x', 65_536))).Names);
    }

    [Fact]
    public void ShortEncodedFormsAreNotSearchedButTheRawValueIs()
    {
        var redactor = Redactor(("PIN", "7x9"));

        // hex 377839 is 6 characters and stays; base64 N3g5 is 4 and would shred ordinary text.
        Assert.Equal("[REDACTED:PIN] [REDACTED:PIN] N3g5", redactor.Redact("7x9 377839 N3g5"));
    }

    [Fact]
    public void RandomSecretsFormsAndChunkingNeverLeakAndStreamsEqualTheOneShotResult()
    {
        const int Seed = 20261202;
        const int Cases = 2000;
        var random = new Random(Seed);
        long streams = 0;
        long forms = 0;
        long redactions = 0;
        var leaks = new List<string>();
        var clock = Stopwatch.StartNew();

        for (var c = 0; c < Cases; c++)
        {
            var secrets = RandomSecrets(random);
            var redactor = new SecretRedactor(secrets);
            forms += redactor.FormCount;
            var text = RandomText(random, secrets);
            var expected = redactor.Redact(text);
            var bytes = Encoding.UTF8.GetBytes(text);
            var expectedBytes = redactor.Redact(bytes);
            redactions += CountOf(expected, "[REDACTED:");

            if (redactor.Contains(expected))
            {
                leaks.Add($"case {c}: one-shot output still contains a form: {Show(expected)}");
            }

            foreach (var (name, value) in secrets)
            {
                foreach (var (kind, form) in Encodings(value))
                {
                    if ((kind == "raw" || form.Length >= 6) && expected.Contains(form, StringComparison.Ordinal))
                    {
                        leaks.Add($"case {c}: {kind} form of {name} survived in {Show(expected)}");
                    }
                }
            }

            if (!expectedBytes.AsSpan().SequenceEqual(Encoding.UTF8.GetBytes(expected)))
            {
                leaks.Add($"case {c}: bytes and text redaction differ for {Show(text)}");
            }

            for (var split = 0; split < 3; split++)
            {
                var textStream = redactor.NewTextStream();
                var streamed = new StringBuilder();
                foreach (var chunk in RandomChunks(random, text.Length))
                {
                    streamed.Append(textStream.Push(text.Substring(chunk.Start, chunk.Length)));
                    if (textStream.Pending > Math.Max(0, redactor.LongestForm - 1))
                    {
                        leaks.Add($"case {c}: text stream held back {textStream.Pending} characters");
                    }
                }

                streamed.Append(textStream.Flush());
                streams++;
                if (streamed.ToString() != expected)
                {
                    leaks.Add($"case {c}: text stream gave {Show(streamed.ToString())}, one-shot {Show(expected)}");
                }

                var byteStream = redactor.NewByteStream();
                var streamedBytes = new List<byte>();
                foreach (var chunk in RandomChunks(random, bytes.Length))
                {
                    streamedBytes.AddRange(byteStream.Push(bytes.AsSpan(chunk.Start, chunk.Length)));
                    if (byteStream.Pending > Math.Max(0, redactor.LongestForm * 3))
                    {
                        leaks.Add($"case {c}: byte stream held back {byteStream.Pending} bytes");
                    }
                }

                streamedBytes.AddRange(byteStream.Flush());
                streams++;
                if (!streamedBytes.ToArray().AsSpan().SequenceEqual(expectedBytes))
                {
                    leaks.Add($"case {c}: byte stream differs from the one-shot redaction of {Show(text)}");
                }
            }
        }

        output.WriteLine($"{streams} streams, {redactions} redactions in the one-shot outputs, {clock.ElapsedMilliseconds} ms");
        Figures.Record("secret redaction", $"{streams} chunked streams tried ({forms} forms), {leaks.Count} leaks");
        Assert.True(leaks.Count == 0, string.Join('\n', leaks.Take(10)));
        // The texts really were full of secrets (a generator that embeds nothing would pass above).
        Assert.True(redactions > 2 * Cases, $"only {redactions} redactions in {Cases} cases");
    }

    [Fact]
    public void ThirtyTwoSecretsOverFourMebibytesAreAllFound()
    {
        var secrets = Enumerable.Range(0, 32)
            .Select(i => KeyValuePair.Create($"SECRET_{i:D2}", $"value-{i:D2}-{Guid.NewGuid():N}"))
            .ToArray();
        var redactor = new SecretRedactor(secrets);
        var random = new Random(11);
        var text = new StringBuilder();
        var embedded = 0;
        while (text.Length < 4 << 20)
        {
            text.Append("log line ").Append(random.Next()).Append(" ok value-00 almost aGVsbG8= 6465616462656566\n");
            if (random.Next(200) == 0)
            {
                var (_, value) = secrets[random.Next(secrets.Length)];
                text.Append(Encodings(value).ElementAt(random.Next(11)).Text).Append('\n');
                embedded++;
            }
        }

        var input = text.ToString();
        var clock = Stopwatch.StartNew();
        var redacted = redactor.Redact(input);
        var textMs = clock.Elapsed.TotalMilliseconds;
        clock.Restart();
        var redactedBytes = redactor.Redact(Encoding.UTF8.GetBytes(input));
        var bytesMs = clock.Elapsed.TotalMilliseconds;

        output.WriteLine($"{input.Length / (1 << 20)} MiB, {redactor.FormCount} forms: text {textMs:F0} ms, bytes {bytesMs:F0} ms");
        Assert.Equal(embedded, CountOf(redacted, "[REDACTED:SECRET_"));
        Assert.Equal(Encoding.UTF8.GetBytes(redacted), redactedBytes);
        Assert.False(redactor.Contains(redacted));
    }

    private static int CountOf(string text, string what)
    {
        var count = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + 1, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    private static readonly string[] Alphabet =
        [.. "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ".Select(c => c.ToString()), " ", "\"", "\\", "%", "+", "/", "=", "\n", "é", "€", "🔑", "-", "_", "&"];

    private static string RandomValue(Random random, int min, int max)
    {
        var length = random.Next(min, max + 1);
        var value = new StringBuilder();
        while (value.Length < length)
        {
            value.Append(Alphabet[random.Next(Alphabet.Length)]);
        }

        return value.ToString();
    }

    private static List<KeyValuePair<string, string>> RandomSecrets(Random random)
    {
        var secrets = new List<KeyValuePair<string, string>>();
        var count = random.Next(1, 7);
        while (secrets.Count < count)
        {
            var name = $"S{secrets.Count}";
            string value;
            var related = secrets.Count > 0 ? secrets[random.Next(secrets.Count)].Value : null;
            switch (random.Next(6))
            {
                case 0 when related is not null:
                    value = related;                                    // the same value under two names
                    break;
                case 1 when related is not null:
                    value = related + RandomValue(random, 1, 8);         // extends another value
                    break;
                case 2 when related is not null && related.Length > 4:
                    value = related[..random.Next(3, related.Length)];   // a prefix of another value
                    break;
                case 3 when related is not null:
                    value = related[(related.Length / 2)..] + RandomValue(random, 3, 8); // overlaps another's end
                    break;
                default:
                    value = RandomValue(random, 3, 40);
                    break;
            }

            // Values that the marker itself contains, or that cut a surrogate pair, are not the
            // point here (the marker would re-match; a lone surrogate has no UTF-8).
            if (value.Length < 3 || char.IsHighSurrogate(value[^1]) || char.IsLowSurrogate(value[0])
                || Enumerable.Range(0, 7).Any(i => $"[REDACTED:S{i}]".Contains(value, StringComparison.Ordinal)))
            {
                continue;
            }

            secrets.Add(KeyValuePair.Create(name, value));
        }

        return secrets;
    }

    private static string RandomText(Random random, List<KeyValuePair<string, string>> secrets)
    {
        var text = new StringBuilder();
        var pieces = random.Next(1, 12);
        for (var p = 0; p < pieces; p++)
        {
            var value = secrets[random.Next(secrets.Count)].Value;
            var encodings = Encodings(value).ToArray();
            var form = encodings[random.Next(encodings.Length)].Text;
            switch (random.Next(6))
            {
                case 0:
                    text.Append(RandomValue(random, 0, 30));
                    break;
                case 1:
                    // Base64 of the value between other bytes, at a random alignment.
                    var around = new byte[random.Next(0, 7)];
                    random.NextBytes(around);
                    var cut = random.Next(around.Length + 1);
                    text.Append(Convert.ToBase64String([.. around[..cut], .. Encoding.UTF8.GetBytes(value), .. around[cut..]]));
                    break;
                case 2:
                    // The start of a form, cut short (never inside a surrogate pair).
                    var length = random.Next(1, form.Length + 1);
                    if (char.IsHighSurrogate(form[length - 1]))
                    {
                        length--;
                    }

                    text.Append(form, 0, length);
                    break;
                default:
                    text.Append(form);
                    break;
            }
        }

        return text.ToString();
    }

    private static List<(int Start, int Length)> RandomChunks(Random random, int total)
    {
        var chunks = new List<(int, int)>();
        var mode = random.Next(3);
        var at = 0;
        while (at < total)
        {
            var length = mode switch
            {
                0 => 1,
                1 => random.Next(0, 5),
                _ => random.Next(0, 64),
            };
            length = Math.Min(length, total - at);
            chunks.Add((at, length));
            at += length;
        }

        chunks.Add((total, 0));
        return chunks;
    }

    private static string Show(string text) =>
        JsonSerializer.Serialize(text.Length > 300 ? text[..300] + "..." : text);
}
