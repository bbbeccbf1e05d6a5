using System.Diagnostics;
using HdrHistogram;

namespace CacheHost.LoadTool;

/// <summary>
/// What every LoadRun workload shares about measuring: the run clock, the warm-up (<c>-warmup S</c>: the first S
/// seconds are neither counted nor timed in the report) and the per-interval latency of the progress line
/// (an HdrHistogram <see cref="Recorder"/> that every client records into, swapped once a second).
/// </summary>
internal sealed class LoadMeasurement
{
    private readonly Recorder? _interval;
    private volatile bool _measuring;
    private long _opsAtStart;
    private TimeSpan _startedAt;

    /// <summary>Per-interval percentiles only when a progress line shows them (<paramref name="intervals"/>).</summary>
    public LoadMeasurement(LoadToolSettings settings, bool intervals)
    {
        Warmup = TimeSpan.FromSeconds(settings.Warmup);
        _measuring = settings.Warmup <= 0;
        _interval = intervals
            ? new Recorder(1, LatencyHistogram.Highest, LatencyHistogram.Digits, static (id, low, high, digits) => new LongConcurrentHistogram(id, low, high, digits))
            : null;
    }

    /// <summary>Time since the run started, warm-up included.</summary>
    public Stopwatch Clock { get; } = new();

    /// <summary>The warm-up.</summary>
    public TimeSpan Warmup { get; }

    /// <summary>False during the warm-up.</summary>
    public bool Measuring => _measuring;

    /// <summary>Starts the clock, and the warm-up's end after <see cref="Warmup"/>.</summary>
    public void Start(Func<long> completed, CancellationToken stop)
    {
        Clock.Start();
        if (!_measuring)
        {
            _ = EndWarmupAsync(completed, stop);
        }
    }

    /// <summary>Records one request's latency: in the client's histogram once the warm-up is over, and in this interval's.</summary>
    public void Record(LatencyHistogram client, long micros)
    {
        _interval?.RecordValue(LatencyHistogram.Clamp(micros));
        if (_measuring)
        {
            client.Record(micros);
        }
    }

    /// <summary>Operations completed after the warm-up, of <paramref name="completed"/> in all.</summary>
    public long MeasuredOps(long completed) => _measuring ? completed - Interlocked.Read(ref _opsAtStart) : 0;

    /// <summary>Time measured: the run's time less the warm-up (the clock must have stopped).</summary>
    public TimeSpan MeasuredElapsed => _measuring ? Clock.Elapsed - _startedAt : TimeSpan.Zero;

    /// <summary>This interval's p50 and p99 (µs) and request count, and a fresh interval; null without intervals.</summary>
    public (long P50, long P99, long Count)? TakeInterval()
    {
        if (_interval is null)
        {
            return null;
        }

        var histogram = _interval.GetIntervalHistogram();
        return histogram.TotalCount == 0
            ? (0, 0, 0)
            : (histogram.GetValueAtPercentile(50), histogram.GetValueAtPercentile(99), histogram.TotalCount);
    }

    private async Task EndWarmupAsync(Func<long> completed, CancellationToken stop)
    {
        try
        {
            await Task.Delay(Warmup, stop).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return; // the run ended within the warm-up: nothing was measured
        }

        Interlocked.Exchange(ref _opsAtStart, completed());
        _startedAt = Clock.Elapsed;
        _measuring = true;
    }
}
