namespace PyroMcp.Server;

/// <summary>
/// The host directories an MCP client may name in <c>seed_path</c>, <c>source_path</c> and
/// <c>output_path</c>. The model calling the tools is untrusted (guest output can steer it), so
/// host paths are confined to roots the operator chose: by default the directory the server was
/// started in, which is the project the chat host opened.
/// </summary>
/// <remarks>
/// A path is resolved before it is checked: <c>~</c> is expanded, relative paths are taken from
/// the first root, <c>..</c> is folded, and every symlink on the way is followed (for a path that
/// does not exist yet, every symlink up to its deepest existing ancestor). The resolved path is
/// what the caller then uses, so a symlink inside a root that points out of it cannot smuggle a
/// host path through the check.
/// </remarks>
public sealed class AllowedRoots
{
    private const int MaxSymlinkHops = 40;
    private readonly string[] _roots;

    /// <summary>Confines host paths to <paramref name="roots"/> (each resolved, symlinks included). At least one root is required.</summary>
    /// <exception cref="ArgumentException">No roots, or a root that is not an existing directory.</exception>
    public AllowedRoots(IEnumerable<string> roots)
    {
        var resolved = new List<string>();
        foreach (var root in roots)
        {
            var full = Resolve(Path.GetFullPath(ExpandHome(root)));
            if (!Directory.Exists(full))
            {
                throw new ArgumentException($"allowed path {root} is not an existing directory");
            }

            resolved.Add(Path.TrimEndingDirectorySeparator(full));
        }

        if (resolved.Count == 0)
        {
            throw new ArgumentException("at least one allowed path is required");
        }

        _roots = [.. resolved.Distinct(StringComparer.Ordinal)];
    }

    /// <summary>The resolved roots, in the order given.</summary>
    public IReadOnlyList<string> Roots => _roots;

    /// <summary>
    /// The resolved absolute form of <paramref name="path"/> if it lies inside a root. Throws a
    /// <see cref="HostPathException"/> (code <c>path_not_allowed</c>) otherwise; nothing is touched.
    /// </summary>
    /// <param name="path">As the client sent it: absolute, relative to the first root, or starting with <c>~</c>.</param>
    /// <param name="parameter">The tool parameter it came in, named in the error.</param>
    public string Confine(string path, string parameter)
    {
        if (string.IsNullOrWhiteSpace(path) || path.Contains('\0', StringComparison.Ordinal))
        {
            throw new HostPathException("invalid_path", $"{parameter} is empty or not a path");
        }

        var expanded = ExpandHome(path);
        var full = Path.GetFullPath(Path.IsPathRooted(expanded) ? expanded : Path.Combine(_roots[0], expanded));
        var resolved = Resolve(full);
        if (!_roots.Any(root => IsInside(resolved, root)))
        {
            throw new HostPathException("path_not_allowed",
                $"{parameter} {path} is outside the host directories this MCP server may use ({string.Join(", ", _roots)}" +
                (resolved == full ? ")" : $"; it resolves to {resolved})") +
                ". Use a path inside one of them, or ask the operator to start the server with 'pyro mcp serve --allow-path DIR'.");
        }

        return resolved;
    }

    private static bool IsInside(string path, string root)
        => path == root || path.StartsWith(root == "/" ? "/" : root + "/", StringComparison.Ordinal);

    private static string ExpandHome(string path)
    {
        if (path == "~" || path.StartsWith("~/", StringComparison.Ordinal))
        {
            var home = Environment.GetEnvironmentVariable("HOME") is { Length: > 0 } h ? h : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            return home + path[1..];
        }

        return path;
    }

    /// <summary>
    /// Follows every symlink in an absolute, normalized path, component by component, like
    /// realpath(3); components that do not exist are kept as they are.
    /// </summary>
    internal static string Resolve(string fullPath)
    {
        var pending = new Stack<string>(fullPath.Split('/', StringSplitOptions.RemoveEmptyEntries).Reverse());
        var current = "/";
        var hops = 0;
        var missing = false;
        while (pending.TryPop(out var part))
        {
            if (part == ".")
            {
                continue;
            }

            if (part == "..")
            {
                current = Path.GetDirectoryName(current) ?? "/";
                continue;
            }

            var next = current == "/" ? "/" + part : current + "/" + part;
            if (!missing)
            {
                FileSystemInfo info = new FileInfo(next);
                if (!info.Exists && !Directory.Exists(next) && info.LinkTarget is null)
                {
                    // Nothing further down can be a symlink: it does not exist yet.
                    missing = true;
                }
                else if (info.LinkTarget is { } target)
                {
                    if (++hops > MaxSymlinkHops)
                    {
                        throw new HostPathException("invalid_path", $"too many levels of symbolic links in {fullPath}");
                    }

                    foreach (var piece in target.Split('/', StringSplitOptions.RemoveEmptyEntries).Reverse())
                    {
                        pending.Push(piece);
                    }

                    if (target.StartsWith('/'))
                    {
                        current = "/";
                    }

                    continue;
                }
            }

            current = next;
        }

        return current;
    }
}

/// <summary>A host path an MCP client sent was refused; nothing was read or written.</summary>
public sealed class HostPathException : Exception
{
    internal HostPathException(string code, string message) : base(message)
    {
        Code = code;
    }

    /// <summary><c>path_not_allowed</c> or <c>invalid_path</c>.</summary>
    public string Code { get; }
}
