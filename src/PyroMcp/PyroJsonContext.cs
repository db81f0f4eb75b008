using System.Text.Json.Serialization;
using PyroMcp.Environments;
using PyroMcp.Host;
using PyroMcp.Runtime;

namespace PyroMcp;

/// <summary>Source-generated JSON for pyro's public results, in the snake_case the CLI's --json prints.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    WriteIndented = true,
    UseStringEnumConverter = true)]
[JsonSerializable(typeof(RunResult))]
[JsonSerializable(typeof(BootPhases))]
[JsonSerializable(typeof(EnvironmentInfo))]
[JsonSerializable(typeof(IReadOnlyList<EnvironmentInfo>))]
[JsonSerializable(typeof(PruneResult))]
[JsonSerializable(typeof(EnvironmentRemoveResult))]
[JsonSerializable(typeof(EnvironmentPublishResult))]
[JsonSerializable(typeof(DoctorReport))]
[JsonSerializable(typeof(WorkspaceInfo))]
[JsonSerializable(typeof(IReadOnlyList<WorkspaceInfo>))]
[JsonSerializable(typeof(WorkspaceExecResult))]
[JsonSerializable(typeof(VmExecResult))]
[JsonSerializable(typeof(TransferResult))]
[JsonSerializable(typeof(DiskExportResult))]
[JsonSerializable(typeof(WorkspaceDiff))]
[JsonSerializable(typeof(PatchResult))]
[JsonSerializable(typeof(SnapshotInfo))]
[JsonSerializable(typeof(IReadOnlyList<SnapshotInfo>))]
[JsonSerializable(typeof(IReadOnlyList<CommandRecord>))]
[JsonSerializable(typeof(FileEntry))]
[JsonSerializable(typeof(IReadOnlyList<FileEntry>))]
[JsonSerializable(typeof(IReadOnlyList<string>))]
[JsonSerializable(typeof(PublishedPort))]
[JsonSerializable(typeof(IReadOnlyList<PublishedPort>))]
[JsonSerializable(typeof(VmNetworkInfo))]
[JsonSerializable(typeof(WorkspaceService))]
[JsonSerializable(typeof(WorkspaceServiceList))]
[JsonSerializable(typeof(WorkspaceServiceLogs))]
[JsonSerializable(typeof(WorkspaceShell))]
[JsonSerializable(typeof(IReadOnlyList<WorkspaceShell>))]
[JsonSerializable(typeof(ShellReadResult))]
[JsonSerializable(typeof(WorkspaceForkResult))]
public sealed partial class PyroJsonContext : JsonSerializerContext;

/// <summary>Source-generated JSON for pyro's own files in the caches.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(FileIntegrity.Stamp))]
[JsonSerializable(typeof(KernelInfo))]
[JsonSerializable(typeof(RuntimeManifest))]
[JsonSerializable(typeof(EnvironmentManifest))]
[JsonSerializable(typeof(IReadOnlyDictionary<string, string>))]
[JsonSerializable(typeof(GuestNetwork))]
[JsonSerializable(typeof(IReadOnlyList<PublishedPort>))]
[JsonSerializable(typeof(Templates.TemplateManifest))]
internal sealed partial class InternalJsonContext : JsonSerializerContext;
