using System.CommandLine;
using System.Text.Json.Nodes;

namespace PyroMcp.Cli;

/// <summary><c>pyro demo</c>: proves the whole create/start/exec/delete lifecycle in one call.</summary>
internal static class DemoCommand
{
    internal static Command Build()
    {
        var demo = new Command("demo", "Run git --version in a fresh debian:12 VM and print the lifecycle as JSON.") { RunCommand.Accel };
        demo.SetAction((parse, _) => Output.GuardAsync(true, async () =>
        {
            var result = await new Pyro().RunAsync(new RunRequest
            {
                Environment = "debian:12",
                Command = ["git", "--version"],
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
                ["command"] = result.Command,
                ["environment"] = result.Environment,
                ["execution_mode"] = Output.Word(result.ExecutionMode),
                ["exit_code"] = result.ExitCode,
                ["guest_kernel"] = result.GuestKernel,
                ["duration_ms"] = result.DurationMs,
                ["stdout"] = result.Stdout,
            });
            return result.ExitCode;
        }));
        return demo;
    }
}
