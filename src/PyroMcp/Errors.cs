namespace PyroMcp;

/// <summary>
/// Base of every error pyro reports. <see cref="Code"/> is stable and machine-readable; the
/// message says what to do next. Subclasses say what still works afterwards.
/// </summary>
public abstract class PyroException : Exception
{
    private protected PyroException(string code, string message, Exception? inner = null)
        : base(message, inner)
    {
        Code = code;
    }

    /// <summary>A stable identifier such as <c>unknown_environment</c> or <c>boot_failed</c>.</summary>
    public string Code { get; }

    private string? _redactedMessage;

    /// <inheritdoc/>
    public override string Message => _redactedMessage ?? base.Message;

    /// <summary>
    /// Replaces a workspace's secret values in what this error says (its message may quote the
    /// guest), in place, so the exception keeps its type and stack when it is rethrown.
    /// </summary>
    internal virtual void RedactWith(Protocol.Secrets.SecretRedactor redactor)
    {
        var message = redactor.Redact(base.Message);
        if (!string.Equals(message, base.Message, StringComparison.Ordinal))
        {
            _redactedMessage = message;
        }
    }
}

/// <summary>The request itself was wrong (unknown environment, bad size, empty command). Nothing was changed; fix the input and retry.</summary>
/// <remarks>
/// The message speaks in the SDK's terms (the request and its properties), never in a front
/// end's: <see cref="Field"/> lets the CLI name its flag and the MCP server its tool parameter.
/// </remarks>
public sealed class PyroInputException : PyroException
{
    internal PyroInputException(string code, string message, string? field = null) : base(code, message)
    {
        Field = field;
    }

    /// <summary>
    /// The request property the error is about, by its C# name, e.g.
    /// <c>nameof(WorkspaceCreateRequest.VcpuCount)</c>; null when the error is not about one property.
    /// </summary>
    public string? Field { get; }
}

/// <summary>The host lacks something pyro needs (a package, a device, a runtime part). Nothing was started; the message names the fix.</summary>
public sealed class HostRequirementException : PyroException
{
    internal HostRequirementException(string code, string message, Exception? inner = null) : base(code, message, inner) { }
}

/// <summary>An environment could not be built, or its cached copy is damaged. The cache entry was not booted.</summary>
public sealed class EnvironmentException : PyroException
{
    internal EnvironmentException(string code, string message, Exception? inner = null) : base(code, message, inner) { }
}

/// <summary>
/// An OCI transfer failed: the registry refused or vanished, an image is not what it claims
/// (digest, platform, format), or the local disk filled. Nothing was installed from it; the cache
/// is as it was, apart from a partial download kept to resume. The message never carries credentials.
/// </summary>
public sealed class OciException : PyroException
{
    internal OciException(string code, string message, Exception? inner = null) : base(code, message, inner) { }
}

/// <summary>
/// The VM did not come up, or died. It has been torn down; nothing of it remains. The message
/// carries the tail of QEMU's stderr and of the guest console as evidence.
/// </summary>
public sealed class VmBootException : PyroException
{
    internal VmBootException(string code, string message, string qemuStderrTail, string consoleTail, Exception? inner = null)
        : base(code, message, inner)
    {
        QemuStderrTail = qemuStderrTail;
        ConsoleTail = consoleTail;
    }

    /// <summary>Last lines QEMU wrote to stderr.</summary>
    public string QemuStderrTail { get; private set; }

    /// <summary>Last lines of the guest serial console.</summary>
    public string ConsoleTail { get; private set; }

    internal override void RedactWith(Protocol.Secrets.SecretRedactor redactor)
    {
        base.RedactWith(redactor);
        QemuStderrTail = redactor.Redact(QemuStderrTail);
        ConsoleTail = redactor.Redact(ConsoleTail);
    }
}

/// <summary>The channel to the guest agent broke or the agent misbehaved. The VM cannot be used any more.</summary>
public sealed class GuestChannelException : PyroException
{
    internal GuestChannelException(string code, string message, Exception? inner = null) : base(code, message, inner) { }
}

/// <summary>The guest refused one operation (for example a working directory that does not exist). The VM is still usable.</summary>
public sealed class GuestOperationException : PyroException
{
    internal GuestOperationException(string code, string message) : base(code, message) { }
}
