namespace PyroMcp;

/// <summary>The operation does not fit the workspace's state (not running, being reset...). The workspace is as it was; the message says what to do.</summary>
public sealed class WorkspaceStateException : PyroException
{
    internal WorkspaceStateException(string code, string message) : base(code, message) { }
}
