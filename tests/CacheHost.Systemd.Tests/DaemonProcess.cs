using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using CacheHost.Testing;
using Mono.Unix.Native;

namespace CacheHost.Systemd.Tests;

/// <summary>The real built cachehost program as a child process, with its output captured line by line.</summary>
public sealed class DaemonProcess : IDisposable
{
    private readonly Process _process;
    private readonly BlockingCollection<string> _lines = new();
    private readonly List<string> _all = [];

    private DaemonProcess(ProcessStartInfo start)
    {
        _process = new Process { StartInfo = start, EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) => Add(e.Data);
        _process.ErrorDataReceived += (_, e) => Add(e.Data);
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public int Pid => _process.Id;

    public string Output
    {
        get
        {
            lock (_all)
            {
                return string.Join('\n', _all);
            }
        }
    }

    /// <summary>The test output folder, where the referenced cachehost program was copied.</summary>
    public static string ProgramDirectory => AppContext.BaseDirectory;

    /// <summary>The command that runs cachehost: the apphost, or dotnet plus cachehost.dll.</summary>
    public static string[] ProgramCommand()
    {
        var apphost = Path.Combine(ProgramDirectory, "cachehost");
        return ProgramUnderTest.Native is { } native ? [native] : File.Exists(apphost) ? [apphost] : ["dotnet", Path.Combine(ProgramDirectory, "cachehost.dll")];
    }

    /// <summary>A start description for cachehost (apphost when present, else dotnet cachehost.dll).</summary>
    /// <param name="args">Program arguments.</param>
    /// <param name="environment">Extra environment variables.</param>
    /// <param name="fileName">Another executable to start instead.</param>
    /// <param name="probe">Start cachehost-probe (the program plus the test-only Probe role) instead of cachehost.</param>
    public static ProcessStartInfo StartInfo(IEnumerable<string> args, IDictionary<string, string?>? environment = null, string? fileName = null, bool probe = false)
    {
        var apphost = Path.Combine(ProgramDirectory, "cachehost");
        var start = new ProcessStartInfo
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            WorkingDirectory = "/",
        };
        if (fileName is not null)
        {
            start.FileName = fileName;
        }
        else if (probe)
        {
            var command = ProgramUnderTest.ProbeCommand;
            start.FileName = command[0];
            foreach (var arg in command[1..])
            {
                start.ArgumentList.Add(arg);
            }
        }
        else if (ProgramUnderTest.Native is { } native)
        {
            start.FileName = native;
        }
        else if (File.Exists(apphost))
        {
            start.FileName = apphost;
        }
        else
        {
            start.FileName = "dotnet";
            start.ArgumentList.Add(Path.Combine(ProgramDirectory, "cachehost.dll"));
        }

        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        // The test runner's own environment must not leak systemd variables into the child.
        foreach (var name in new[] { "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "RUNTIME_DIRECTORY", "CACHEHOST_CONFIG" })
        {
            start.Environment.Remove(name);
        }

        start.Environment["DOTNET_NOLOGO"] = "1";
        if (environment is not null)
        {
            foreach (var (key, value) in environment)
            {
                start.Environment[key] = value;
            }
        }

        return start;
    }

    public static DaemonProcess Start(ProcessStartInfo start) => new(start);

    /// <summary>Starts cachehost with <paramref name="args"/>.</summary>
    public static DaemonProcess Start(IEnumerable<string> args, IDictionary<string, string?>? environment = null) => new(StartInfo(args, environment));

    /// <summary>Starts cachehost-probe (the program plus the test-only Probe role) with <paramref name="args"/>.</summary>
    public static DaemonProcess StartProbe(IEnumerable<string> args, IDictionary<string, string?>? environment = null) => new(StartInfo(args, environment, probe: true));

    public void Signal(Signum signal) => Assert.Equal(0, Syscall.kill(_process.Id, signal));

    /// <summary>Waits for an output line containing <paramref name="text"/>.</summary>
    public string WaitForLine(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !_lines.TryTake(out var line, left))
            {
                throw new TimeoutException($"no output line with '{text}' within {timeout.TotalSeconds}s; output:\n{Output}");
            }

            if (line.Contains(text, StringComparison.Ordinal))
            {
                return line;
            }
        }
    }

    /// <summary>Waits for exit and returns the exit code; kills and fails on timeout.</summary>
    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"cachehost did not exit within {timeout.TotalSeconds}s; output:\n{Output}");
        }

        // Also wait (bounded) for the output pipes to reach EOF, so the captured output is complete; a
        // descendant that kept them open must not hang the test.
        Task.Run(() => _process.WaitForExit()).Wait(TimeSpan.FromSeconds(5));
        return _process.ExitCode;
    }

    public bool HasExited => _process.HasExited;

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            try
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
            catch (InvalidOperationException)
            {
            }
        }

        _process.Dispose();
    }

    private void Add(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_all)
        {
            _all.Add(line);
        }

        _lines.Add(line);
    }
}

/// <summary>Small socket helpers for talking to the daemon.</summary>
public static class Wire
{
    public static string TempDir()
    {
        // Short: unix socket paths are limited to 107 bytes.
        var dir = Path.Combine("/tmp", "chs-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>Connects to a unix or TCP endpoint with a timeout.</summary>
    public static Socket Connect(System.Net.EndPoint endPoint, TimeSpan? timeout = null)
    {
        var socket = endPoint is UnixDomainSocketEndPoint
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(5));
        socket.ConnectAsync(endPoint, cts.Token).AsTask().GetAwaiter().GetResult();
        socket.ReceiveTimeout = 10_000;
        socket.SendTimeout = 10_000;
        return socket;
    }

    public static Socket ConnectUnix(string path) => Connect(new UnixDomainSocketEndPoint(path));

    /// <summary>Reads one LF-terminated line (without LF), byte by byte (the tests are small).</summary>
    public static string ReadLine(Socket socket)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        while (true)
        {
            var n = socket.Receive(one);
            if (n == 0)
            {
                throw new IOException("connection closed; partial line: " + Encoding.UTF8.GetString(bytes.ToArray()));
            }

            if (one[0] == (byte)'\n')
            {
                return Encoding.UTF8.GetString(bytes.ToArray());
            }

            bytes.Add(one[0]);
        }
    }

    public static void Send(Socket socket, string text) => socket.Send(Encoding.UTF8.GetBytes(text));

    /// <summary>Sends lines, then echo with a marker, and returns the reply lines before the marker.</summary>
    public static List<string> Exchange(Socket socket, params string[] lines)
    {
        var marker = "sync-" + Guid.NewGuid().ToString("N");
        Send(socket, string.Concat(lines.Select(l => l + "\n")) + "echo\t" + marker + "\n");
        var replies = new List<string>();
        while (true)
        {
            var line = ReadLine(socket);
            if (line == marker)
            {
                return replies;
            }

            replies.Add(line);
        }
    }

    public static int FreeTcpPort()
    {
        using var probe = new TcpListener(System.Net.IPAddress.Loopback, 0);
        probe.Start();
        return ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
    }
}
