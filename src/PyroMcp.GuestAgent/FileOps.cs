using PyroMcp.Protocol.Files;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent;

/// <summary>The <c>files.*</c> operations on one stream, confined to the workspace root.</summary>
internal sealed class FileOps(FrameConnection connection, uint streamId, WorkspacePaths paths, Operation operation)
{
    private const int ChunkSize = 64 * 1024;
    private const int DefaultFileMode = 0x1A4; // 0644

    /// <summary>Lists every name, dot files included; the default options would hide them.</summary>
    internal static readonly EnumerationOptions AllEntries = new()
    {
        AttributesToSkip = 0,
        IgnoreInaccessible = false,
        RecurseSubdirectories = false,
        ReturnSpecialDirectories = false,
    };

    internal FileListing List(FilesRequest request)
    {
        var directory = paths.ForRead(request.Path);
        if (PathStats.LStat(directory.Full)?.Kind != PathKind.Directory)
        {
            throw new AgentFailure("not_a_directory", $"{WorkspacePaths.DisplayName(directory)} is not a directory");
        }

        var entries = new List<FileEntry>();
        Collect(directory.Full, directory.Relative, request.Recursive, entries);
        entries.Sort((a, b) => string.CompareOrdinal(a.Path, b.Path));
        return new FileListing { Entries = entries };
    }

    internal async Task<FileEntry> ReadAsync(FilesRequest request, bool windowed = false)
    {
        var path = paths.ForRead(request.Path);
        var stat = PathStats.LStat(path.Full) ?? throw new AgentFailure("not_found", $"{path.Relative} does not exist");
        if (stat.Kind != PathKind.File)
        {
            // Opening a fifo would hang the operation; a directory has no bytes to send.
            throw new AgentFailure("not_a_file", $"{WorkspacePaths.DisplayName(path)} is a {TypeName(stat.Kind)}, not a file");
        }

        var limit = request.MaxBytes > 0 ? request.MaxBytes : long.MaxValue;
        long sent = 0;
        var truncated = false;
        await using (var stream = new FileStream(path.Full, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0))
        {
            while (true)
            {
                var buffer = new byte[ChunkSize];
                var want = (int)Math.Min(ChunkSize, limit - sent);
                if (want == 0)
                {
                    // One more byte tells a file of exactly MaxBytes from a longer one.
                    truncated = await stream.ReadAsync(buffer.AsMemory(0, 1), operation.Cancel.Token) > 0;
                    break;
                }

                var read = await stream.ReadAsync(buffer.AsMemory(0, want), operation.Cancel.Token);
                if (read == 0)
                {
                    break;
                }

                sent += read;
                var payload = read == buffer.Length ? buffer : buffer.AsSpan(0, read).ToArray();
                if (windowed)
                {
                    // As tar.out: no more than the window ahead of what the host has taken.
                    await operation.Window.TakeAsync(FrameCodec.HeaderLength + payload.Length, operation.Cancel.Token);
                }

                await connection.SendAsync(new Frame(streamId, FrameType.Stdout, payload), operation.Cancel.Token);
            }
        }

        return new FileEntry { Path = path.Relative, Type = "file", Size = sent, Mode = stat.Mode, Truncated = truncated };
    }

    internal async Task<FileEntry> WriteAsync(FilesRequest request)
    {
        var path = paths.ForWrite(request.Path, request.CreateParents);
        if (path.IsRoot)
        {
            throw new AgentFailure("is_a_directory", "the workspace root is a directory");
        }

        var existing = PathStats.LStat(path.Full);
        switch (existing?.Kind)
        {
            case PathKind.Symlink:
                throw new AgentFailure("symlink_in_path", $"{path.Relative} is a symlink; writes never go through links");
            case PathKind.Directory:
                throw new AgentFailure("is_a_directory", $"{path.Relative} is a directory");
            case PathKind.Other:
                throw new AgentFailure("not_a_file", $"{path.Relative} is not a regular file");
        }

        // A replaced file keeps its permissions unless the caller sets new ones.
        var mode = (request.Mode ?? existing?.Mode ?? DefaultFileMode) & 0xFFF;
        var directory = Path.GetDirectoryName(path.Full)!;

        // Same directory, so the rename below stays on one file system and is atomic: readers see
        // the old content or the new, never a mix. The name does not derive from the target's, so
        // it cannot run over NAME_MAX.
        var temp = Path.Combine(directory, $".pyro-write-{Guid.NewGuid():N}.tmp");
        long size = 0;
        try
        {
            await using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0))
            {
                await foreach (var chunk in operation.Stdin.Reader.ReadAllAsync(operation.Cancel.Token))
                {
                    await stream.WriteAsync(chunk, operation.Cancel.Token);
                    size += chunk.Length;
                }

                File.SetUnixFileMode(stream.SafeFileHandle, (UnixFileMode)mode);
            }

            // rename(2) replaces whatever is at the name without following it.
            File.Move(temp, path.Full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }

        return new FileEntry { Path = path.Relative, Type = "file", Size = size, Mode = mode };
    }

    internal FileEntry Delete(FilesRequest request)
    {
        var path = paths.ForWrite(request.Path);
        if (path.IsRoot)
        {
            throw new AgentFailure("cannot_delete_root", "the workspace root cannot be deleted");
        }

        var stat = PathStats.LStat(path.Full) ?? throw new AgentFailure("not_found", $"{path.Relative} does not exist");
        if (stat.Kind == PathKind.Directory)
        {
            if (!request.Recursive && Directory.EnumerateFileSystemEntries(path.Full, "*", AllEntries).Any())
            {
                throw new AgentFailure("directory_not_empty", $"{path.Relative} is not empty; set recursive to delete it with its contents");
            }

            DeleteTree(path.Full);
        }
        else
        {
            // unlink: for a symlink this removes the link and leaves its target alone.
            File.Delete(path.Full);
        }

        return new FileEntry { Path = path.Relative, Type = TypeName(stat.Kind), Size = stat.Kind == PathKind.File ? stat.Size : 0, Mode = stat.Mode };
    }

    /// <summary>Deletes a file, link or directory tree without ever descending through a symlink.</summary>
    internal static void DeleteTree(string path)
    {
        var stat = PathStats.LStat(path);
        if (stat is null)
        {
            return;
        }

        if (stat.Value.Kind == PathKind.Directory)
        {
            DeleteContents(path);
            Directory.Delete(path);
        }
        else
        {
            File.Delete(path);
        }
    }

    /// <summary>Empties a directory, keeping the directory itself.</summary>
    internal static void DeleteContents(string directory)
    {
        foreach (var child in Directory.GetFileSystemEntries(directory, "*", AllEntries))
        {
            DeleteTree(child);
        }
    }

    internal static string TypeName(PathKind kind) => kind switch
    {
        PathKind.File => "file",
        PathKind.Directory => "directory",
        PathKind.Symlink => "symlink",
        _ => "other",
    };

    private static void Collect(string directory, string relative, bool recursive, List<FileEntry> entries)
    {
        foreach (var child in Directory.GetFileSystemEntries(directory, "*", AllEntries))
        {
            var stat = PathStats.LStat(child);
            if (stat is not { } found)
            {
                // Deleted since the directory was read.
                continue;
            }

            var name = Path.GetFileName(child);
            var childRelative = relative.Length == 0 ? name : relative + "/" + name;
            entries.Add(new FileEntry
            {
                Path = childRelative,
                Type = TypeName(found.Kind),
                Size = found.Kind == PathKind.File ? found.Size : 0,
                Mode = found.Mode,
                LinkTarget = found.Kind == PathKind.Symlink ? new FileInfo(child).LinkTarget : null,
            });

            // lstat said directory, so this never descends through a directory symlink.
            if (recursive && found.Kind == PathKind.Directory)
            {
                Collect(child, childRelative, recursive: true, entries);
            }
        }
    }
}
