using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.InteropServices;

namespace CacheHost.Core;

/// <summary>
/// Server-side request latency (from the moment a batch of requests is read to the moment its replies are
/// flushed), always recorded, for the role's <c>*.stats</c> percentiles and, when metrics are on, the
/// request-duration histogram instrument. Log-linear buckets on microseconds, 8 per power of two (any value is
/// reported within 12.5 %), striped by CPU like <see cref="StripedCounter"/>: recording is two clock reads and
/// one interlocked add, no lock and no allocation.
/// </summary>
public sealed class RequestLatency
{
    private const int SubBits = 3;
    private const int SubCount = 1 << SubBits;

    // 2^40 µs is 12 days: anything longer lands in the last bucket.
    private const int BucketCount = 41 * SubCount;

    // Each stripe's buckets start on their own cache line (8 longs), so CPUs do not share one.
    private const int Stride = (BucketCount + 7) & ~7;

    private readonly long[] _counts;
    private readonly int _mask;
    private Histogram<double>? _instrument;

    /// <summary>Creates the stripes (a power of two, at least twice the CPU count).</summary>
    public RequestLatency()
    {
        var stripes = 1;
        while (stripes < Environment.ProcessorCount * 2)
        {
            stripes <<= 1;
        }

        _counts = new long[stripes * Stride];
        _mask = stripes - 1;
    }

    /// <summary>A timestamp to pass to <see cref="Record"/>.</summary>
    public static long Start() => Stopwatch.GetTimestamp();

    /// <summary>
    /// Also records into <paramref name="instrument"/> (seconds, one measurement per request) while a listener
    /// has it enabled. Set once, by the role's metrics when metrics are on.
    /// </summary>
    public void Attach(Histogram<double> instrument) => Volatile.Write(ref _instrument, instrument);

    /// <summary>Records <paramref name="requests"/> requests that all took the time since <paramref name="started"/>.</summary>
    public void Record(long started, int requests)
    {
        if (requests <= 0)
        {
            return;
        }

        var ticks = Stopwatch.GetTimestamp() - started;
        var micros = ticks <= 0 ? 0 : (long)(ticks * (1_000_000.0 / Stopwatch.Frequency));
        Interlocked.Add(ref _counts[((Thread.GetCurrentProcessorId() & _mask) * Stride) + Index(micros)], requests);
        var instrument = _instrument;
        if (instrument is { Enabled: true })
        {
            var seconds = ticks / (double)Stopwatch.Frequency;
            for (var i = 0; i < requests; i++)
            {
                instrument.Record(seconds);
            }
        }
    }

    /// <summary>Requests recorded so far.</summary>
    public long Count
    {
        get
        {
            long sum = 0;
            for (var i = 0; i < _counts.Length; i++)
            {
                sum += Volatile.Read(ref _counts[i]);
            }

            return sum;
        }
    }

    /// <summary>
    /// The latency (µs) at <paramref name="percentile"/> (0..100) of everything recorded since start: the upper
    /// edge of its bucket; 0 when nothing was recorded.
    /// </summary>
    public long Percentile(double percentile)
    {
        Span<long> merged = new long[BucketCount];
        long total = 0;
        for (var stripe = 0; stripe <= _mask; stripe++)
        {
            var counts = MemoryMarshal.CreateReadOnlySpan(ref _counts[stripe * Stride], BucketCount);
            for (var i = 0; i < BucketCount; i++)
            {
                merged[i] += counts[i];
                total += counts[i];
            }
        }

        if (total == 0)
        {
            return 0;
        }

        var rank = Math.Clamp((long)Math.Ceiling(percentile / 100.0 * total), 1, total);
        long seen = 0;
        for (var i = 0; i < BucketCount; i++)
        {
            seen += merged[i];
            if (seen >= rank)
            {
                return UpperEdge(i);
            }
        }

        return UpperEdge(BucketCount - 1);
    }

    private static int Index(long micros)
    {
        if (micros < SubCount)
        {
            return (int)micros;
        }

        // Keep the top SubBits + 1 significant bits: magnitude m >= 1, sub-bucket (v >> m) - SubCount.
        var magnitude = 64 - (int)long.LeadingZeroCount(micros) - SubBits - 1;
        var index = ((magnitude + 1) * SubCount) + (int)(micros >> magnitude) - SubCount;
        return Math.Min(index, BucketCount - 1);
    }

    private static long UpperEdge(int index)
    {
        if (index < SubCount)
        {
            return index;
        }

        var magnitude = (index / SubCount) - 1;
        var sub = (index % SubCount) + SubCount;
        return ((long)(sub + 1) << magnitude) - 1;
    }
}
