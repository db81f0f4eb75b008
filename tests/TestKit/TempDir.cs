namespace PyroMcp.TestKit;

/// <summary>A fresh directory under the temp directory, removed with everything in it on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    internal TempDir(string prefix) => Path = Directory.CreateTempSubdirectory(prefix).FullName;

    internal string Path { get; }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    public override string ToString() => Path;
}
