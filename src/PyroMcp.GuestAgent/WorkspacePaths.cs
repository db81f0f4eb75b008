using PyroMcp.Protocol.Files;
namespace PyroMcp.GuestAgent;

/// <summary>A request path checked against the workspace root.</summary>
/// <param name="Relative">Path below the root with <c>/</c> separators; empty for the root itself.</param>
/// <param name="Full">Absolute path in the guest.</param>
internal readonly record struct WorkspacePath(string Relative, string Full)
{
    internal bool IsRoot => Relative.Length == 0;

    internal string Name => IsRoot ? "" : Relative[(Relative.LastIndexOf('/') + 1)..];
}

/// <summary>
/// Confines request paths to the workspace root. Reads may follow symlinks as long as where
/// they land stays inside the root; writes never pass through a symlink at all, because a link
/// planted by a command in the workspace could otherwise aim a host-initiated write anywhere.
/// </summary>
internal sealed class WorkspacePaths
{
    internal WorkspacePaths(string root)
    {
        Root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root));
    }

    /// <summary>The root, absolute and without a trailing slash (unless it is <c>/</c>).</summary>
    internal string Root { get; }

    /// <summary>Checks a request path lexically: no NUL, no <c>..</c>, absolute only inside the root.</summary>
    internal WorkspacePath Resolve(string requestPath)
    {
        if (requestPath.Contains('\0'))
        {
            throw new AgentFailure("invalid_path", "the path contains a NUL byte");
        }

        var path = requestPath;
        if (path.StartsWith('/'))
        {
            var trimmed = path.TrimEnd('/');
            if (Root == "/")
            {
                path = trimmed;
            }
            else if (trimmed == Root)
            {
                path = "";
            }
            else if (trimmed.StartsWith(Root + "/", StringComparison.Ordinal))
            {
                path = trimmed[(Root.Length + 1)..];
            }
            else
            {
                throw new AgentFailure("outside_workspace", $"{requestPath} is outside the workspace {Root}");
            }
        }

        var segments = new List<string>();
        foreach (var segment in path.Split('/'))
        {
            if (segment is "" or ".")
            {
                continue;
            }

            if (segment == "..")
            {
                throw new AgentFailure("path_escapes_workspace", $"{requestPath}: '..' is not allowed in workspace paths");
            }

            segments.Add(segment);
        }

        var relative = string.Join('/', segments);
        return new WorkspacePath(relative, Combine(Root, relative));
    }

    /// <summary>
    /// For operations that create, replace or delete: every existing directory between the root
    /// and the final component must be a real directory. The final component is not checked.
    /// </summary>
    /// <param name="createParents">Create missing directories on the way instead of failing.</param>
    internal WorkspacePath ForWrite(string requestPath, bool createParents = false)
    {
        var path = Resolve(requestPath);
        if (!path.IsRoot)
        {
            var segments = path.Relative.Split('/');
            var failure = WalkDirectories(Root, segments.AsSpan(0, segments.Length - 1), createParents);
            if (failure is not null)
            {
                throw Failure(failure, requestPath);
            }
        }

        return path;
    }

    /// <summary>For a destination directory: the path and every component in it must be real directories; missing ones are created.</summary>
    internal WorkspacePath DirectoryForWrite(string requestPath)
    {
        var path = Resolve(requestPath);
        if (!path.IsRoot)
        {
            var failure = WalkDirectories(Root, path.Relative.Split('/'), create: true);
            if (failure is not null)
            {
                throw Failure(failure, requestPath);
            }
        }

        return path;
    }

    /// <summary>
    /// For operations that only read: symlinks are followed, but the path they finally resolve
    /// to must still be inside the (resolved) root. <see cref="WorkspacePath.Full"/> is the resolved path.
    /// </summary>
    internal WorkspacePath ForRead(string requestPath)
    {
        var path = Resolve(requestPath);
        var realRoot = Interop.RealPath(Root) ?? throw new AgentFailure("not_found", $"the workspace root {Root} does not exist");
        var real = Interop.RealPath(path.Full) ?? throw new AgentFailure("not_found", $"{DisplayName(path)} does not exist");
        if (real != realRoot && !real.StartsWith(realRoot == "/" ? "/" : realRoot + "/", StringComparison.Ordinal))
        {
            throw new AgentFailure("outside_workspace", $"{DisplayName(path)} resolves to {real}, outside the workspace");
        }

        return path with { Full = real };
    }

    /// <summary>See <see cref="SafeDirectories.Walk"/>: the rule the host applies to exports too.</summary>
    internal static string? WalkDirectories(string baseDirectory, ReadOnlySpan<string> segments, bool create)
        => SafeDirectories.Walk(baseDirectory, segments, create);

    internal static string Combine(string directory, string relative)
        => relative.Length == 0 ? directory : directory == "/" ? "/" + relative : directory + "/" + relative;

    internal static string DisplayName(WorkspacePath path) => path.IsRoot ? "the workspace root" : path.Relative;

    private static AgentFailure Failure(string code, string requestPath) => code switch
    {
        "symlink_in_path" => new AgentFailure(code, $"{requestPath}: a directory on the way is a symlink; writes never go through links"),
        "not_a_directory" => new AgentFailure(code, $"{requestPath}: a component on the way is not a directory"),
        _ => new AgentFailure(code, $"{requestPath}: the parent directory does not exist"),
    };
}
