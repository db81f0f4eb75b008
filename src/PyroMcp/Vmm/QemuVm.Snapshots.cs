using System.Security.Cryptography;
using System.Text.Json.Nodes;
using PyroMcp.Host;
using PyroMcp.Protocol;

namespace PyroMcp.Vmm;

/// <summary>
/// A VM saved to files: QEMU's migration stream of its memory and devices, and a copy of its disk
/// taken at the same instant. Digests, when given, are checked before the guest runs: a template
/// that does not match its manifest is never resumed.
/// </summary>
internal sealed record SavedVm(string MemoryPath, string DiskPath, string? MemorySha256, string? DiskSha256);

/// <summary>The image's bytes are not the ones its manifest names: it was damaged on disk.</summary>
internal sealed class SavedVmDamagedException(string message) : Exception(message);

internal sealed partial class QemuVm
{
    internal const string ControlSocketName = "control.sock";
    internal const string MemoryFileName = "memory.bin";
    internal const string DiskFileName = "disk.qcow2";
    private QmpClient? _control;

    /// <summary>Whether this VM was restored from a saved image rather than booted.</summary>
    internal bool Restored { get; private set; }

    /// <summary>Milliseconds from QEMU's spawn until the agent answered (boot or restore).</summary>
    internal long ReadyMs => _helloMs;

    /// <summary>What this VM must not share with any sibling restored from the same image (see docs/architecture.md, "Templates").</summary>
    private ResumeRequest NewIdentity(NetworkPolicy network) => new()
    {
        Hostname = "pyro-" + Id,
        Entropy = Convert.ToBase64String(RandomNumberGenerator.GetBytes(64)),
        MachineId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)),
        RefreshNetwork = network.HasEgress(),
    };

    private async Task RestoreMemoryAsync(string controlPath, SavedVm image, Task exited, CancellationToken cancellationToken)
    {
        _control = await QmpClient.ConnectAsync(controlPath, exited, cancellationToken).ConfigureAwait(false);
        using var memory = File.OpenHandle(image.MemoryPath, FileMode.Open, FileAccess.Read);
        // The digest is read beside QEMU's load (the page cache serves both) and checked before cont.
        var digest = image.MemorySha256 is null ? Task.FromResult<string?>(null) : Task.Run(() => (string?)FileIntegrity.Sha256(image.MemoryPath), cancellationToken);
        await _control.SendFdAsync("image", memory, cancellationToken).ConfigureAwait(false);
        await _control.ExecuteAsync("migrate-incoming", new JsonObject { ["uri"] = "fd:image" }, cancellationToken).ConfigureAwait(false);
        await _control.WaitIncomingAsync(cancellationToken).ConfigureAwait(false);
        if (await digest.ConfigureAwait(false) is { } actual && !string.Equals(actual, image.MemorySha256, StringComparison.Ordinal))
        {
            throw new SavedVmDamagedException($"the memory image {image.MemoryPath} does not match its manifest's SHA-256");
        }

        await _control.ExecuteAsync("cont", null, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Stops the guest and saves it into <paramref name="directory"/> (memory.bin, disk.qcow2,
    /// both 0600). The VM stays paused: <see cref="ContinueAsync"/> resumes it, dispose ends it.
    /// </summary>
    internal async Task<SavedVm> SaveAsync(string directory, CancellationToken cancellationToken)
    {
        _control ??= await QmpClient.ConnectAsync(Path.Combine(Directory, ControlSocketName), Exited, cancellationToken).ConfigureAwait(false);
        await _control.ExecuteAsync("stop", null, cancellationToken).ConfigureAwait(false);
        var memoryPath = Path.Combine(directory, MemoryFileName);
        using (var memory = new FileStream(memoryPath, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
        {
            await _control.SendFdAsync("image", memory.SafeFileHandle, cancellationToken).ConfigureAwait(false);
        }

        // The default cap (32 MiB/s) throttles a live migration; a stopped guest has nothing to race.
        await _control.ExecuteAsync("migrate-set-parameters", new JsonObject { ["max-bandwidth"] = 16L << 30 }, cancellationToken).ConfigureAwait(false);
        try
        {
            await _control.ExecuteAsync("migrate", new JsonObject { ["uri"] = "fd:image" }, cancellationToken).ConfigureAwait(false);
            await _control.WaitMigrationAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (VmBootException ex)
        {
            var stderr = _qemuStderr.Text();
            throw new VmBootException(ex.Code, ex.Message + (stderr.Length > 0 ? "\n--- QEMU stderr (tail) ---\n" + stderr : ""), stderr, _console.Text(), ex);
        }
        // A completed migration has flushed and let go of the disk: the copy is the memory's disk.
        var diskPath = Path.Combine(directory, DiskFileName);
        await CopyVerifiedAsync(Path.Combine(Directory, DiskFileName), diskPath, null, cancellationToken).ConfigureAwait(false);
        return new SavedVm(memoryPath, diskPath, null, null);
    }

    /// <summary>Runs the guest again after <see cref="SaveAsync"/> (QEMU takes its disk back first).</summary>
    internal async Task ContinueAsync(CancellationToken cancellationToken)
    {
        if (_control is not null)
        {
            await _control.ExecuteAsync("cont", null, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Copies a file to a new 0600 file, checking its SHA-256 on the way when one is given; returns the digest.</summary>
    internal static async Task<string> CopyVerifiedAsync(string source, string destination, string? expectedSha256, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        File.Delete(destination);
        var input = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: false);
        await using (input.ConfigureAwait(false))
        {
            var output = new FileStream(destination, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite });
            await using var closeOutput = output.ConfigureAwait(false);
            var buffer = new byte[1 << 20];
            int read;
            while ((read = await input.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
            {
                hash.AppendData(buffer, 0, read);
                await output.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
            }
        }

        var actual = Convert.ToHexStringLower(hash.GetHashAndReset());
        if (expectedSha256 is not null && !string.Equals(actual, expectedSha256, StringComparison.Ordinal))
        {
            File.Delete(destination);
            throw new SavedVmDamagedException($"the disk image {source} does not match its manifest's SHA-256");
        }

        return actual;
    }
}
