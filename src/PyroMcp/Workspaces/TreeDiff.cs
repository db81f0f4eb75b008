using System.Text;

namespace PyroMcp.Workspaces;

/// <summary>Compares two /workspace trees (baseline and now) and renders the text changes as a unified diff.</summary>
internal static class TreeDiff
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    internal static WorkspaceDiff Compare(string workspaceId, IReadOnlyDictionary<string, WorkspaceManager.TreeEntry> before, IReadOnlyDictionary<string, WorkspaceManager.TreeEntry> after)
    {
        var changes = new List<DiffEntry>();
        var patch = new StringBuilder();
        int added = 0, modified = 0, deleted = 0, typeChanged = 0, textPatched = 0, nonText = 0;
        foreach (var path in before.Keys.Union(after.Keys).Order(StringComparer.Ordinal))
        {
            before.TryGetValue(path, out var old);
            after.TryGetValue(path, out var now);
            string change;
            if (old is null)
            {
                change = "added";
                added++;
            }
            else if (now is null)
            {
                change = "deleted";
                deleted++;
            }
            else if (old.Kind != now.Kind)
            {
                change = "type_changed";
                typeChanged++;
            }
            else if (old.Mode != now.Mode || old.LinkTarget != now.LinkTarget || !SameContent(old.Content, now.Content))
            {
                change = "modified";
                modified++;
            }
            else
            {
                continue;
            }

            var kind = (now ?? old)!.Kind;
            var text = false;
            var oldFile = old?.Kind == "file" ? old : null;
            var newFile = now?.Kind == "file" ? now : null;
            if (oldFile is not null || newFile is not null)
            {
                var oldText = oldFile is null ? null : AsText(oldFile.Content!);
                var newText = newFile is null ? null : AsText(newFile.Content!);
                var oldIsText = oldFile is null || oldText is not null;
                var newIsText = newFile is null || newText is not null;
                if (oldIsText && newIsText)
                {
                    var rendered = UnifiedDiff.Create(path, oldText, newText);
                    if (rendered.Length > 0)
                    {
                        patch.Append(rendered);
                        if (!rendered.EndsWith('\n'))
                        {
                            patch.Append('\n');
                        }

                        text = true;
                        textPatched++;
                    }
                }
                else
                {
                    patch.Append($"Binary files {(oldFile is null ? "/dev/null" : "a/" + path)} and {(newFile is null ? "/dev/null" : "b/" + path)} differ\n");
                    nonText++;
                }
            }

            changes.Add(new DiffEntry(path, change, kind, text));
        }

        return new WorkspaceDiff
        {
            WorkspaceId = workspaceId,
            Added = added,
            Modified = modified,
            Deleted = deleted,
            TypeChanged = typeChanged,
            TextPatched = textPatched,
            NonText = nonText,
            Changes = changes,
            Patch = patch.ToString(),
        };
    }

    private static bool SameContent(byte[]? a, byte[]? b) => a is null ? b is null : b is not null && a.AsSpan().SequenceEqual(b);

    /// <summary>The content as text, or null when it is not (a NUL byte, or not UTF-8).</summary>
    internal static string? AsText(byte[] content)
    {
        if (content.AsSpan().Contains((byte)0))
        {
            return null;
        }

        try
        {
            return StrictUtf8.GetString(content);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }
}
