using System.CommandLine;

namespace PyroMcp.Cli;

/// <summary><c>pyro doctor</c></summary>
internal static class DoctorCommand
{
    internal static Command Build()
    {
        var doctor = new Command("doctor", "Check the host: packages, KVM, the accelerator guests will get, caches.") { RunCommand.Accel, Output.Json };
        doctor.SetAction((parse, _) => Output.GuardAsync(parse.GetValue(Output.Json), async () =>
        {
            var options = parse.GetValue(RunCommand.Accel) is { } accel ? new PyroOptions { Accelerator = PyroOptions.ParseAccelerator(accel) } : null;
            var report = await new Pyro(options).DoctorAsync(CliApp.Interrupted);
            if (parse.GetValue(Output.Json))
            {
                Output.WriteJson(report, PyroJsonContext.Default.DoctorReport);
                return report.Runtime == "PASS" ? 0 : CliApp.ExitFailure;
            }

            static string Yes(bool b) => b ? "yes" : "no";
            Console.WriteLine($"Platform: {report.Platform}");
            Console.WriteLine($"Runtime: {report.Runtime}");
            foreach (var issue in report.RuntimeIssues)
            {
                Console.WriteLine($"  - {issue}");
            }

            Console.WriteLine($"KVM: exists={Yes(report.Kvm.Exists)} readable={Yes(report.Kvm.Readable)} writable={Yes(report.Kvm.Writable)} usable={Yes(report.Kvm.Usable)}");
            Console.WriteLine($"  {report.Kvm.Reason}");
            var chosen = report.Accelerator.Chosen?.ToString().ToLowerInvariant() ?? "none";
            Console.WriteLine($"Accelerator: {chosen} (requested {report.Accelerator.Requested.ToString().ToLowerInvariant()}; override with --accel or PYRO_ACCEL)");
            Console.WriteLine($"  {report.Accelerator.Reason}");
            Console.WriteLine($"QEMU: {(report.Qemu is null ? "not found" : $"{report.Qemu.Version} ({report.Qemu.Path})")}");
            var confinement = report.QemuConfinement;
            Console.WriteLine($"QEMU confinement: sandbox={confinement.Sandbox} runs_as={confinement.RunsAs ?? "caller (not root)"}{(confinement.RunsAs is null ? "" : confinement.DedicatedUser ? " (dedicated user)" : " (shared user)")} pid_namespace={Yes(confinement.PidNamespace)}");
            Console.WriteLine($"Guest kernel: {report.GuestKernel}");
            Console.WriteLine($"Guest agent: {report.AgentPath} ({(report.AgentPresent ? "present" : "missing")})");
            Console.WriteLine($"Environment cache: {report.EnvironmentCacheDir}");
            Console.WriteLine($"Runtime cache: {report.RuntimeCacheDir}");
            var net = report.Networking;
            Console.WriteLine($"Networking: passt={Yes(net.PasstPath is not null)}{(net.PasstVersion is null ? "" : $" version={net.PasstVersion}")} starts={Yes(net.PasstStarts)}");
            Console.WriteLine($"  {net.Detail}");
            Console.WriteLine($"Capabilities: vm_boot={Yes(report.Capabilities.VmBoot)} guest_exec={Yes(report.Capabilities.GuestExec)} guest_network={Yes(report.Capabilities.GuestNetwork)}");
            if (report.MissingPackages.Count == 0)
            {
                Console.WriteLine("Host packages: all present");
            }
            else
            {
                foreach (var missing in report.MissingPackages)
                {
                    Console.WriteLine($"Missing: {missing.Tool} (package {missing.Package}) - {missing.Purpose}");
                }

                Console.WriteLine($"Install with: {report.InstallCommand}");
            }

            foreach (var warning in report.Warnings)
            {
                Console.WriteLine($"Warning: {warning}");
            }

            return report.Runtime == "PASS" ? 0 : CliApp.ExitFailure;
        }));
        return doctor;
    }
}
