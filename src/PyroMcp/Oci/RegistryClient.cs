using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace PyroMcp.Oci;

/// <summary>
/// The OCI distribution protocol against one repository: manifests and blobs, pulled with
/// resume and digest checks, pushed in resumable chunks. Authenticates anonymously first, then
/// as the registry's 401 asks (Basic, or a Bearer token from its realm).
/// </summary>
internal sealed partial class RegistryClient : IDisposable
{
    private const int MaxManifestBytes = 4 * 1024 * 1024;
    private readonly OciReference _reference;
    private readonly OciClientOptions _options;
    private readonly HttpClient _http;
    private readonly Uri _base;
    private AuthenticationHeaderValue? _auth;
    private bool _credentialsLoaded;
    private (string User, string Password)? _credentials;

    internal RegistryClient(OciReference reference, OciClientOptions options)
    {
        _reference = reference;
        _options = options;
        var plain = reference.IsLoopback || options.InsecureRegistries.Contains(reference.Registry.ToLowerInvariant()) || options.InsecureRegistries.Contains(reference.Host);
        _base = new Uri($"{(plain ? "http" : "https")}://{reference.Registry}/v2/{reference.Repository}/");
        _http = new HttpClient(new SocketsHttpHandler
        {
            // A loopback registry is this machine's: a proxy from the environment must not see it.
            UseProxy = !reference.IsLoopback,
            AllowAutoRedirect = true,
            ConnectTimeout = options.RequestTimeout,
            AutomaticDecompression = DecompressionMethods.None,
        })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("pyro", Pyro.CatalogVersion));
    }

    /// <summary><c>http(s)://REGISTRY/v2/REPOSITORY/</c>: plain HTTP for loopback and the operator's insecure list only.</summary>
    internal Uri BaseUri => _base;

    /// <summary>Requests made (tests count them).</summary>
    internal int Requests { get; private set; }

    /// <summary>Times an interrupted upload asked the registry where it stood.</summary>
    internal int Resumes { get; private set; }

    public void Dispose() => _http.Dispose();

    /// <summary>GETs a manifest or index by tag or digest; verifies it against the digest when asked by one.</summary>
    internal async Task<(byte[] Bytes, string MediaType, string Digest)> GetManifestAsync(string reference, CancellationToken cancellationToken)
    {
        using var response = await SendAsync(() =>
        {
            var r = new HttpRequestMessage(HttpMethod.Get, new Uri(_base, "manifests/" + reference));
            foreach (var type in OciMediaTypes.Accept)
            {
                r.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(type));
            }

            return r;
        }, _options.RequestTimeout, cancellationToken).ConfigureAwait(false);
        if (response.StatusCode == HttpStatusCode.NotFound)
        {
            throw new OciException("oci_not_found", $"{Describe(reference)} is not in the registry (no such repository or tag).");
        }

        Expect(response, HttpStatusCode.OK, "manifest GET");
        var bytes = await ReadLimitedAsync(response, MaxManifestBytes, "manifest", cancellationToken).ConfigureAwait(false);
        var digest = OciDigest.Of(bytes);
        if (OciDigest.IsValid(reference) && digest != reference)
        {
            throw new OciException("oci_digest_mismatch", $"the registry sent a manifest whose sha256 is {digest}, not the {reference} asked for.");
        }

        var mediaType = OciManifests.MediaTypeOf(bytes, response.Content.Headers.ContentType?.MediaType);
        return (bytes, mediaType, digest);
    }

    /// <summary>GETs a small blob (a config) into memory, digest-checked.</summary>
    internal async Task<byte[]> GetSmallBlobAsync(OciDescriptor descriptor, long maxBytes, CancellationToken cancellationToken)
    {
        if (descriptor.Size > maxBytes)
        {
            throw new OciException("oci_image_invalid", $"blob {descriptor.Digest} claims {descriptor.Size} bytes, more than the {maxBytes} allowed for it.");
        }

        using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, new Uri(_base, "blobs/" + descriptor.Digest)), _options.RequestTimeout, cancellationToken).ConfigureAwait(false);
        if (response.StatusCode == HttpStatusCode.NotFound)
        {
            throw new OciException("oci_not_found", $"blob {descriptor.Digest} of {_reference} is not in the registry.");
        }

        Expect(response, HttpStatusCode.OK, "blob GET");
        var bytes = await ReadLimitedAsync(response, (int)maxBytes, "blob", cancellationToken).ConfigureAwait(false);
        OciBlobFiles.CheckBytes(bytes, descriptor);
        return bytes;
    }

    /// <summary>
    /// Downloads a blob to <paramref name="destination"/> through <c>destination.partial</c>,
    /// resuming a partial file with a Range request and after a dropped connection, hashing
    /// while it streams. The destination appears only with the right digest.
    /// </summary>
    internal async Task FetchBlobAsync(OciDescriptor descriptor, string destination, Action<long>? onBytes, CancellationToken cancellationToken)
    {
        var partial = destination + ".partial";
        var failures = 0;
        while (true)
        {
            var have = File.Exists(partial) ? new FileInfo(partial).Length : 0;
            if (have > descriptor.Size)
            {
                File.Delete(partial);
                have = 0;
            }

            try
            {
                using var response = await SendAsync(() =>
                {
                    var r = new HttpRequestMessage(HttpMethod.Get, new Uri(_base, "blobs/" + descriptor.Digest));
                    if (have > 0)
                    {
                        r.Headers.Range = new RangeHeaderValue(have, null);
                    }

                    return r;
                }, _options.RequestTimeout, cancellationToken).ConfigureAwait(false);
                if (response.StatusCode == HttpStatusCode.NotFound)
                {
                    throw new OciException("oci_not_found", $"blob {descriptor.Digest} of {_reference} is not in the registry.");
                }

                if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable)
                {
                    File.Delete(partial);
                    if (++failures > _options.MaxRetries)
                    {
                        throw new OciException("oci_registry_unreachable", $"the registry keeps refusing the range of blob {descriptor.Digest}.");
                    }

                    continue;
                }

                if (response.StatusCode == HttpStatusCode.OK)
                {
                    have = 0;
                }
                else
                {
                    Expect(response, HttpStatusCode.PartialContent, "blob GET");
                }

                var body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
                await using var bodyScope = body.ConfigureAwait(false);
                await OciBlobFiles.WriteVerifiedAsync(body, descriptor, partial, destination, have, onBytes, _options.RequestTimeout, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (OciException ex) when (ex.Code == "oci_registry_unreachable" && ++failures <= _options.MaxRetries)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(200 * failures), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Whether the registry already has the blob.</summary>
    internal async Task<bool> HasBlobAsync(string digest, CancellationToken cancellationToken)
    {
        using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Head, new Uri(_base, "blobs/" + digest)), _options.RequestTimeout, cancellationToken, push: true).ConfigureAwait(false);
        return response.StatusCode == HttpStatusCode.OK;
    }

    /// <summary>
    /// Uploads a blob in chunks (POST, PATCH with Content-Range, PUT ?digest=). A failed chunk
    /// asks the upload's status and resumes from what the registry has. False when the blob was
    /// already there and nothing was sent.
    /// </summary>
    internal async Task<bool> PushBlobAsync(Stream content, string digest, long size, Action<long>? onBytes, CancellationToken cancellationToken)
    {
        if (await HasBlobAsync(digest, cancellationToken).ConfigureAwait(false))
        {
            return false;
        }

        var location = await StartUploadAsync(cancellationToken).ConfigureAwait(false);
        var buffer = new byte[(int)Math.Max(1, Math.Min(_options.ChunkSize, size))];
        long offset = 0;
        var failures = 0;
        var resume = false;
        while (resume || offset < size)
        {
            if (resume)
            {
                try
                {
                    (location, offset) = await ResumePointAsync(location, cancellationToken).ConfigureAwait(false);
                    resume = false;
                }
                catch (OciException ex) when (ex.Code == "oci_registry_unreachable")
                {
                    await FailedAsync().ConfigureAwait(false);
                    continue;
                }

                continue;
            }

            content.Position = offset;
            var want = (int)Math.Min(buffer.Length, size - offset);
            var n = await content.ReadAtLeastAsync(buffer.AsMemory(0, want), want, throwOnEndOfStream: true, cancellationToken).ConfigureAwait(false);
            try
            {
                var start = offset;
                using var response = await SendAsync(() =>
                {
                    var body = new ByteArrayContent(buffer, 0, n);
                    body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                    body.Headers.TryAddWithoutValidation("Content-Range", string.Create(CultureInfo.InvariantCulture, $"{start}-{start + n - 1}"));
                    return new HttpRequestMessage(HttpMethod.Patch, location) { Content = body };
                }, _options.UploadTimeout, cancellationToken, push: true).ConfigureAwait(false);
                if (response.StatusCode == HttpStatusCode.Accepted)
                {
                    location = LocationOf(response, location);
                    offset += n;
                    failures = 0;
                    onBytes?.Invoke(offset);
                    continue;
                }

                if (response.StatusCode != HttpStatusCode.RequestedRangeNotSatisfiable && (int)response.StatusCode < 500)
                {
                    Expect(response, HttpStatusCode.Accepted, "upload PATCH");
                }
            }
            catch (OciException ex) when (ex.Code == "oci_registry_unreachable")
            {
                // Resumed from what the registry has.
            }

            await FailedAsync().ConfigureAwait(false);
            resume = true;
        }

        async Task FailedAsync()
        {
            if (++failures > _options.MaxRetries)
            {
                throw new OciException("oci_registry_unreachable", $"the upload of {digest} to {_reference.Registry} failed {failures} times in a row; gave up at byte {offset} of {size}.");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(200 * failures), cancellationToken).ConfigureAwait(false);
        }

        using (var done = await SendAsync(() => new HttpRequestMessage(HttpMethod.Put, WithQuery(location, "digest=" + Uri.EscapeDataString(digest))), _options.UploadTimeout, cancellationToken, push: true).ConfigureAwait(false))
        {
            if (done.StatusCode == HttpStatusCode.BadRequest)
            {
                throw new OciException("oci_digest_mismatch", $"the registry refused the upload of {digest}: what it received has another digest.");
            }

            Expect(done, HttpStatusCode.Created, "upload PUT");
        }

        return true;
    }

    /// <summary>PUTs a manifest under a tag (or digest).</summary>
    internal async Task PutManifestAsync(string reference, byte[] manifest, string mediaType, CancellationToken cancellationToken)
    {
        using var response = await SendAsync(() =>
        {
            var body = new ByteArrayContent(manifest);
            body.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
            return new HttpRequestMessage(HttpMethod.Put, new Uri(_base, "manifests/" + reference)) { Content = body };
        }, _options.UploadTimeout, cancellationToken, push: true).ConfigureAwait(false);
        Expect(response, HttpStatusCode.Created, "manifest PUT");
    }

    private async Task<Uri> StartUploadAsync(CancellationToken cancellationToken)
    {
        using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Post, new Uri(_base, "blobs/uploads/")), _options.RequestTimeout, cancellationToken, push: true).ConfigureAwait(false);
        Expect(response, HttpStatusCode.Accepted, "upload POST");
        return LocationOf(response, null);
    }

    /// <summary>Where an interrupted upload stands: the registry's <c>Range</c>, or a new upload from 0 when it forgot this one.</summary>
    private async Task<(Uri Location, long Offset)> ResumePointAsync(Uri location, CancellationToken cancellationToken)
    {
        try
        {
            using var response = await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, location), _options.RequestTimeout, cancellationToken, push: true).ConfigureAwait(false);
            if (response.StatusCode == HttpStatusCode.NoContent && response.Headers.TryGetValues("Range", out var values)
                && RangePattern().Match(values.First()) is { Success: true } m)
            {
                var end = long.Parse(m.Groups["end"].Value, CultureInfo.InvariantCulture);
                return (LocationOf(response, location), end < 0 ? 0 : end + 1);
            }
        }
        finally
        {
            Resumes++;
        }

        return (await StartUploadAsync(cancellationToken).ConfigureAwait(false), 0);
    }

    private async Task<HttpResponseMessage> SendAsync(Func<HttpRequestMessage> make, TimeSpan timeout, CancellationToken cancellationToken, bool push = false)
    {
        for (var attempt = 0; ; attempt++)
        {
            using var request = make();
            if (_auth is not null)
            {
                request.Headers.Authorization = _auth;
            }

            HttpResponseMessage response;
            using (var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                cts.CancelAfter(timeout);
                try
                {
                    Requests++;
                    response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token).ConfigureAwait(false);
                }
                catch (HttpRequestException ex)
                {
                    throw new OciException("oci_registry_unreachable", $"{_reference.Registry} did not answer {request.Method} ({ex.HttpRequestError}: {ex.Message}).", ex);
                }
                catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
                {
                    throw new OciException("oci_registry_unreachable", $"{_reference.Registry} did not answer {request.Method} within {timeout.TotalSeconds:0} s (PYRO_OCI_REQUEST_TIMEOUT_SECONDS / PYRO_OCI_UPLOAD_TIMEOUT_SECONDS).", ex);
                }
            }

            if (response.StatusCode == HttpStatusCode.Unauthorized && attempt < 2)
            {
                var challenges = response.Headers.WwwAuthenticate.ToList();
                response.Dispose();
                await AuthenticateAsync(challenges, push, cancellationToken).ConfigureAwait(false);
                continue;
            }

            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
            {
                response.Dispose();
                throw AuthRefused(_credentials is null ? "it wants credentials and none are set" : "it refused the credentials given");
            }

            return response;
        }
    }

    private OciException AuthRefused(string why) => new("oci_auth_refused",
        $"{_reference.Registry} refused access to {_reference.Repository}: {why}. Set OCI_REGISTRY_USERNAME and OCI_REGISTRY_PASSWORD, or log in with 'skopeo login {_reference.Registry}' (REGISTRY_AUTH_FILE, ~/.config/containers/auth.json or ~/.docker/config.json).");

    private async Task AuthenticateAsync(List<AuthenticationHeaderValue> challenges, bool push, CancellationToken cancellationToken)
    {
        var credentials = Credentials();
        if (challenges.FirstOrDefault(c => c.Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase)) is { } bearer)
        {
            var p = ChallengeParameters(bearer.Parameter ?? "");
            if (!p.TryGetValue("realm", out var realmText) || !Uri.TryCreate(realmText, UriKind.Absolute, out var realm) || realm.Scheme is not ("https" or "http"))
            {
                throw AuthRefused("its token challenge names no usable realm");
            }

            var scope = p.TryGetValue("scope", out var s) ? s : $"repository:{_reference.Repository}:{(push ? "pull,push" : "pull")}";
            var query = new StringBuilder();
            if (p.TryGetValue("service", out var service))
            {
                query.Append("service=").Append(Uri.EscapeDataString(service));
            }

            query.Append(query.Length > 0 ? "&" : "").Append("scope=").Append(Uri.EscapeDataString(scope));
            using var request = new HttpRequestMessage(HttpMethod.Get, WithQuery(realm, query.ToString()));
            // Credentials travel to the realm only over TLS, or to this machine.
            var realmLocal = realm.IsLoopback || _options.InsecureRegistries.Contains(realm.Authority.ToLowerInvariant());
            if (credentials is { } c && (realm.Scheme == "https" || realmLocal))
            {
                request.Headers.Authorization = Basic(c);
            }

            using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            cts.CancelAfter(_options.RequestTimeout);
            HttpResponseMessage response;
            try
            {
                Requests++;
                response = await _http.SendAsync(request, cts.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is HttpRequestException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                throw new OciException("oci_registry_unreachable", $"the token service of {_reference.Registry} did not answer ({ex.GetType().Name}).", ex);
            }

            using (response)
            {
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    throw AuthRefused($"its token service answered HTTP {(int)response.StatusCode}");
                }

                var bytes = await ReadLimitedAsync(response, 1024 * 1024, "token", cancellationToken).ConfigureAwait(false);
                string? token = null;
                try
                {
                    using var doc = JsonDocument.Parse(bytes);
                    foreach (var name in new[] { "token", "access_token" })
                    {
                        if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty(name, out var t) && t.ValueKind == JsonValueKind.String && t.GetString() is { Length: > 0 } v)
                        {
                            token = v;
                            break;
                        }
                    }
                }
                catch (JsonException)
                {
                    // Reported below.
                }

                _auth = new AuthenticationHeaderValue("Bearer", token ?? throw AuthRefused("its token service sent no token"));
            }

            return;
        }

        if (challenges.Any(c => c.Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase)))
        {
            var basic = Basic(credentials ?? throw AuthRefused("it wants credentials and none are set"));
            if (_auth?.Parameter == basic.Parameter)
            {
                throw AuthRefused("it refused the credentials given");
            }

            _auth = basic;
            return;
        }

        throw AuthRefused("it answered 401 without a challenge pyro knows (Basic or Bearer)");
    }

    private static AuthenticationHeaderValue Basic((string User, string Password) c)
        => new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(c.User + ":" + c.Password)));

    private (string User, string Password)? Credentials()
    {
        if (!_credentialsLoaded)
        {
            _credentialsLoaded = true;
            _credentials = _options.Username is { } u ? (u, _options.Password ?? "") : OciAuthFiles.Find(_reference.Registry, _options.AuthFiles);
        }

        return _credentials;
    }

    private static Dictionary<string, string> ChallengeParameters(string text)
        => ChallengePattern().Matches(text).ToDictionary(m => m.Groups["k"].Value.ToLowerInvariant(), m => m.Groups["v"].Value);

    private string Describe(string reference) => $"{_reference.Registry}/{_reference.Repository}{(OciDigest.IsValid(reference) ? "@" : ":")}{reference}";

    private void Expect(HttpResponseMessage response, HttpStatusCode expected, string what)
    {
        if (response.StatusCode == expected)
        {
            return;
        }

        var code = (int)response.StatusCode;
        throw code >= 500
            ? new OciException("oci_registry_unreachable", $"{_reference.Registry} failed the {what} with HTTP {code}.")
            : new OciException("oci_registry_error", $"{_reference.Registry} refused the {what} of {_reference.Repository} with HTTP {code}{ErrorBody(response)}.");
    }

    /// <summary>The start of the registry's error document (its codes and messages; pyro's credentials are never in it).</summary>
    private static string ErrorBody(HttpResponseMessage response)
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            var text = response.Content.ReadAsStringAsync(cts.Token).GetAwaiter().GetResult();
            text = new string([.. text.Take(300).Where(c => !char.IsControl(c))]).Trim();
            return text.Length == 0 ? "" : ": " + text;
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException)
        {
            return "";
        }
    }

    private static Uri LocationOf(HttpResponseMessage response, Uri? previous)
    {
        var location = response.Headers.Location ?? previous ?? throw new OciException("oci_registry_error", "the registry started an upload without saying where (no Location header).");
        return location.IsAbsoluteUri ? location : new Uri(response.RequestMessage!.RequestUri!, location);
    }

    private static Uri WithQuery(Uri uri, string query)
        => new(uri.AbsoluteUri + (string.IsNullOrEmpty(uri.Query) ? "?" : "&") + query);

    private static async Task<byte[]> ReadLimitedAsync(HttpResponseMessage response, int max, string what, CancellationToken cancellationToken)
    {
        if (response.Content.Headers.ContentLength > max)
        {
            throw new OciException("oci_image_invalid", $"the registry's {what} is larger than the {max} bytes allowed.");
        }

        try
        {
            var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            await using var streamScope = stream.ConfigureAwait(false);
            using var buffer = new MemoryStream();
            var chunk = new byte[81920];
            int n;
            while ((n = await stream.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
            {
                if (buffer.Length + n > max)
                {
                    throw new OciException("oci_image_invalid", $"the registry's {what} is larger than the {max} bytes allowed.");
                }

                buffer.Write(chunk, 0, n);
            }

            return buffer.ToArray();
        }
        catch (Exception ex) when (ex is IOException or HttpRequestException)
        {
            throw new OciException("oci_registry_unreachable", $"the registry's connection broke while sending the {what}.", ex);
        }
    }

    [GeneratedRegex(@"(?<k>[A-Za-z_]+)=""(?<v>[^""]*)""")]
    private static partial Regex ChallengePattern();

    [GeneratedRegex(@"^(?:bytes )?0-(?<end>-?[0-9]+)")]
    private static partial Regex RangePattern();
}
