namespace CacheHost.Client;

/// <summary>
/// libdistcache's interpretation of response payloads (distcache §8), shared by <see cref="DistCacheClient"/> and
/// tools that pipeline over <see cref="DistCacheConnection"/>. The payload here is that of a transaction that
/// succeeded (matching uid and operation, non-empty).
/// </summary>
public static class DistCacheResults
{
    /// <summary>ADD and REMOVE succeed only on exactly one byte 0x00.</summary>
    public static bool IsSuccess(ReadOnlySpan<byte> payload) => payload.Length == 1 && payload[0] == 0x00;

    /// <summary>GET is a hit only for a response of at least 5 bytes (13.5: shorter answers are misses).</summary>
    public static bool IsHit(ReadOnlySpan<byte> payload) => payload.Length >= 5;

    /// <summary>HAVE: yes for 0x00; no for 0x01 or any response not exactly one byte; error for any other byte.</summary>
    public static DistCacheHaveResult Have(ReadOnlySpan<byte> payload)
    {
        if (payload.Length != 1)
        {
            return DistCacheHaveResult.No;
        }

        return payload[0] switch
        {
            0x00 => DistCacheHaveResult.Yes,
            0x01 => DistCacheHaveResult.No,
            _ => DistCacheHaveResult.Error,
        };
    }
}
