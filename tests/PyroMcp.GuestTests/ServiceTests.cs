using System.Diagnostics;
using System.Net;
using System.Text.Json;

namespace PyroMcp.GuestTests;

/// <summary>
/// Services against a real guest inside a <see cref="NetLab"/> (a published port needs the
/// egress+published-ports policy, and egress guests only run in a lab): a web server started
/// with --ready-http and --publish, probed from the host with curl; readiness that fails, a
/// service that exits, ports that follow their service.
/// </summary>
public sealed class ServiceTests : LabGuestTest
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task AWebServiceIsReadyOverHttpPublishedToCurlAndItsPortFollowsIt()
    {
        var id = (await Lab.PyroOkAsync(["workspace", "create", "debian:12", "--network-policy", "egress+published-ports", "--id-only"], timeout: TimeSpan.FromMinutes(5))).Stdout.Trim();
        DeleteAfterwards(id);
        var page = "pyro-service-" + Guid.NewGuid().ToString("N")[..12];
        await ExecAsync(id, $"mkdir -p www && echo {page} > www/index.html");

        // The server binds only after 2 s: start must wait for readiness, not for the process.
        var start = await Lab.PyroAsync(["workspace", "service", "start", id, "web", "--ready-http", "http://127.0.0.1:8080/", "--publish", "8080", "--json",
            "--", "sh", "-c", "sleep 2; exec /run/pyro/busybox httpd -f -p 127.0.0.1:8080 -h /workspace/www"], timeout: TimeSpan.FromMinutes(3));
        Assert.True(start.ExitCode == 0, start.ToString());
        var web = start.Json;
        Assert.Equal("running", web.GetProperty("state").GetString());
        Assert.Equal("http", web.GetProperty("readiness").GetProperty("type").GetString());
        var port = web.GetProperty("published_ports")[0];
        Assert.Equal(8080, port.GetProperty("guest_port").GetInt32());
        Assert.Equal("web", port.GetProperty("service").GetString());
        var hostPort = port.GetProperty("host_port").GetInt32();

        var curl = await Lab.ExecAsync("curl", ["-sS", "--max-time", "20", $"http://127.0.0.1:{hostPort}/"]);
        Assert.True(curl.ExitCode == 0, curl.ToString());
        Assert.Equal(page + "\n", curl.Stdout);

        // A second service with output on both streams, ready by file.
        var worker = await Lab.PyroOkAsync(["workspace", "service", "start", id, "worker", "--ready-file", ".worker-ready",
            "--", "sh", "-c", "echo out-line; echo err-line >&2; touch .worker-ready; exec sleep 1000"]);
        Assert.Contains($"[workspace-service-start] workspace_id={id} service=worker state=running", worker.Stdout);

        var list = await Lab.PyroOkAsync(["workspace", "service", "list", id]);
        Assert.Contains("Services: 2 total, 2 running", list.Stdout);
        Assert.Contains("- web [running]", list.Stdout);
        var logs = (await Lab.PyroOkAsync(["workspace", "service", "logs", id, "worker", "--tail-lines", "10", "--json"])).Json;
        Assert.Equal("out-line\n", logs.GetProperty("stdout").GetString());
        Assert.Equal("err-line\n", logs.GetProperty("stderr").GetString());
        var status = await Lab.PyroOkAsync(["workspace", "status", id]);
        Assert.Contains("Services: 2 running of 2", status.Stdout);
        Assert.Contains($"127.0.0.1:{hostPort}->8080/tcp", status.Stdout);

        // Service files live outside /workspace: the diff shows only what the test wrote.
        var diff = (await Lab.PyroOkAsync(["workspace", "diff", id, "--json"])).Json.GetRawText();
        Assert.Contains("index.html", diff);
        Assert.DoesNotContain("stdout.log", diff);
        Assert.DoesNotContain("service.json", diff);

        // Readiness that never passes: start fails with the probe's result, and the service is gone.
        var bad = await Lab.PyroAsync(["workspace", "service", "start", id, "bad", "--ready-tcp", "127.0.0.1:9", "--ready-timeout-seconds", "3", "--json",
            "--", "sh", "-c", "echo bad-started; exec sleep 4242"]);
        Assert.True(bad.ExitCode != 0, bad.ToString());
        var error = bad.Json.GetProperty("error");
        Assert.Equal("service_not_ready", error.GetProperty("code").GetString());
        Assert.Contains("bad-started", error.GetProperty("message").GetString());
        var badStatus = (await Lab.PyroOkAsync(["workspace", "service", "status", id, "bad", "--json"])).Json;
        Assert.Equal("failed", badStatus.GetProperty("state").GetString());
        Assert.Equal(0, await CountProcessesAsync(id, "sleep 4242"));

        // A service that ends by itself is listed as exited, with its code.
        await Lab.PyroOkAsync(["workspace", "service", "start", id, "oneshot", "--", "sh", "-c", "sleep 1; exit 7"]);
        var oneshot = await WaitForStateAsync(id, "oneshot", "exited");
        Assert.Equal(7, oneshot.GetProperty("exit_code").GetInt32());

        // The port follows its service: stopped, it is released at once.
        var stop = await Lab.PyroOkAsync(["workspace", "service", "stop", id, "web"]);
        Assert.Contains($"[workspace-service-stop] workspace_id={id} service=web state=stopped", stop.Stdout);
        Assert.False(await Lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Loopback, hostPort)), "the port of a stopped service still answers");
        Assert.Empty((await Lab.PyroOkAsync(["workspace", "status", id, "--json"])).Json.GetProperty("published_ports").EnumerateArray());

        // Killed from inside the guest, the supervisor notices and releases its port.
        var again = (await Lab.PyroOkAsync(["workspace", "service", "start", id, "web2", "--ready-tcp", "127.0.0.1:8081", "--publish", "8081", "--json",
            "--", "/run/pyro/busybox", "httpd", "-f", "-p", "127.0.0.1:8081", "-h", "/workspace/www"])).Json;
        var pid = again.GetProperty("pid").GetInt32();
        var port2 = again.GetProperty("published_ports")[0].GetProperty("host_port").GetInt32();
        Assert.True(await Lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Loopback, port2)), "web2's port does not answer");
        await ExecAsync(id, $"kill -9 -{pid}");
        await WaitForStateAsync(id, "web2", "exited");
        var clock = Stopwatch.StartNew();
        while ((await Lab.PyroOkAsync(["workspace", "status", id, "--json"])).Json.GetProperty("published_ports").GetArrayLength() > 0)
        {
            Assert.True(clock.Elapsed < Deadline, "the port of a service killed in the guest was not released");
            await Task.Delay(500);
        }

        Assert.False(await Lab.CanConnectFromClientAsync(new IPEndPoint(IPAddress.Loopback, port2)), "the port of an exited service still answers");
    }

    private async Task<JsonElement> WaitForStateAsync(string id, string name, string state)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var service = (await Lab.PyroOkAsync(["workspace", "service", "status", id, name, "--json"])).Json;
            if (service.GetProperty("state").GetString() == state)
            {
                return service;
            }

            Assert.True(clock.Elapsed < Deadline, $"service {name} did not become {state}: {service}");
            await Task.Delay(500);
        }
    }

    /// <summary>Processes in the guest whose command line contains <paramref name="text"/> (the search itself not counted).</summary>
    private async Task<int> CountProcessesAsync(string id, string text)
    {
        // "[s]leep 4242" matches "sleep 4242" but not the pattern in the searching shell's own command line.
        var pattern = "[" + text[0] + "]" + text[1..];
        var output = await ExecAsync(id, $"for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\"; echo; done 2>/dev/null | grep -c '{pattern}' || true");
        return int.Parse(output.Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    private async Task<string> ExecAsync(string id, string script)
    {
        var result = await Lab.PyroAsync(["workspace", "exec", id, "--json", "--timeout-seconds", "120", "--", "sh", "-c", script], timeout: TimeSpan.FromMinutes(3));
        Assert.True(result.ExitCode == 0, result.ToString());
        return result.Json.GetProperty("stdout").GetString()!;
    }
}
