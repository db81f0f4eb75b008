using PyroMcp.GuestAgent;

// The guest agent: started once per boot by the initramfs (through tini), it serves the host
// over one virtio-serial port until the VM powers off.
if (args is ["--version"])
{
    // Lets the host (and the bench) time the agent's start-up inside a guest.
    Console.WriteLine(typeof(AgentOptions).Assembly.GetName().Version);
    return 0;
}

var options = AgentOptions.Parse(args);
var port = await VirtioPort.OpenAsync(options.PortName, TimeSpan.FromSeconds(30));
await using var server = new AgentServer(port, options);
await server.RunAsync();
return 0;
