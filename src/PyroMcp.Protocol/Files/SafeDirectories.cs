namespace PyroMcp.Protocol.Files;

/// <summary>
/// The one check both ends make before writing below a directory they were handed: every
/// parent must be a real directory, never a symlink, so a hostile tree cannot steer a write
/// out through a link it planted.
/// </summary>
public static class SafeDirectories
{
    /// <summary>
    /// Walks <paramref name="segments"/> below <paramref name="baseDirectory"/> with lstat
    /// semantics; each must be a real directory, or is created when missing and
    /// <paramref name="create"/> is set (with <paramref name="createMode"/>, less the umask).
    /// Returns null, or the code of what is in the way.
    /// </summary>
    public static string? Walk(string baseDirectory, ReadOnlySpan<string> segments, bool create, UnixFileMode createMode = (UnixFileMode)0x1FF)
    {
        var current = baseDirectory;
        foreach (var segment in segments)
        {
            current = current == "/" ? "/" + segment : current + "/" + segment;
            var stat = PathStats.LStat(current);
            if (stat is null)
            {
                if (!create)
                {
                    return "not_found";
                }

                // CreateDirectory on a single missing level; the lstat after it catches a link
                // that appeared in between, since mkdir itself never follows one.
                Directory.CreateDirectory(current, createMode);
                stat = PathStats.LStat(current);
            }

            switch (stat?.Kind)
            {
                case PathKind.Directory:
                    continue;
                case PathKind.Symlink:
                    return "symlink_in_path";
                default:
                    return "not_a_directory";
            }
        }

        return null;
    }
}
