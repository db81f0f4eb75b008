using System.CommandLine;
using System.Text.Json.Nodes;

namespace PyroMcp.Cli;

/// <summary><c>pyro demo [--network]</c>: proves the whole create/start/exec/delete lifecycle in one call.</summary>
internal static class DemoCommand
{
    internal static Command Build()
    {
        var network = new Option<bool>("--network") { Description = "Give the guest egress and download --url from inside it (shows the address, gateway and DNS it got)." };
        var url = new Option<string>("--url") { Description = "What the --network demo downloads (http).", DefaultValueFactory = _ => "http://deb.debian.org/debian/" };
        var demo = new Command("demo", "Run git --version in a fresh debian:12 VM and print the lifecycle as JSON; with --network, a download from inside the guest.") { network, url, RunCommand.Accel };
        demo.SetAction((parse, _) => Output.GuardAsync(true, async () =>
        {
            var withNetwork = parse.GetValue(network);
            var target = parse.GetValue(url)!;
            if (withNetwork && !Uri.TryCreate(target, UriKind.Absolute, out var parsed) | parsed?.Scheme != "http")
            {
                return Output.Fail(true, "invalid_url", $"--url takes an http:// URL (got '{target}')", CliApp.ExitUsage);
            }

            var result = await new Pyro().RunAsync(new RunRequest
            {
                Environment = "debian:12",
                // The URL goes in as a variable, never into the script text.
                Command = withNetwork ? [NetworkScript] : ["git", "--version"],
                Env = withNetwork ? new Dictionary<string, string> { ["PYRO_DEMO_URL"] = target } : null,
                Network = withNetwork,
                TimeoutSeconds = withNetwork ? 60 : 30,
                Accelerator = parse.GetValue(RunCommand.Accel) is { } a ? PyroOptions.ParseAccelerator(a) : null,
                Progress = Output.StderrProgress,
            }, CliApp.Interrupted);
            Output.WriteJson(new JsonObject
            {
                ["cleanup"] = new JsonObject
                {
                    ["deleted"] = result.Cleanup?.Deleted ?? false,
                    ["reason"] = result.Cleanup?.Reason,
                    ["vm_id"] = result.VmId,
                },
                ["command"] = withNetwork ? "download " + target : result.Command,
                ["environment"] = result.Environment,
                ["execution_mode"] = Output.Word(result.ExecutionMode),
                ["network"] = withNetwork,
                ["exit_code"] = result.ExitCode,
                ["guest_kernel"] = result.GuestKernel,
                ["duration_ms"] = result.DurationMs,
                ["stdout"] = result.Stdout,
                ["stderr"] = withNetwork ? result.Stderr : null,
            });
            return result.ExitCode;
        }));
        return demo;
    }

    /// <summary>
    /// Shows the lease the guest got, then downloads the URL with the guest's own busybox wget
    /// (under coreutils' timeout: busybox 1.35's own -T option crashes it).
    /// </summary>
    private const string NetworkScript = """
        set -e
        . /run/pyro/network
        echo "guest address=$address/$prefix gateway=$gateway dns=$dns"
        timeout 30 /run/pyro/busybox wget -q -O /tmp/pyro-demo "$PYRO_DEMO_URL"
        echo "downloaded $(wc -c < /tmp/pyro-demo) bytes from $PYRO_DEMO_URL"
        """;
}
