using HdrHistogram;

namespace CacheHost.LoadTool;

/// <summary>
/// A latency histogram in microseconds over HdrHistogram: 1 µs to 1 hour, 2 significant digits (any recorded
/// value is reported within 1 %), about 26 KB per histogram, no allocation when recording. One per client,
/// merged at the end.
/// </summary>
public sealed class LatencyHistogram
{
    /// <summary>Largest value tracked (µs); longer ones are recorded as this.</summary>
    internal const long Highest = 3_600_000_000;

    /// <summary>Significant decimal digits kept.</summary>
    internal const int Digits = 2;

    private readonly LongHistogram _histogram = new(Highest, Digits);

    /// <summary>Values recorded.</summary>
    public long Count => _histogram.TotalCount;

    /// <summary>Largest value recorded (µs).</summary>
    public long Max => Count == 0 ? 0 : _histogram.GetMaxValue();

    /// <summary>Records one value in microseconds.</summary>
    public void Record(long micros) => _histogram.RecordValue(Clamp(micros));

    /// <summary>Adds another histogram's counts.</summary>
    public void Merge(LatencyHistogram other) => _histogram.Add(other._histogram);

    /// <summary>The value at <paramref name="percentile"/> (0..100), in microseconds (capped at Max); 0 when empty.</summary>
    public long Percentile(double percentile) => Count == 0 ? 0 : Math.Min(_histogram.GetValueAtPercentile(percentile), Max);

    /// <summary><paramref name="micros"/> within what the histogram tracks.</summary>
    internal static long Clamp(long micros) => Math.Clamp(micros, 0, Highest);
}
