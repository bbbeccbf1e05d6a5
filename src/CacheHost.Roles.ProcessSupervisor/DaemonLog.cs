using System.Text;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>Log levels of spec 11, lowest first. A message is written when its level is above the filter.</summary>
internal enum DaemonLogLevel
{
    None = 0,
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Fatal,
}

/// <summary>
/// The supervisor's own log (spec 11): lines <c>level: message</c> written to the descriptor of a named handle
/// (<c>stderr</c> by default, <c>log.dest</c> changes it). Writes wait at most 62.5 ms for the descriptor; a
/// message that cannot be written is dropped and counted, and <c>warning: lost N log messages</c> follows once
/// writing works again. When no handle has the destination name the log is silent.
/// </summary>
internal sealed unsafe class DaemonLog
{
    private static readonly string[] Names = ["none", "trace", "debug", "info", "warning", "error", "fatal"];
    private long _lost;

    /// <summary>Current filter; the default shows info and above.</summary>
    public DaemonLogLevel Filter { get; set; } = DaemonLogLevel.Debug;

    /// <summary>Resolves the destination descriptor (the handle named by <c>log.dest</c>), or -1.</summary>
    public Func<int> Destination { get; set; } = () => 2;

    /// <summary>Optional second sink (the appsettings host routes lines into ILogger as well).</summary>
    public Action<DaemonLogLevel, string>? Mirror { get; set; }

    public static string LevelName(DaemonLogLevel level) => Names[(int)level];

    public static bool TryParseLevel(string text, out DaemonLogLevel level)
    {
        var index = Array.IndexOf(Names, text);
        level = index < 0 ? DaemonLogLevel.None : (DaemonLogLevel)index;
        return index >= 0;
    }

    public bool Enabled(DaemonLogLevel level) => level > Filter;

    public void Trace(string message) => Write(DaemonLogLevel.Trace, message);
    public void Debug(string message) => Write(DaemonLogLevel.Debug, message);
    public void Info(string message) => Write(DaemonLogLevel.Info, message);
    public void Warn(string message) => Write(DaemonLogLevel.Warning, message);
    public void Error(string message) => Write(DaemonLogLevel.Error, message);
    public void Fatal(string message) => Write(DaemonLogLevel.Fatal, message);

    public void Write(DaemonLogLevel level, string message)
    {
        if (!Enabled(level))
        {
            return;
        }

        Mirror?.Invoke(level, message);
        var fd = Destination();
        if (fd < 0)
        {
            return;
        }

        if (_lost > 0)
        {
            var lost = _lost;
            _lost = 0;
            if (!TryWrite(fd, $"warning: lost {lost} log messages\n"))
            {
                _lost = lost + 1;
                return;
            }
        }

        if (!TryWrite(fd, $"{Names[(int)level]}: {message}\n"))
        {
            _lost++;
        }
    }

    private static bool TryWrite(int fd, string line)
    {
        var bytes = Encoding.UTF8.GetBytes(line);
        var done = 0;
        var deadline = Environment.TickCount64 + 63;
        fixed (byte* p = bytes)
        {
            while (done < bytes.Length)
            {
                var n = Libc.write(fd, p + done, (nuint)(bytes.Length - done));
                if (n > 0)
                {
                    done += (int)n;
                    continue;
                }

                var errno = Libc.Errno;
                if (n < 0 && errno == Libc.EINTR)
                {
                    continue;
                }

                var left = (int)(deadline - Environment.TickCount64);
                if (n < 0 && errno == Libc.EAGAIN && left > 0)
                {
                    var pfd = new Libc.PollFd { Fd = fd, Events = Libc.POLLOUT };
                    Libc.poll(&pfd, 1, left);
                    continue;
                }

                return done > 0; // a partly written line counts as written
            }
        }

        return true;
    }
}
