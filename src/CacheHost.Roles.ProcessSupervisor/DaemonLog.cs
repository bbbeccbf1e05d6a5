using System.Text;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>Log levels of daemonproxy §11, lowest first. A message is written when its level is above the filter.</summary>
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
/// The supervisor's own log (daemonproxy §11): lines <c>level: message</c> for the descriptor of a named handle
/// (<c>stderr</c> by default, <c>log.dest</c> changes it). The loop only appends to a 1 KiB buffer (daemonproxy §13)
/// and never writes itself: a writer thread does the <c>write(2)</c> on a private close-on-exec duplicate of
/// the destination, so a blocking descriptor that nobody reads (a full pipe, a stopped terminal) stalls only
/// that thread, never reaping, restarts or commands (issue 14). A line that does not fit is dropped and
/// counted; <c>warning: lost N log messages</c> follows as soon as space is free again. After a write error
/// the writer waits 0.5 s before retrying (daemonproxy §11, never a busy loop). When no handle has the destination
/// name the log is silent.
/// </summary>
internal sealed unsafe class DaemonLog : IDisposable
{
    /// <summary>Buffer size of daemonproxy §13.</summary>
    public const int Capacity = 1024;

    private const int RetryMs = 500;
    private static readonly string[] Names = ["none", "trace", "debug", "info", "warning", "error", "fatal"];

    private readonly object _gate = new();
    private readonly byte[] _buffer = new byte[Capacity];
    private readonly List<int> _retired = [];
    private int _length;
    private long _lost;
    private int _fd = -1; // private duplicate the writer uses
    private bool _hasSource;
    private ulong _sourceDev;
    private ulong _sourceIno;
    private Thread? _writer;
    private bool _stopping;
    private long _writeStarted; // clock timestamp; 0 while the writer is not inside write(2)

    /// <summary>The supervisor's clock: drain limits and the retry pause of daemonproxy §11 are measured on it.</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;

    /// <summary>Current filter; the default shows info and above.</summary>
    public DaemonLogLevel Filter { get; set; } = DaemonLogLevel.Debug;

    /// <summary>Resolves the destination descriptor (the handle named by <c>log.dest</c>), or -1.</summary>
    public Func<int> Destination { get; set; } = () => 2;

    /// <summary>Optional second sink (the appsettings host routes lines into ILogger as well).</summary>
    public Action<DaemonLogLevel, string>? Mirror { get; set; }

    /// <summary>Messages dropped because the buffer was full and not yet reported (diagnostics, tests).</summary>
    public long Lost
    {
        get
        {
            lock (_gate)
            {
                return _lost;
            }
        }
    }

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
        if (!RefreshDestination())
        {
            return;
        }

        var line = Encoding.UTF8.GetBytes($"{Names[(int)level]}: {message}\n");
        lock (_gate)
        {
            AppendLostNotice();
            if (_lost > 0 || _length + line.Length > Capacity)
            {
                _lost++;
                return;
            }

            line.CopyTo(_buffer, _length);
            _length += line.Length;
            EnsureWriter();
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>
    /// Re-resolves the destination handle; a different file (by device and inode) gets a new private
    /// duplicate. Called for every line and after handle changes, so a deleted destination is let go of.
    /// Returns false when there is no destination.
    /// </summary>
    public bool RefreshDestination()
    {
        var fd = Destination();
        ulong dev = 0, ino = 0;
        if (fd >= 0)
        {
            if (!PosixFiles.TryFStat(fd, out var st))
            {
                fd = -1;
            }
            else
            {
                dev = st.Device;
                ino = st.Inode;
            }
        }

        lock (_gate)
        {
            // Compared by file, not by number: the start-up fd 2 and the later `stderr` handle (a copy) are one.
            if ((fd >= 0) == _hasSource && dev == _sourceDev && ino == _sourceIno)
            {
                return _fd >= 0;
            }

            if (_fd >= 0)
            {
                _retired.Add(_fd); // the writer may be inside write(2) on it; it closes it when done
                _fd = -1;
            }

            _length = 0; // lines meant for the old destination are not written to the new one
            _hasSource = fd >= 0;
            _sourceDev = dev;
            _sourceIno = ino;
            if (fd >= 0)
            {
                _fd = Libc.fcntl(fd, Libc.F_DUPFD_CLOEXEC, 3);
            }

            Monitor.PulseAll(_gate);
            return _fd >= 0;
        }
    }

    /// <summary>
    /// Waits until the buffer is written (before exit or exec). Gives up once a single write has been
    /// blocked for <paramref name="blockedLimitMs"/>, or after <paramref name="totalLimitMs"/> in all.
    /// </summary>
    public void Drain(int blockedLimitMs = 100, int totalLimitMs = 2000)
    {
        var start = Clock.GetTimestamp();
        lock (_gate)
        {
            AppendLostNotice();
            while (_length > 0 && _fd >= 0 && _writer is not null)
            {
                var now = Clock.GetTimestamp();
                if (Clock.GetElapsedTime(start, now).TotalMilliseconds >= totalLimitMs
                    || (_writeStarted != 0 && Clock.GetElapsedTime(_writeStarted, now).TotalMilliseconds >= blockedLimitMs))
                {
                    return;
                }

                Monitor.Wait(_gate, 10);
            }
        }
    }

    private void AppendLostNotice()
    {
        if (_lost == 0 || _fd < 0)
        {
            return;
        }

        var notice = Encoding.ASCII.GetBytes($"warning: lost {_lost} log messages\n");
        if (_length + notice.Length <= Capacity)
        {
            notice.CopyTo(_buffer, _length);
            _length += notice.Length;
            _lost = 0;
            EnsureWriter();
            Monitor.PulseAll(_gate);
        }
    }

    private void EnsureWriter()
    {
        if (_writer is null && !_stopping)
        {
            _writer = new Thread(WriterLoop) { IsBackground = true, Name = "daemonproxy log" };
            _writer.Start();
        }
    }

    private void WriterLoop()
    {
        var chunk = new byte[Capacity];
        while (true)
        {
            int fd, count;
            lock (_gate)
            {
                CloseRetired();
                while (!_stopping && (_length == 0 || _fd < 0))
                {
                    Monitor.Wait(_gate);
                    CloseRetired();
                }

                if (_stopping)
                {
                    CloseRetired();
                    return;
                }

                fd = _fd;
                count = _length;
                Buffer.BlockCopy(_buffer, 0, chunk, 0, count);
                _writeStarted = Clock.GetTimestamp() | 1;
            }

            var n = WriteOnce(fd, chunk, count);
            lock (_gate)
            {
                _writeStarted = 0;
                if (n > 0 && fd == _fd)
                {
                    Buffer.BlockCopy(_buffer, n, _buffer, 0, _length - n);
                    _length -= n;
                    AppendLostNotice();
                }

                Monitor.PulseAll(_gate);
                if (n < 0)
                {
                    // daemonproxy §11: after a failure retry at most every 0.5 s; new lines do not wake it earlier.
                    var failedAt = Clock.GetTimestamp();
                    for (var left = RetryMs; !_stopping && left > 0; left = (int)Math.Max(0, RetryMs - Clock.GetElapsedTime(failedAt).TotalMilliseconds))
                    {
                        Monitor.Wait(_gate, left);
                    }
                }
            }
        }
    }

    /// <summary>One write; on a non-blocking descriptor waits for space (bounded). Bytes written, or -1 on error.</summary>
    private static int WriteOnce(int fd, byte[] chunk, int count)
    {
        fixed (byte* p = chunk)
        {
            while (true)
            {
                var n = Libc.write(fd, p, (nuint)count);
                if (n >= 0)
                {
                    return n == 0 ? -1 : (int)n;
                }

                var errno = Libc.Errno;
                if (errno == Libc.EINTR)
                {
                    continue;
                }

                if (errno != Libc.EAGAIN)
                {
                    return -1;
                }

                var pfd = new Libc.PollFd { Fd = fd, Events = Libc.POLLOUT };
                if (Libc.poll(&pfd, 1, RetryMs) <= 0)
                {
                    return 0; // still full: try again with whatever the buffer holds by then
                }
            }
        }
    }

    private void CloseRetired()
    {
        foreach (var fd in _retired)
        {
            Libc.close(fd);
        }

        _retired.Clear();
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _stopping = true;
            if (_fd >= 0)
            {
                _retired.Add(_fd);
                _fd = -1;
            }

            Monitor.PulseAll(_gate);
            if (_writer is null)
            {
                CloseRetired();
            }
        }
    }
}
