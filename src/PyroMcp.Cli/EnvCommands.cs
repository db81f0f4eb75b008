using System.CommandLine;
using System.Globalization;

namespace PyroMcp.Cli;

/// <summary><c>pyro env list|pull|import|inspect|publish|remove|prune</c></summary>
internal static class EnvCommands
{
    internal static Command Build()
    {
        var env = new Command("env", "Inspect and manage the environments guests boot from.");
        env.Subcommands.Add(List());
        env.Subcommands.Add(Pull());
        env.Subcommands.Add(Import());
        env.Subcommands.Add(Inspect());
        env.Subcommands.Add(Publish());
        env.Subcommands.Add(Remove());
        env.Subcommands.Add(Prune());
        return env;
    }

    private static Command List()
    {
        var list = new Command("list", "List the catalog and what is installed.") { Output.Json };
        list.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var all = await new Pyro().ListEnvironmentsAsync(CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(all, PyroJsonContext.Default.IReadOnlyListEnvironmentInfo);
                return 0;
            }

            Console.WriteLine($"Catalog version: {Pyro.CatalogVersion}");
            foreach (var e in all)
            {
                Console.WriteLine($"{e.Name} [{e.State.Replace('_', ' ')}] {e.Description}");
            }

            return 0;
        }));
        return list;
    }

    private static Command Pull()
    {
        var name = new Argument<string>("environment") { Description = "Environment to build, e.g. debian:12." };
        var pull = new Command("pull", "Install an environment into the local cache: from its OCI source when one is configured, else built from the Debian mirror (idempotent).") { name, Output.Json };
        pull.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var info = await new Pyro().PullEnvironmentAsync(parse.GetValue(name)!, Output.StderrProgress, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(info, PyroJsonContext.Default.EnvironmentInfo);
            }
            else
            {
                Console.WriteLine($"Pulled: {info.Name}");
                PrintDetails(info);
            }

            return 0;
        }));
        return pull;
    }

    private static Command Import()
    {
        var reference = new Argument<string>("reference") { Description = "The image: a registry reference (HOST[:PORT]/NAME:TAG), oci:DIR[:TAG] or oci-archive:FILE[:TAG]." };
        var name = new Option<string?>("--name") { Description = "Name of the environment (default: the image's name and tag, e.g. busybox:1.36)." };
        var import = new Command("import", "Import an OCI image (linux/amd64) as an environment: its layers flattened into a root disk, its Env, WorkingDir and User kept as exec defaults.") { reference, name, Output.Json };
        import.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var info = await new Pyro().ImportEnvironmentAsync(parse.GetValue(reference)!, parse.GetValue(name), Output.StderrProgress, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(info, PyroJsonContext.Default.EnvironmentInfo);
            }
            else
            {
                Console.WriteLine($"Imported: {info.Name}");
                PrintDetails(info);
            }

            return 0;
        }));
        return import;
    }

    private static Command Inspect()
    {
        var name = new Argument<string>("environment") { Description = "Environment to describe." };
        var inspect = new Command("inspect", "Show an environment's cache state, paths and checksum (verifies the disk image).") { name, Output.Json };
        inspect.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var info = await new Pyro().InspectEnvironmentAsync(parse.GetValue(name)!, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(info, PyroJsonContext.Default.EnvironmentInfo);
            }
            else
            {
                Console.WriteLine($"Environment: {info.Name}");
                PrintDetails(info);
            }

            return 0;
        }));
        return inspect;
    }

    private static Command Publish()
    {
        var name = new Argument<string>("environment") { Description = "Installed environment to publish, e.g. debian:12." };
        var reference = new Argument<string>("reference") { Description = "Where to push it: HOST[:PORT]/REPOSITORY:TAG." };
        var publish = new Command("publish", "Push an installed environment to an OCI registry (credentials: OCI_REGISTRY_USERNAME/OCI_REGISTRY_PASSWORD or the container auth file).") { name, reference, Output.Json };
        publish.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var result = await new Pyro().PublishEnvironmentAsync(parse.GetValue(name)!, parse.GetValue(reference)!, Output.StderrProgress, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(result, PyroJsonContext.Default.EnvironmentPublishResult);
                return 0;
            }

            Console.WriteLine($"Published: {result.Environment} to {result.Reference}");
            Console.WriteLine($"Manifest: {result.ManifestDigest}");
            Console.WriteLine($"Layer: {result.LayerDigest} ({result.LayerBytes / (1024.0 * 1024):0.0} MiB zstd)");
            Console.Error.WriteLine(new PyroProgress("publish", "done",
            [
                new("environment", result.Environment), new("reference", result.Reference), new("manifest", result.ManifestDigest),
                new("layer_bytes", result.LayerBytes.ToString(CultureInfo.InvariantCulture)), new("uploaded", result.BlobsUploaded.ToString(CultureInfo.InvariantCulture)),
                new("skipped", result.BlobsSkipped.ToString(CultureInfo.InvariantCulture)),
            ]));
            return 0;
        }));
        return publish;
    }

    private static Command Remove()
    {
        var name = new Argument<string>("environment") { Description = "The environment to remove from the cache (catalog or imported)." };
        var remove = new Command("remove", "Delete an installed environment and its warm-start templates from the cache (refused while workspaces are on it). A catalog environment can be pulled again; an imported one must be imported again.") { name, Output.Json };
        remove.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var result = await new Pyro().RemoveEnvironmentAsync(parse.GetValue(name)!, CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(result, PyroJsonContext.Default.EnvironmentRemoveResult);
                return 0;
            }

            Console.WriteLine(result.Removed
                ? $"Removed: {result.Environment} (freed {result.FreedBytes / (1024.0 * 1024):0.0} MiB, {result.Templates} template{(result.Templates == 1 ? "" : "s")})"
                : $"Not installed: {result.Environment}");
            return 0;
        }));
        return remove;
    }

    private static Command Prune()
    {
        var prune = new Command("prune", "Delete cache entries no current environment uses (old versions, unfinished or damaged builds, unreferenced OCI blobs).") { Output.Json };
        prune.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var result = await new Pyro().PruneEnvironmentsAsync(CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(result, PyroJsonContext.Default.PruneResult);
                return 0;
            }

            Console.WriteLine($"Removed {result.Removed.Count} cache entr{(result.Removed.Count == 1 ? "y" : "ies")}, freed {result.FreedBytes / (1024.0 * 1024):0.0} MiB");
            foreach (var path in result.Removed)
            {
                Console.WriteLine($"  {path}");
            }

            return 0;
        }));
        return prune;
    }

    private static void PrintDetails(EnvironmentInfo info)
    {
        Console.WriteLine($"Version: {info.Version}");
        Console.WriteLine($"Description: {info.Description}");
        Console.WriteLine($"Distribution: {info.Distribution}");
        Console.WriteLine($"State: {info.State.Replace('_', ' ')}");
        Console.WriteLine($"Installed: {(info.Installed ? "yes" : "no")}");
        Console.WriteLine($"Cache dir: {info.CacheDir}");
        if (info.Image is { } image)
        {
            Console.WriteLine($"Image: {image.Reference}");
            Console.WriteLine($"Manifest digest: {image.ManifestDigest} ({image.ManifestMediaType})");
            Console.WriteLine($"Config digest: {image.ConfigDigest}");
            Console.WriteLine($"Layers: {string.Join(", ", image.LayerDigests)}");
            Console.WriteLine($"Env: {string.Join(" ", image.Env)}");
            Console.WriteLine($"Working dir: {image.WorkingDir ?? "(none: /)"}");
            Console.WriteLine($"User: {image.User ?? "(none: root)"}");
            Console.WriteLine($"Skipped entries: {image.SkippedEntries}");
        }
        else
        {
            Console.WriteLine($"Default packages: {(info.Packages.Count == 0 ? "(minimal base only)" : string.Join(", ", info.Packages))}");
        }

        Console.WriteLine($"Install dir: {info.InstallDir}");
        Console.WriteLine($"Install manifest: {info.InstallManifest}");
        Console.WriteLine($"Rootfs image: {info.RootfsImage}");
        if (info.RootfsSha256 is not null)
        {
            Console.WriteLine($"Rootfs sha256: {info.RootfsSha256}");
            Console.WriteLine($"Rootfs size: {info.RootfsBytes / (1024 * 1024)} MiB (sparse)");
            Console.WriteLine($"Source: {info.Source}");
            Console.WriteLine($"Built at: {info.BuiltAt?.ToString("u", CultureInfo.InvariantCulture)}");
        }

        if (info.Kind != "imported")
        {
            Console.WriteLine($"OCI source: {info.OciSource ?? "(none: built locally from the Debian mirror)"}");
        }

        if (info.OciManifestDigest is not null)
        {
            Console.WriteLine($"OCI manifest: {info.OciManifestDigest}");
            Console.WriteLine($"OCI layer: {info.OciLayerDigest}");
        }

        if (info.Kind == "imported" && !info.Installed)
        {
            Console.WriteLine($"The imported image is {info.State.Replace('_', ' ')}; import it again with: pyro env import {info.Image?.Reference ?? "REF"} --name {info.Name}");
        }
        else if (info.State == "corrupt")
        {
            Console.WriteLine($"The cached image does not match its checksum and will not be booted. Rebuild it with: pyro env pull {info.Name}");
        }
        else if (info.State == "incomplete")
        {
            Console.WriteLine($"A previous pull did not finish. Rebuild it with: pyro env pull {info.Name}");
        }
    }
}
