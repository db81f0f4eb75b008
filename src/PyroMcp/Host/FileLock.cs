namespace PyroMcp.Host;

/// <summary>An exclusive advisory lock (flock) on a file, held until disposed or until the process dies.</summary>
internal sealed class FileLock : IDisposable
{
    private readonly FileStream _stream;

    private FileLock(FileStream stream) => _stream = stream;

    internal static async Task<FileLock> AcquireAsync(string path, Action? onWait = null, CancellationToken cancellationToken = default)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var waited = false;
        while (true)
        {
            if (TryAcquire(path) is { } held)
            {
                return held;
            }

            if (!waited)
            {
                onWait?.Invoke();
                waited = true;
            }

            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The lock if it is free now, else null.</summary>
    internal static FileLock? TryAcquire(string path)
    {
        try
        {
            // On Unix, .NET takes FileShare.None as flock(LOCK_EX | LOCK_NB). Private: 0600.
            return new FileLock(new FileStream(path, new FileStreamOptions
            {
                Mode = FileMode.OpenOrCreate,
                Access = FileAccess.ReadWrite,
                Share = FileShare.None,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            }));
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Whether some process holds the lock on an existing file now; a missing file is not held.</summary>
    internal static bool IsHeld(string path)
    {
        try
        {
            using var probe = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
            return false;
        }
        catch (FileNotFoundException)
        {
            return false;
        }
        catch (DirectoryNotFoundException)
        {
            return false;
        }
        catch (IOException)
        {
            return true;
        }
    }

    public void Dispose() => _stream.Dispose();
}
