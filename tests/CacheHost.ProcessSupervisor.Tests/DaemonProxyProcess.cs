using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using CacheHost.Testing;

namespace CacheHost.ProcessSupervisor.Tests;

/// <summary>
/// The real program (<c>cachehost daemonproxy …</c> from the build output next to the tests) as a child
/// process: lines to its stdin, lines from its stdout and stderr, bounded waits everywhere.
/// </summary>
internal sealed class DaemonProxyProcess : IDisposable
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);
    private readonly Process _process;
    private readonly BlockingCollection<string> _stdout = new();
    private readonly ConcurrentQueue<string> _stderr = new();
    private readonly StringBuilder _stdoutRaw = new();
    private readonly Thread _outThread;
    private readonly Thread _errThread;

    private DaemonProxyProcess(Process process, bool readStdout)
    {
        _process = process;
        _outThread = new Thread(() => Pump(process.StandardOutput.BaseStream, line => _stdout.Add(line), raw: true)) { IsBackground = true };
        _errThread = new Thread(() => Pump(process.StandardError.BaseStream, _stderr.Enqueue, raw: false)) { IsBackground = true };
        if (readStdout)
        {
            _outThread.Start();
        }

        _errThread.Start();
    }

    /// <summary>Starts reading stdout (for tests that first leave the supervisor's output unread).</summary>
    public void StartReadingStdout() => _outThread.Start();

    public int Pid => _process.Id;

    public Process Process => _process;

    public IReadOnlyCollection<string> Stderr => _stderr.ToArray();

    /// <summary>Everything read from stdout so far, unsplit.</summary>
    public string StdoutRaw
    {
        get
        {
            lock (_stdoutRaw)
            {
                return _stdoutRaw.ToString();
            }
        }
    }

    public static string ProgramDll => Path.Combine(AppContext.BaseDirectory, "cachehost.dll");

    /// <summary>Starts <c>dotnet cachehost.dll daemonproxy ARGS</c>; with <paramref name="skipBanner"/> the 6 info lines are checked and consumed.</summary>
    public static DaemonProxyProcess Start(IEnumerable<string> args, bool skipBanner = true, string? workingDirectory = null, string? programName = null, Dictionary<string, string>? env = null, bool readStdout = true)
    {
        var psi = new ProcessStartInfo
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? AppContext.BaseDirectory,
        };
        if (programName is null)
        {
            ProgramUnderTest.Configure(psi);
            psi.ArgumentList.Add("daemonproxy");
        }
        else
        {
            psi.FileName = programName;
        }

        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        if (env is not null)
        {
            foreach (var (k, v) in env)
            {
                psi.Environment[k] = v;
            }
        }

        var p = new DaemonProxyProcess(Process.Start(psi)!, readStdout);
        if (skipBanner && readStdout)
        {
            for (var i = 0; i < 6; i++)
            {
                Assert.StartsWith("info\t", p.NextLine());
            }
        }

        return p;
    }

    private void Pump(Stream stream, Action<string> onLine, bool raw)
    {
        var buffer = new byte[65536];
        var pending = new List<byte>();
        try
        {
            int n;
            while ((n = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                if (raw)
                {
                    lock (_stdoutRaw)
                    {
                        _stdoutRaw.Append(Encoding.Latin1.GetString(buffer, 0, n));
                    }
                }

                for (var i = 0; i < n; i++)
                {
                    if (buffer[i] == (byte)'\n')
                    {
                        onLine(Encoding.Latin1.GetString(pending.ToArray()));
                        pending.Clear();
                    }
                    else
                    {
                        pending.Add(buffer[i]);
                    }
                }
            }
        }
        catch (IOException)
        {
        }
        catch (ObjectDisposedException)
        {
        }

        if (raw)
        {
            _stdout.CompleteAdding();
        }
    }

    public void Send(string line) => SendRaw(line + "\n");

    public void SendRaw(string text)
    {
        var bytes = Encoding.Latin1.GetBytes(text);
        _process.StandardInput.BaseStream.Write(bytes);
        _process.StandardInput.BaseStream.Flush();
    }

    public void CloseInput() => _process.StandardInput.Close();

    /// <summary>Closes the read end of the supervisor's stdout (its next write gets EPIPE); only before reading started.</summary>
    public void CloseOutput() => _process.StandardOutput.Close();

    /// <summary>
    /// The next stdout line; fails after the timeout or at EOF. <c>fd.state</c> lines of descriptors the test
    /// runner itself inherited (fd_N, daemonproxy §2.4 step 4) depend on the environment and are skipped.
    /// </summary>
    public string NextLine(TimeSpan? timeout = null)
    {
        while (true)
        {
            if (!_stdout.TryTake(out var line, timeout ?? DefaultTimeout))
            {
                Assert.Fail($"no line from the supervisor within {(timeout ?? DefaultTimeout).TotalSeconds} s; stderr: {string.Join(" | ", _stderr)}");
            }

            if (!line!.StartsWith("fd.state\tfd_", StringComparison.Ordinal))
            {
                return line;
            }
        }
    }

    /// <summary>True when stdout ended (EOF) within the timeout without more lines.</summary>
    public bool TryNextLine(TimeSpan timeout, out string? line) => _stdout.TryTake(out line, timeout);

    /// <summary>Asserts the next line equals <paramref name="expected"/>, where <c>{n}</c> stands for a number that varies (timestamps, pids).</summary>
    public string Expect(string expected, TimeSpan? timeout = null)
    {
        var line = NextLine(timeout);
        AssertLine(expected, line);
        return line;
    }

    public static void AssertLine(string expected, string actual)
    {
        var pattern = "^" + Regex.Escape(expected).Replace(@"\{n}", @"-?\d+") + "$";
        Assert.True(Regex.IsMatch(actual, pattern), $"expected  <{Show(expected)}>\n but got  <{Show(actual)}>");
    }

    public static string Show(string s) => s.Replace("\t", "<TAB>").Replace("\r", "<CR>");

    /// <summary>Reads lines until one matches; returns the lines before it and the match.</summary>
    public (List<string> Skipped, string Line) WaitFor(Func<string, bool> match, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        var skipped = new List<string>();
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !_stdout.TryTake(out var line, left))
            {
                Assert.Fail($"line not seen in time; got: {string.Join(" | ", skipped.Select(Show))}; stderr: {string.Join(" | ", _stderr)}");
                throw new InvalidOperationException();
            }

            if (match(line!))
            {
                return (skipped, line!);
            }

            skipped.Add(line!);
        }
    }

    /// <summary>Sends <c>echo MARK</c> and returns every line before the echo.</summary>
    public List<string> Sync(string mark = "-sync-")
    {
        Send("echo\t" + mark);
        return WaitFor(l => l == mark).Skipped;
    }

    /// <summary>Like <see cref="Sync"/> but keeps the inherited fd_N lines.</summary>
    public List<string> SyncAll(string mark)
    {
        Send("echo\t" + mark);
        var lines = new List<string>();
        while (true)
        {
            if (!_stdout.TryTake(out var line, DefaultTimeout))
            {
                Assert.Fail("sync mark not seen");
            }

            if (line == mark)
            {
                return lines;
            }

            lines.Add(line!);
        }
    }

    public bool WaitForStderr(Func<string, bool> match, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (_stderr.Any(match))
            {
                return true;
            }

            Thread.Sleep(20);
        }

        return false;
    }

    public int WaitForExit(TimeSpan? timeout = null)
    {
        Assert.True(_process.WaitForExit(timeout ?? DefaultTimeout), "supervisor did not exit in time");
        if ((_outThread.ThreadState & System.Threading.ThreadState.Unstarted) == 0)
        {
            _outThread.Join(2000);
        }

        _errThread.Join(2000);
        return _process.ExitCode;
    }

    /// <summary>
    /// Number of open descriptors of the supervisor (/proc/PID/fd), leaving out the runtime's own lazily
    /// opened assembly files (.dll/.so), which are not connections or handles.
    /// </summary>
    public int CountFds() => FdLinks().Count;

    /// <summary>"fd -> target" for every open descriptor of the supervisor (diagnostics).</summary>
    public List<string> FdLinks()
    {
        var list = new List<string>();
        foreach (var path in Directory.GetFileSystemEntries($"/proc/{Pid}/fd"))
        {
            try
            {
                var target = new FileInfo(path).LinkTarget ?? "";
                if (!target.EndsWith(".dll", StringComparison.Ordinal) && !target.EndsWith(".so", StringComparison.Ordinal))
                {
                    list.Add(Path.GetFileName(path) + "->" + target);
                }
            }
            catch (IOException)
            {
            }
        }

        return list;
    }

    public void Signal(int signo) => TestLibc.kill(Pid, signo);

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: false);
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
    }
}
