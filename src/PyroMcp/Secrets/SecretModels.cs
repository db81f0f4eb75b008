namespace PyroMcp;

/// <summary>
/// One secret for <see cref="WorkspaceCreateRequest.Secrets"/>: a name (letters, digits and
/// <c>_</c>, not starting with a digit, at most 64) and either <see cref="Value"/> or
/// <see cref="FilePath"/>. Values are 4 to 65,536 bytes of UTF-8 text.
/// </summary>
public sealed record WorkspaceSecret
{
    /// <summary>The name: the guest file <c>/run/pyro-secrets/NAME</c>, and what redaction shows (<c>[REDACTED:NAME]</c>).</summary>
    public required string Name { get; init; }
    /// <summary>The value itself.</summary>
    public string? Value { get; init; }
    /// <summary>A host file holding the value; one trailing newline is dropped (as <c>echo token &gt; file</c> adds one).</summary>
    public string? FilePath { get; init; }

    /// <summary>The name and where the value comes from, never the value: requests get printed and logged.</summary>
    public override string ToString() => $"WorkspaceSecret {{ Name = {Name}, {(FilePath is null ? "Value = (hidden)" : $"FilePath = {FilePath}")} }}";
}
