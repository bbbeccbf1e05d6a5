using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;

namespace CacheHost.Testing;

/// <summary>
/// The real <c>cachehost</c> program as a child process (the test project must reference
/// src/CacheHost/CacheHost.csproj so that cachehost.dll sits next to the tests). Captures stdout and stderr
/// line by line and can wait for a line.
/// </summary>
public sealed class CacheHostProcess : IDisposable
{
    private readonly Process _process;
    private readonly BlockingCollection<string> _lines = new();
    private readonly ConcurrentQueue<string> _all = new();

    private CacheHostProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Add(e.Data, "out");
        process.ErrorDataReceived += (_, e) => Add(e.Data, "err");
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    /// <summary>Path of cachehost.dll next to the tests.</summary>
    public static string DllPath => Path.Combine(AppContext.BaseDirectory, "cachehost.dll");

    /// <summary>The process.</summary>
    public Process Process => _process;

    /// <summary>Every line so far (prefixed "out: " or "err: ").</summary>
    public IReadOnlyCollection<string> Lines => _all.ToArray();

    /// <summary>Starts <c>dotnet cachehost.dll args…</c> (or <see cref="ProgramUnderTest.Native"/>).</summary>
    public static CacheHostProcess Start(IEnumerable<string> args, IDictionary<string, string>? environment = null, string? fileName = null, string? workingDirectory = null)
    {
        var start = new ProcessStartInfo
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? AppContext.BaseDirectory,
        };
        if (fileName is null)
        {
            ProgramUnderTest.Configure(start);
        }
        else
        {
            start.FileName = fileName;
        }

        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        // Tests must not inherit a systemd environment from whoever runs them.
        foreach (var name in new[] { "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM" })
        {
            start.Environment.Remove(name);
        }

        if (environment is not null)
        {
            foreach (var (key, value) in environment)
            {
                start.Environment[key] = value;
            }
        }

        return new CacheHostProcess(Process.Start(start)!);
    }

    /// <summary>Waits for a line matching <paramref name="pattern"/>; fails with everything seen so far.</summary>
    public string WaitForLine(string pattern, TimeSpan timeout)
    {
        var regex = new Regex(pattern);
        foreach (var line in _all)
        {
            if (regex.IsMatch(line))
            {
                return line;
            }
        }

        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !_lines.TryTake(out var next, left))
            {
                throw new TimeoutException($"no line matching /{pattern}/ within {timeout.TotalSeconds} s; output:\n{string.Join('\n', _all)}");
            }

            if (regex.IsMatch(next))
            {
                return next;
            }
        }
    }

    /// <summary>Waits for exit and returns the exit code.</summary>
    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"process did not exit within {timeout.TotalSeconds} s; output:\n{string.Join('\n', _all)}");
        }

        _process.WaitForExit(); // drain the output readers
        return _process.ExitCode;
    }

    /// <summary>Sends a signal (e.g. 15 for SIGTERM).</summary>
    public void Signal(int signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }

    /// <summary>All output as one string.</summary>
    public string Output => string.Join('\n', _all);

    /// <inheritdoc />
    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
    }

    private void Add(string? line, string stream)
    {
        if (line is null)
        {
            return;
        }

        var tagged = $"{stream}: {line}";
        _all.Enqueue(tagged);
        _lines.Add(tagged);
    }
}
