using System.Collections.Concurrent;
using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Logging;

namespace CacheHost.Transport;

/// <summary>
/// Limits for warnings a remote peer can trigger once per connection or request (bind as
/// <c>CacheHost:&lt;Role&gt;:Transport:Warnings</c>): of each kind, the first <see cref="Burst"/> are logged in full,
/// then one summary line per <see cref="Interval"/> carries the count of the rest.
/// </summary>
public sealed class LogRateLimitOptions
{
    /// <summary>Warnings of one kind logged in full before the summaries start. Default 10.</summary>
    [Range(1, 1_000_000)]
    public int Burst { get; set; } = 10;

    /// <summary>How often a summary line reports the suppressed count while a kind keeps occurring. Default 1 minute.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan Interval { get; set; } = TimeSpan.FromMinutes(1);
}

/// <summary>
/// Rate limit for repeated warnings, per kind (the log method's name), in the manner of the kernel's printk
/// ratelimit: 580,000 bad connections must not write 56 MB of log (issue 21). Within an interval the first
/// Burst calls of a kind are allowed; after that the kind is flooding: calls are counted, and at the end of
/// that interval and each further one the count goes out as one summary line (event 1015). An interval with
/// none ends the flood, so the next occurrence is logged in full again. <see cref="Dispose"/> writes what is
/// still counted, so nothing goes unreported at shutdown. Thread-safe; the time source is injected.
/// </summary>
/// <remarks>Use: <c>if (warnings.Allow(nameof(XLog.Event))) XLog.Event(logger, …);</c></remarks>
public sealed class LogRateLimiter : IDisposable
{
    private readonly ILogger _logger;
    private readonly int _burst;
    private readonly TimeSpan _interval;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, Kind> _kinds = new(StringComparer.Ordinal);
    private readonly bool _unlimited;

    /// <summary>Creates a limiter whose summary lines go to <paramref name="logger"/>.</summary>
    public LogRateLimiter(ILogger logger, LogRateLimitOptions? options = null, TimeProvider? timeProvider = null)
    {
        options ??= new LogRateLimitOptions();
        _logger = logger;
        _burst = options.Burst;
        _interval = options.Interval;
        _time = timeProvider ?? TimeProvider.System;
    }

    private LogRateLimiter()
        : this(Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance)
    {
        _unlimited = true;
    }

    /// <summary>Allows every warning (for connections that no listener accepted).</summary>
    public static LogRateLimiter Unlimited { get; } = new();

    /// <summary>True when a warning of <paramref name="kind"/> may be logged now; false when it was counted instead.</summary>
    public bool Allow(string kind) => _unlimited || _kinds.GetOrAdd(kind, static (name, self) => new Kind(name, self), this).Allow();

    /// <summary>Stops the summary timers after writing the counts still pending.</summary>
    public void Dispose()
    {
        foreach (var kind in _kinds.Values)
        {
            kind.Stop();
        }
    }

    private sealed class Kind(string name, LogRateLimiter owner)
    {
        private readonly Lock _lock = new();
        private long _windowStart;
        private int _logged;
        private long _suppressed;
        private bool _flooding;
        private bool _stopped;
        private ITimer? _timer;

        public bool Allow()
        {
            lock (_lock)
            {
                if (_stopped)
                {
                    return true; // after Dispose (shutdown) nothing is left to report a count: log in full
                }

                if (_flooding)
                {
                    _suppressed++;
                    return false;
                }

                var now = owner._time.GetTimestamp();
                var elapsed = owner._time.GetElapsedTime(_windowStart, now);
                if (_logged == 0 || elapsed >= owner._interval)
                {
                    _windowStart = now;
                    _logged = 0;
                    elapsed = TimeSpan.Zero;
                }

                if (_logged < owner._burst)
                {
                    _logged++;
                    return true;
                }

                // Over the burst: count from here on; the first summary closes this interval.
                _flooding = true;
                _suppressed = 1;
                _timer ??= owner._time.CreateTimer(static state => ((Kind)state!).Tick(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                _timer.Change(owner._interval - elapsed, owner._interval);
                return false;
            }
        }

        public void Stop()
        {
            long count;
            lock (_lock)
            {
                _stopped = true;
                _timer?.Dispose();
                count = _suppressed;
                _suppressed = 0;
            }

            Report(count);
        }

        private void Tick()
        {
            long count;
            lock (_lock)
            {
                count = _suppressed;
                _suppressed = 0;
                if (count == 0)
                {
                    // A quiet interval ends the flood: the next occurrence starts a fresh burst.
                    _flooding = false;
                    _logged = 0;
                    _timer?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                }
            }

            Report(count);
        }

        private void Report(long count)
        {
            if (count > 0)
            {
                try
                {
                    TransportLog.WarningsSuppressed(owner._logger, count, name, owner._burst, owner._interval.TotalSeconds);
                }
                catch (ObjectDisposedException)
                {
                    // A timer tick after the host's logging shut down: nobody is left to tell.
                }
            }
        }
    }
}
