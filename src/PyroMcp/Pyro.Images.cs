using PyroMcp.Images;

namespace PyroMcp;

public sealed partial class Pyro
{
    /// <summary>
    /// Imports an OCI image as an environment: <paramref name="reference"/> is a registry
    /// reference (<c>127.0.0.1:5000/team/tools:1.0</c>), an OCI layout (<c>oci:DIR[:TAG]</c>) or
    /// an OCI archive (<c>oci-archive:FILE[:TAG]</c> or <c>FILE.tar</c>); its linux/amd64 image is
    /// fetched (every blob digest-verified), its layers flattened as untrusted input, and the
    /// result installed in the environment cache under <paramref name="name"/> (by default the
    /// image's name and tag, e.g. <c>busybox:1.36</c>). The image's Env, WorkingDir and User become
    /// the environment's exec defaults. Importing the same image under its name again does nothing;
    /// another image replaces it, unless workspaces are on it (<c>environment_in_use</c>). Operator
    /// only: no MCP tool imports.
    /// </summary>
    /// <param name="reference">Where the image is.</param>
    /// <param name="name">The environment's name; null derives it from the reference.</param>
    /// <param name="progress">Receives <c>[import]</c> and <c>[oci]</c> progress, with bytes.</param>
    /// <param name="cancellationToken">Stops the import; nothing is installed and the staging directory is removed.</param>
    /// <exception cref="PyroInputException">A bad or taken name.</exception>
    /// <exception cref="EnvironmentException">A layer over the limits (<c>image_layer_too_large</c>) or corrupt (<c>image_layer_corrupt</c>), or the disk could not be made.</exception>
    public Task<EnvironmentInfo> ImportEnvironmentAsync(string reference, string? name = null, IProgress<PyroProgress>? progress = null, CancellationToken cancellationToken = default)
        => ImageImporter.ImportAsync(_store, Options, reference, name, new FlattenLimits(), WorkspacesOn, progress, cancellationToken);
}
