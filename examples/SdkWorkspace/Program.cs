// Seeds a workspace from a host directory, runs a command, applies a patch, prints the diff
// against the seed, and deletes the workspace.
//   dotnet run --project examples/SdkWorkspace -- examples/repo examples/fix.patch
using PyroMcp;

var seed = args.Length > 0 ? args[0] : "examples/repo";
var patchFile = args.Length > 1 ? args[1] : null;

var pyro = new Pyro();
var workspace = await pyro.CreateWorkspaceAsync(new WorkspaceCreateRequest
{
    Environment = "debian:12",
    SeedPath = seed,
    TtlSeconds = 600,
    Progress = new SyncProgress<PyroProgress>(p => Console.Error.WriteLine(p)),
});
try
{
    var listing = await pyro.ExecWorkspaceAsync(workspace.WorkspaceId, new WorkspaceExecRequest { Command = ["ls -la && git --version"] });
    Console.Write(listing.Stdout);

    if (patchFile is not null)
    {
        var patched = await pyro.ApplyWorkspacePatchAsync(workspace.WorkspaceId, await File.ReadAllTextAsync(patchFile));
        Console.WriteLine($"patched: {string.Join(", ", patched.Files)}");
    }

    var diff = await pyro.DiffWorkspaceAsync(workspace.WorkspaceId);
    Console.WriteLine($"diff: {diff.Added} added, {diff.Modified} modified, {diff.Deleted} deleted");
    Console.Write(diff.Patch);
}
finally
{
    // A workspace outlives this process unless deleted; its TTL is only the backstop.
    await pyro.DeleteWorkspaceAsync(workspace.WorkspaceId);
}
