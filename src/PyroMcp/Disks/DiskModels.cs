namespace PyroMcp;

/// <summary>A stopped workspace's disk written to a host file as a raw ext4 image.</summary>
/// <param name="WorkspaceId">The workspace.</param>
/// <param name="Output">The image file created (it did not exist before; mode 0600).</param>
/// <param name="Bytes">The image's size (its virtual size: the file is sparse).</param>
/// <param name="Scrubbed">Guest paths that held runtime-only state and were removed from the image, their freed blocks zeroed.</param>
/// <param name="DurationMs">How long the export took.</param>
public sealed record DiskExportResult(string WorkspaceId, string Output, long Bytes, IReadOnlyList<string> Scrubbed, long DurationMs);
