namespace CacheHost.Client;

/// <summary>
/// The process-wide request uid counter of libdistcache (distcache §8): starts at 1, one per transaction, 32 bits on
/// the wire (wraps after 2^32 transactions, as the C counter truncated to the wire field does).
/// </summary>
public static class DistCacheUids
{
    private static uint s_last;

    /// <summary>The next uid.</summary>
    public static uint Next() => Interlocked.Increment(ref s_last);
}
