// Runs one command in a fresh microVM and prints what came back.
//   dotnet run --project examples/SdkRun -- debian:12 'git --version'
using PyroMcp;

var environment = args.Length > 0 ? args[0] : "debian:12";
var command = args.Length > 1 ? args[1] : "uname -sr";

var pyro = new Pyro();
var result = await pyro.RunAsync(new RunRequest
{
    Environment = environment,
    // One string with spaces or shell syntax runs through /bin/sh -c.
    Command = [command],
    TimeoutSeconds = 60,
    Progress = new SyncProgress<PyroProgress>(p => Console.Error.WriteLine(p)),
});

Console.Write(result.Stdout);
Console.Error.Write(result.Stderr);
Console.Error.WriteLine($"exit_code={result.ExitCode} timed_out={result.TimedOut} vm_deleted={result.Cleanup?.Deleted}");
return result.ExitCode;
