namespace PyroMcp.Host;

/// <summary>An exclusive advisory lock on a file, held until disposed: two pulls of one environment take turns.</summary>
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
            try
            {
                // On Unix, .NET takes FileShare.None as flock(LOCK_EX).
                return new FileLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
            }
            catch (IOException)
            {
                if (!waited)
                {
                    onWait?.Invoke();
                    waited = true;
                }

                await Task.Delay(200, cancellationToken);
            }
        }
    }

    public void Dispose() => _stream.Dispose();
}
