namespace PyroMcp.Protocol.Files;

/// <summary>The one rule both ends apply to a name in an archive before anything is written.</summary>
public static class ArchiveNames
{
    /// <summary>
    /// The name as relative segments joined by <c>/</c> (empty for the destination itself), or
    /// null with <paramref name="refusal"/> set: <c>bad_name</c> (NUL), <c>absolute_path</c>,
    /// <c>path_traversal</c> (any <c>..</c> segment).
    /// </summary>
    public static string? Normalize(string name, out string? refusal)
    {
        refusal = name.Contains('\0') ? "bad_name" : name.StartsWith('/') ? "absolute_path" : null;
        if (refusal is not null)
        {
            return null;
        }

        var segments = new List<string>();
        foreach (var segment in name.Split('/'))
        {
            if (segment == "..")
            {
                refusal = "path_traversal";
                return null;
            }

            if (segment is not ("" or "."))
            {
                segments.Add(segment);
            }
        }

        return string.Join('/', segments);
    }
}
