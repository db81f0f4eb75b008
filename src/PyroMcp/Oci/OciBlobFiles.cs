using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace PyroMcp.Oci;

/// <summary>Writing blobs to disk so that a file with a blob's name always has that blob's digest.</summary>
internal static class OciBlobFiles
{
    internal static void CheckBytes(ReadOnlySpan<byte> bytes, OciDescriptor descriptor)
    {
        var digest = OciDigest.Of(bytes);
        if (bytes.Length != descriptor.Size || digest != descriptor.Digest)
        {
            throw Mismatch(descriptor, digest, bytes.Length);
        }
    }

    internal static OciException Mismatch(OciDescriptor descriptor, string actual, long bytes)
        => new("oci_digest_mismatch", $"blob {descriptor.Digest} ({descriptor.Size} bytes) arrived as {actual} ({bytes} bytes): it was damaged or replaced on the way. Nothing was kept from it.");

    internal static bool IsDiskFull(IOException ex) => ex.HResult == 28 || ex.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase);

    internal static OciException DiskFull(string path, IOException ex)
        => new("oci_disk_full", $"the disk holding {Path.GetDirectoryName(path)} is full. Free space (pyro env prune removes unused environments and blobs) and retry.", ex);

    /// <summary>
    /// Streams <paramref name="source"/> onto <paramref name="partial"/> (after its first
    /// <paramref name="have"/> bytes, which are hashed first), then moves it to
    /// <paramref name="destination"/> if size and sha256 match. A mismatch deletes the partial
    /// file; a stalled or broken source is <c>oci_registry_unreachable</c> with the partial file kept.
    /// </summary>
    internal static async Task WriteVerifiedAsync(Stream source, OciDescriptor descriptor, string partial, string destination, long have,
        Action<long>? onBytes, TimeSpan? readTimeout, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        try
        {
            var file = new FileStream(partial, have > 0 ? FileMode.Open : FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.Asynchronous);
            await using var fileScope = file.ConfigureAwait(false);
            if (have > 0)
            {
                long read = 0;
                while (read < have)
                {
                    var n = await file.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, have - read)), cancellationToken).ConfigureAwait(false);
                    if (n == 0)
                    {
                        break;
                    }

                    hash.AppendData(buffer, 0, n);
                    read += n;
                }

                file.SetLength(read);
                have = read;
            }

            var total = have;
            var step = Math.Max(8L << 20, descriptor.Size / 20);
            var next = total + step;
            onBytes?.Invoke(total);
            while (true)
            {
                int n;
                try
                {
                    using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    if (readTimeout is { } t)
                    {
                        cts.CancelAfter(t);
                    }

                    n = await source.ReadAsync(buffer, cts.Token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is IOException or HttpRequestException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
                {
                    await file.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                    throw new OciException("oci_registry_unreachable", $"the transfer of blob {descriptor.Digest} broke off at byte {total} of {descriptor.Size} ({ex.GetType().Name}).", ex);
                }

                if (n == 0)
                {
                    break;
                }

                if (total + n > descriptor.Size)
                {
                    file.SetLength(0);
                    throw Mismatch(descriptor, "more data than its size", total + n);
                }

                await file.WriteAsync(buffer.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
                hash.AppendData(buffer, 0, n);
                total += n;
                if (total >= next || total == descriptor.Size)
                {
                    next = total + step;
                    onBytes?.Invoke(total);
                }
            }

            if (total < descriptor.Size)
            {
                throw new OciException("oci_registry_unreachable", $"the transfer of blob {descriptor.Digest} ended at byte {total} of {descriptor.Size}.");
            }

            var digest = "sha256:" + Convert.ToHexStringLower(hash.GetHashAndReset());
            if (digest != descriptor.Digest)
            {
                file.SetLength(0);
                throw Mismatch(descriptor, digest, total);
            }

            await file.FlushAsync(cancellationToken).ConfigureAwait(false);
            file.Flush(flushToDisk: true);
        }
        catch (OciException ex) when (ex.Code == "oci_digest_mismatch")
        {
            File.Delete(partial);
            throw;
        }
        catch (IOException ex) when (IsDiskFull(ex))
        {
            File.Delete(partial);
            throw DiskFull(partial, ex);
        }

        File.Move(partial, destination, overwrite: true);
    }
}

/// <summary>Registry credentials from the container tools' auth files (<c>auths[host].auth</c>, base64 user:password).</summary>
internal static class OciAuthFiles
{
    internal static IEnumerable<string> DefaultPaths()
    {
        if (Environment.GetEnvironmentVariable("REGISTRY_AUTH_FILE") is { Length: > 0 } explicitFile)
        {
            yield return explicitFile;
        }

        if (Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") is { Length: > 0 } xdg)
        {
            yield return Path.Combine(xdg, "containers", "auth.json");
        }

        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        yield return Path.Combine(Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { Length: > 0 } c ? c : Path.Combine(home, ".config"), "containers", "auth.json");
        yield return Path.Combine(home, ".docker", "config.json");
    }

    /// <summary>The first file with an entry for <paramref name="registry"/>; null when none has one.</summary>
    internal static (string User, string Password)? Find(string registry, IReadOnlyList<string>? paths)
    {
        foreach (var path in paths ?? DefaultPaths())
        {
            try
            {
                if (!File.Exists(path) || new FileInfo(path).Length > 4 * 1024 * 1024)
                {
                    continue;
                }

                using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
                if (!doc.RootElement.TryGetProperty("auths", out var auths) || auths.ValueKind != JsonValueKind.Object)
                {
                    continue;
                }

                foreach (var entry in auths.EnumerateObject())
                {
                    var key = entry.Name;
                    var schemeEnd = key.IndexOf("://", StringComparison.Ordinal);
                    key = (schemeEnd >= 0 ? key[(schemeEnd + 3)..] : key).Split('/')[0];
                    if (!key.Equals(registry, StringComparison.OrdinalIgnoreCase)
                        || !entry.Value.TryGetProperty("auth", out var auth) || auth.ValueKind != JsonValueKind.String)
                    {
                        continue;
                    }

                    var decoded = Encoding.UTF8.GetString(Convert.FromBase64String(auth.GetString()!));
                    var colon = decoded.IndexOf(':', StringComparison.Ordinal);
                    if (colon > 0)
                    {
                        return (decoded[..colon], decoded[(colon + 1)..]);
                    }
                }
            }
            catch (Exception ex) when (ex is JsonException or FormatException or IOException or UnauthorizedAccessException)
            {
                // An unreadable auth file is the same as none; its content is never echoed.
            }
        }

        return null;
    }
}
