using System.Diagnostics;
using System.Globalization;
using System.Text;
using PyroMcp.GuestAgent.Services;
using PyroMcp.Protocol;

namespace PyroMcp.GuestAgent.Shells;

/// <summary>
/// One interactive shell on a PTY: the shell leads its own session with the PTY as its
/// controlling terminal, and a reader thread keeps the last <see cref="RingChars"/> characters of
/// what it printed.
/// </summary>
internal sealed class ShellSession
{
    internal const int RingChars = 1024 * 1024;
    internal const int DefaultReadChars = 64 * 1024;

    /// <summary>
    /// JSON bytes a read answer may spend on output, so the reply fits one frame: control and
    /// non-ASCII characters cost six bytes each in the encoder's escapes.
    /// </summary>
    private const int ReadBudgetBytes = 192 * 1024;

    private static readonly TimeSpan WriteDeadline = TimeSpan.FromSeconds(10);

    private readonly Lock _gate = new();
    private readonly SemaphoreSlim _writing = new(1, 1);
    private readonly char[] _ring = new char[RingChars];
    private readonly Thread _reader;
    private readonly Process _process;
    private int _master;
    private int _slave;
    private long _total;
    private volatile bool _closing;
    private string _state = "running";
    private int? _exitCode;

    private ShellSession(string id, string cwd, int cols, int rows, int master, int slave, Process process)
    {
        Id = id;
        Cwd = cwd;
        Cols = cols;
        Rows = rows;
        _master = master;
        _slave = slave;
        _process = process;
        Pid = process.Id;
        StartedAtMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        _reader = new Thread(ReadLoop) { IsBackground = true, Name = "pyro-shell-" + id };
    }

    internal string Id { get; }

    internal string Cwd { get; }

    internal int Cols { get; }

    internal int Rows { get; }

    internal int Pid { get; }

    internal long StartedAtMs { get; }

    /// <summary>Completes once the reader thread has stopped.</summary>
    internal TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal static ShellSession Open(string id, string cwd, int cols, int rows, Dictionary<string, string> env, string busybox)
    {
        var (master, slavePath) = PtyInterop.OpenPty(cols, rows);
        var slave = -1;
        try
        {
            // Ours stays open while the shell runs: the master then never reads EIO before the
            // shell has opened its end.
            slave = PtyInterop.OpenSlave(slavePath);
            var shell = File.Exists("/bin/bash") ? "/bin/bash" : "/bin/sh";
            var start = new ProcessStartInfo("/bin/sh")
            {
                WorkingDirectory = cwd,
                UseShellExecute = false,
            };
            // busybox setsid (no fork: the child of Process.Start leads no group) makes the shell a
            // session leader, -c makes its stdin, the PTY, the controlling terminal; so the pid
            // Process.Start returns is the session and its first group.
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add("exec \"$0\" setsid -c \"$1\" -i <>\"$2\" >&0 2>&0");
            start.ArgumentList.Add(busybox);
            start.ArgumentList.Add(shell);
            start.ArgumentList.Add(slavePath);
            start.Environment.Clear();
            foreach (var (key, value) in env)
            {
                start.Environment[key] = value;
            }

            var process = Process.Start(start) ?? throw new IOException("could not start the shell");
            var session = new ShellSession(id, cwd, cols, rows, master, slave, process);
            session._reader.Start();
            _ = session.WatchExitAsync();
            return session;
        }
        catch
        {
            PtyInterop.Close(slave);
            PtyInterop.Close(master);
            throw;
        }
    }

    internal ShellInfo Info()
    {
        lock (_gate)
        {
            return InfoLocked();
        }
    }

    internal async Task<ShellInfo> WriteAsync(string input, bool appendNewline, CancellationToken cancellationToken)
    {
        var bytes = Encoding.UTF8.GetBytes(appendNewline ? input + "\n" : input);
        await _writing.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Off the thread pool's async path: the loop polls, and a shell that reads nothing
            // could hold it up to the deadline.
            var written = await Task.Run(() => WriteAll(bytes), CancellationToken.None).ConfigureAwait(false);
            if (written < bytes.Length)
            {
                throw new AgentFailure("shell_input_blocked", string.Create(CultureInfo.InvariantCulture,
                    $"shell {Id} took only {written} of {bytes.Length} bytes in {WriteDeadline.TotalSeconds:0} s: it is not reading its terminal; signal INT or read its output first"));
            }
        }
        finally
        {
            _writing.Release();
        }

        return Info();
    }

    private int WriteAll(byte[] bytes)
    {
        var clock = Stopwatch.StartNew();
        var offset = 0;
        while (offset < bytes.Length && clock.Elapsed < WriteDeadline)
        {
            int master;
            lock (_gate)
            {
                if (_state != "running")
                {
                    throw Closed();
                }

                master = _master;
            }

            var written = PtyInterop.Write(master, bytes.AsSpan(offset));
            if (written > 0)
            {
                offset += written;
            }
            else if (written is -PtyInterop.EAGAIN or -PtyInterop.EINTR)
            {
                PtyInterop.Poll(master, PtyInterop.POLLOUT, 100);
            }
            else
            {
                throw Closed();
            }
        }

        return offset;
    }

    internal ShellOutput Read(long cursor, int maxChars)
    {
        lock (_gate)
        {
            var ringStart = Math.Max(0, _total - RingChars);
            if (cursor < 0 || cursor > _total)
            {
                throw new AgentFailure("bad_request", string.Create(CultureInfo.InvariantCulture,
                    $"cursor {cursor} is past the end of the output ({_total}); read from next_cursor of the last answer, or 0"));
            }

            var from = Math.Max(cursor, ringStart);
            var available = _total - from;
            var count = 0;
            var budget = ReadBudgetBytes;
            while (count < available && count < maxChars)
            {
                var c = _ring[(from + count) % RingChars];
                budget -= c switch
                {
                    '"' or '\\' or '\n' or '\r' or '\t' => 2,
                    '<' or '>' or '&' or '\'' or '+' or '`' => 6,
                    >= ' ' and < '\u007f' => 1,
                    _ => 6,
                };
                if (budget < 0)
                {
                    break;
                }

                count++;
            }

            // Never end inside a surrogate pair: the next read starts with its whole character.
            if (count > 0 && count < available && char.IsHighSurrogate(_ring[(from + count - 1) % RingChars]))
            {
                count--;
            }

            var output = new char[count];
            var start = (int)(from % RingChars);
            var first = Math.Min(count, RingChars - start);
            Array.Copy(_ring, start, output, 0, first);
            Array.Copy(_ring, 0, output, first, count - first);
            return new ShellOutput
            {
                Shell = InfoLocked(),
                Output = new string(output),
                Cursor = from,
                NextCursor = from + count,
                DroppedChars = from - cursor,
                Truncated = from + count < _total,
            };
        }
    }

    internal ShellInfo Signal(int signal)
    {
        int master;
        lock (_gate)
        {
            if (_state != "running")
            {
                throw Closed();
            }

            master = _master;
        }

        // What Ctrl-C does: the terminal's foreground job, else the shell's own group.
        var group = PtyInterop.ForegroundGroup(master);
        if (group <= 1 || !ProcessTree.SignalGroup(group, signal))
        {
            ProcessTree.SignalGroup(Pid, signal);
        }

        return Info();
    }

    /// <summary>HUP then KILL to the whole session (jobs have groups of their own), then the PTY goes.</summary>
    internal async Task<ShellInfo> CloseAsync()
    {
        _closing = true;
        ProcessTree.SignalSession(Pid, ProcessTree.SIGHUP);
        ProcessTree.SignalSession(Pid, ProcessTree.SIGCONT);
        await Task.WhenAny(_process.WaitForExitAsync(), Task.Delay(500)).ConfigureAwait(false);
        ProcessTree.SignalSession(Pid, ProcessTree.SIGKILL);
        await Task.WhenAny(_process.WaitForExitAsync(), Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
        await Task.WhenAny(Done.Task, Task.Delay(TimeSpan.FromSeconds(2))).ConfigureAwait(false);
        lock (_gate)
        {
            _state = "closed";
            if (Done.Task.IsCompleted)
            {
                // The reader has left: nothing else uses the descriptors.
                PtyInterop.Close(_master);
                _master = -1;
            }

            PtyInterop.Close(_slave);
            _slave = -1;
            return InfoLocked();
        }
    }

    private ShellInfo InfoLocked() => new()
    {
        Id = Id,
        State = _state,
        Cwd = Cwd,
        Cols = Cols,
        Rows = Rows,
        Pid = Pid,
        ExitCode = _exitCode,
        StartedAtMs = StartedAtMs,
        OutputChars = _total,
    };

    private AgentFailure Closed()
        => new("shell_closed", $"shell {Id} has {(_state == "closed" ? "been closed" : "exited")}; its output stays readable until shell.close, open a new shell to go on");

    private async Task WatchExitAsync()
    {
        await _process.WaitForExitAsync().ConfigureAwait(false);
        lock (_gate)
        {
            if (_state == "running")
            {
                _state = "exited";
            }

            _exitCode = _process.ExitCode;

            // Now the master reads EIO once the last job holding the terminal is gone.
            PtyInterop.Close(_slave);
            _slave = -1;
        }
    }

    private void ReadLoop()
    {
        var buffer = new byte[16 * 1024];
        var chars = new char[Encoding.UTF8.GetMaxCharCount(buffer.Length)];
        var decoder = Encoding.UTF8.GetDecoder();
        try
        {
            // A closing shell's last output is not wanted: nobody can read it after close.
            while (!_closing)
            {
                if (PtyInterop.Poll(_master, PtyInterop.POLLIN, 200) == 0)
                {
                    continue;
                }

                var read = PtyInterop.Read(_master, buffer);
                if (read > 0)
                {
                    var count = decoder.GetChars(buffer, 0, read, chars, 0, flush: false);
                    Append(chars.AsSpan(0, count));
                }
                else if (read is -PtyInterop.EAGAIN or -PtyInterop.EINTR)
                {
                    continue;
                }
                else
                {
                    // EIO: no process holds the terminal any more.
                    break;
                }
            }

            var tail = decoder.GetChars([], 0, 0, chars, 0, flush: true);
            Append(chars.AsSpan(0, tail));
        }
        finally
        {
            Done.TrySetResult();
            lock (_gate)
            {
                if (_state == "closed")
                {
                    PtyInterop.Close(_master);
                    _master = -1;
                }
            }
        }
    }

    private void Append(ReadOnlySpan<char> text)
    {
        lock (_gate)
        {
            if (text.Length > RingChars)
            {
                _total += text.Length - RingChars;
                text = text[^RingChars..];
            }

            var start = (int)(_total % RingChars);
            var first = Math.Min(text.Length, RingChars - start);
            text[..first].CopyTo(_ring.AsSpan(start));
            text[first..].CopyTo(_ring);
            _total += text.Length;
        }
    }
}
