using PyroMcp.Cli;

return await CliApp.RunAsync(args);
