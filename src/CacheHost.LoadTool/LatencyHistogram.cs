namespace CacheHost.LoadTool;

/// <summary>
/// Log-linear latency histogram in microseconds (the HdrHistogram idea, kept small): 32 buckets per power of two
/// (values below 64 exactly), so any recorded value is reported within about 3 %. Fixed memory, no allocation when recording.
/// </summary>
public sealed class LatencyHistogram
{
    private const int SubBits = 6;
    private const int SubCount = 1 << SubBits;
    private readonly long[] _counts = new long[64 * SubCount];

    /// <summary>Values recorded.</summary>
    public long Count { get; private set; }

    /// <summary>Largest value recorded (µs).</summary>
    public long Max { get; private set; }

    /// <summary>Records one value in microseconds.</summary>
    public void Record(long micros)
    {
        if (micros < 0)
        {
            micros = 0;
        }

        _counts[Index(micros)]++;
        Count++;
        if (micros > Max)
        {
            Max = micros;
        }
    }

    /// <summary>Adds another histogram's counts.</summary>
    public void Merge(LatencyHistogram other)
    {
        for (var i = 0; i < _counts.Length; i++)
        {
            _counts[i] += other._counts[i];
        }

        Count += other.Count;
        Max = Math.Max(Max, other.Max);
    }

    /// <summary>The value at <paramref name="percentile"/> (0..100), in microseconds (upper edge of its bucket, capped at Max).</summary>
    public long Percentile(double percentile)
    {
        if (Count == 0)
        {
            return 0;
        }

        var rank = (long)Math.Ceiling(percentile / 100.0 * Count);
        rank = Math.Clamp(rank, 1, Count);
        long seen = 0;
        for (var i = 0; i < _counts.Length; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                return Math.Min(UpperEdge(i), Max);
            }
        }

        return Max;
    }

    private static int Index(long value)
    {
        if (value < SubCount)
        {
            return (int)value;
        }

        // Keep the top 6 significant bits: bucket (m, v >> m) with m = bit length - 6 >= 1.
        var magnitude = 64 - (int)long.LeadingZeroCount(value) - SubBits;
        var sub = (int)(value >> magnitude) & (SubCount - 1);
        return (magnitude * SubCount) + sub;
    }

    private static long UpperEdge(int index)
    {
        var magnitude = index / SubCount;
        var sub = index % SubCount;
        if (magnitude == 0)
        {
            return sub;
        }

        // Bucket (m, sub) holds the values v with v >> m == sub.
        return ((long)(sub + 1) << magnitude) - 1;
    }
}
