using PyroMcp.GuestAgent;

// The guest agent: started once per boot by the initramfs (through tini), it serves the host
// over one virtio-serial port until the VM powers off.
if (args is [ExecAs.Flag, ..])
{
    // The agent as a launcher: switch user, then exec the command (see ExecAs).
    return ExecAs.Run(args);
}

if (args is ["--version"])
{
    // Lets the host (and the bench) time the agent's start-up inside a guest.
    Console.WriteLine(typeof(AgentOptions).Assembly.GetName().Version);
    return 0;
}

// Reads and writes on the virtio port block a pool thread each (a character device has no async
// I/O), and a one-vCPU guest starts with a pool of one: every other work item, hello's handler
// first, then waited for the pool's starvation check to add a thread, ~0.5 s at a time.
ThreadPool.GetMinThreads(out var workers, out var completions);
ThreadPool.SetMinThreads(Math.Max(workers, 8), completions);
var options = AgentOptions.Parse(args);
ImageDefaults.Load();
var port = await VirtioPort.OpenAsync(options.PortName, TimeSpan.FromSeconds(30));
await using var server = new AgentServer(port, options);
await server.RunAsync();
return 0;
