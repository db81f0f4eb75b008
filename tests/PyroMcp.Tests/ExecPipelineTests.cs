using System.Text;
using PyroMcp.Execution;
using PyroMcp.Protocol;
using PyroMcp.Vmm;

namespace PyroMcp.Tests;

/// <summary>
/// The exec pipeline against a fake guest in memory: what it refuses before asking the guest,
/// what it asks for, how output is capped and teed, and how the result is filled.
/// </summary>
public sealed class ExecPipelineTests
{
    private static RunRequest Request(IReadOnlyList<string> command, int timeoutSeconds = 30) => new() { Environment = "debian:12", Command = command, TimeoutSeconds = timeoutSeconds };

    [Fact]
    public void ABadRequestIsRefusedBeforeAnyGuestIsAsked()
    {
        Assert.Equal("missing_command", Assert.Throws<PyroInputException>(() => ExecPipeline.Plan(Request([]), host: null)).Code);
        Assert.Equal("missing_command", Assert.Throws<PyroInputException>(() => ExecPipeline.Plan(Request([" "]), host: null)).Code);
        Assert.Equal("invalid_timeout", Assert.Throws<PyroInputException>(() => ExecPipeline.Plan(Request(["true"], 0), host: null)).Code);
        Assert.Equal("sh -c 'echo hi'", ExecPipeline.Plan(Request(["sh", "-c", "echo hi"]), host: null).CommandText);
    }

    [Fact]
    public async Task OutputIsCappedTeedAndTheResultFilled()
    {
        ExecRequest? asked = null;
        var pipe = new DuplexPipe();
        await using var agent = GuestAgentClient.Over(pipe.Host);
        await using var guest = new FakeGuest(pipe.Guest, async (g, frame, request) =>
        {
            asked = request.Exec;
            // More stdout than the cap, in two frames; a little stderr.
            await g.SendAsync(new Frame(frame.StreamId, FrameType.Stdout, Encoding.UTF8.GetBytes("0123456789")));
            await g.SendAsync(new Frame(frame.StreamId, FrameType.Stdout, Encoding.UTF8.GetBytes("abcdef")));
            await g.SendAsync(new Frame(frame.StreamId, FrameType.Stderr, Encoding.UTF8.GetBytes("warn\n")));
            await g.SendAsync(new Frame(frame.StreamId, FrameType.Result, ProtocolJsonContext.Encode(new AgentResponse { Exec = new ExecExit { ExitCode = 137, Signal = "SIGKILL", TimedOut = true } })));
        });

        var teed = new StringBuilder();
        var request = Request(["echo hi | tr a-z A-Z"], timeoutSeconds: 7) with
        {
            OnStdout = data => { teed.Append(Encoding.UTF8.GetString(data.Span)); return ValueTask.CompletedTask; },
        };
        var plan = ExecPipeline.Plan(request, host: null);
        var output = await ExecPipeline.ExecuteAsync(agent, plan, "/workspace/src", maxOutputBytes: 12, CancellationToken.None);

        // What the guest was asked: the shell string, the cwd, the timeout and the cap.
        Assert.NotNull(asked);
        Assert.Equal("echo hi | tr a-z A-Z", asked.Shell);
        Assert.Null(asked.Argv);
        Assert.Equal("/workspace/src", asked.Cwd);
        Assert.Equal(7000, asked.TimeoutMs);
        Assert.Equal(12, asked.MaxOutputBytes);

        // Kept and passed on: exactly the cap.
        Assert.Equal("0123456789ab", output.Stdout);
        Assert.Equal("0123456789ab", teed.ToString());

        var result = output.Complete(new WorkspaceExecResult { WorkspaceId = "0123456789ab", Sequence = 4, Command = plan.CommandText, Cwd = "/workspace/src" }, durationMs: 42);
        Assert.Equal(137, result.ExitCode);
        Assert.Equal("SIGKILL", result.Signal);
        Assert.True(result.TimedOut);
        Assert.Equal("0123456789ab", result.Stdout);
        Assert.Equal("warn\n", result.Stderr);
        Assert.True(result.StdoutTruncated);
        Assert.False(result.StderrTruncated);
        Assert.Equal(42, result.DurationMs);
        // What the caller said stays.
        Assert.Equal(4, result.Sequence);
        Assert.Equal("echo hi | tr a-z A-Z", result.Command);
    }

    [Fact]
    public async Task AWorkingDirectoryTheGuestLacksIsAnInputError()
    {
        var pipe = new DuplexPipe();
        await using var agent = GuestAgentClient.Over(pipe.Host);
        await using var guest = new FakeGuest(pipe.Guest, async (g, frame, request) =>
            await g.SendAsync(new Frame(frame.StreamId, FrameType.Error, ProtocolJsonContext.Encode(new AgentError("cwd_not_found", $"working directory {request.Exec!.Cwd} does not exist in the guest")))));

        var plan = ExecPipeline.Plan(Request(["pwd"]), host: null);
        var refused = await Assert.ThrowsAsync<PyroInputException>(() => ExecPipeline.ExecuteAsync(agent, plan, "/nope", 1024, CancellationToken.None));
        Assert.Equal("cwd_not_found", refused.Code);
        Assert.Contains("/nope", refused.Message);
        Assert.DoesNotContain("--", refused.Message);
    }
}
