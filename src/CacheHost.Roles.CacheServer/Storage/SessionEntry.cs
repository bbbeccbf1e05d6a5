namespace CacheHost.Roles.CacheServer.Storage;

/// <summary>
/// One cached session. Id and data are immutable once published, so lock-free readers can return the data
/// of an entry that a writer removes concurrently. HeapIndex is owned by the entry's shard (under its lock).
/// </summary>
internal sealed class SessionEntry(byte[] id, byte[] data, long expiry, long sequence)
{
    public byte[] Id { get; } = id;

    public byte[] Data { get; } = data;

    /// <summary>Expiry timestamp (clock ticks): the entry is expired when now &gt; Expiry (spec 6.2).</summary>
    public long Expiry { get; } = expiry;

    /// <summary>Global insertion order; equal expiries keep insertion order (spec 6.3).</summary>
    public long Sequence { get; } = sequence;

    /// <summary>Position in the shard's expiry heap, or -1 when not stored.</summary>
    public int HeapIndex { get; set; } = -1;

    public bool IsExpired(long now) => now > Expiry;

    /// <summary>Order of eviction: soonest expiry first, then insertion order.</summary>
    public bool EvictsBefore(SessionEntry other) => Expiry < other.Expiry || (Expiry == other.Expiry && Sequence < other.Sequence);
}
