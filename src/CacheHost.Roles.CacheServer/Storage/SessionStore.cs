using System.Collections.Concurrent;
using CacheHost.Protocols.DistCache;

namespace CacheHost.Roles.CacheServer.Storage;

/// <summary>
/// The session cache with dc_server's semantics (distcache spec 5-6) and none of its limits:
/// <list type="bullet">
/// <item>GET and HAVE are lock-free: one probe of a ConcurrentDictionary with the id as a span, then the
/// expiry rule <c>now &gt; expiry</c>. An expired entry is never returned, even before it is purged.</item>
/// <item>ADD and REMOVE lock only the shard their id hashes to (64 shards), so writers on different ids
/// rarely meet. Each shard keeps its entries in an expiry heap; expired entries are popped from the top
/// lazily, so no request ever scans the store.</item>
/// <item>Capacity is exact and global. When an ADD finds the store full it takes every shard lock (rare:
/// once per capacity/30 inserts on a full cache), purges what has expired, and evicts the
/// max(1, floor(capacity/30)) entries that expire soonest across all shards (spec 6.3), ties in insertion
/// order. The duplicate check comes first, so a rejected duplicate never evicts.</item>
/// </list>
/// </summary>
public sealed class SessionStore
{
    private const int ShardCount = 64;

    private readonly ConcurrentDictionary<byte[], SessionEntry> _map;
    private readonly ConcurrentDictionary<byte[], SessionEntry>.AlternateLookup<ReadOnlySpan<byte>> _lookup;
    private readonly Shard[] _shards;
    private readonly TimeProvider _clock;
    private readonly long _ticksPerSecond;
    private long _count;
    private long _sequence;
    private long _evictions;
    private long _expirations;

    /// <summary>Creates a store holding at most <paramref name="capacity"/> sessions.</summary>
    public SessionStore(int capacity, TimeProvider? clock = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        EvictionBatch = Math.Max(1, capacity / 30);
        _clock = clock ?? TimeProvider.System;
        _ticksPerSecond = _clock.TimestampFrequency;
        _map = new ConcurrentDictionary<byte[], SessionEntry>(Environment.ProcessorCount * 4, Math.Min(capacity, 1 << 16), SessionIdComparer.Instance);
        _lookup = _map.GetAlternateLookup<ReadOnlySpan<byte>>();
        _shards = new Shard[ShardCount];
        for (var i = 0; i < _shards.Length; i++)
        {
            _shards[i] = new Shard();
        }
    }

    /// <summary>Maximum number of sessions.</summary>
    public int Capacity { get; }

    /// <summary>How many soonest-expiring sessions one overflow evicts: max(1, floor(capacity/30)).</summary>
    public int EvictionBatch { get; }

    /// <summary>Sessions held, including expired ones not yet purged.</summary>
    public int Count => (int)Interlocked.Read(ref _count);

    /// <summary>Sessions evicted because the store was full.</summary>
    public long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>Sessions dropped because they expired.</summary>
    public long Expirations => Interlocked.Read(ref _expirations);

    /// <summary>Bytes of session data held.</summary>
    public long DataBytes
    {
        get
        {
            long total = 0;
            foreach (var shard in _shards)
            {
                total += Volatile.Read(ref shard.Bytes);
            }

            return total;
        }
    }

    /// <summary>The clock's current timestamp, for callers that pass "now" explicitly.</summary>
    public long Now => _clock.GetTimestamp();

    /// <summary>
    /// Stores a session unless an unexpired one with the same id exists (ADD never replaces, spec 5.1 step 5).
    /// Returns <see cref="DistCacheResult.Ok"/> or <see cref="DistCacheResult.AddMatchingSession"/>.
    /// </summary>
    public DistCacheResult Add(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint timeoutMs, long now)
    {
        var expiry = now + (timeoutMs * _ticksPerSecond / 1000);
        var shard = ShardFor(id);
        lock (shard.Gate)
        {
            if (_lookup.TryGetValue(id, out var existing))
            {
                if (!existing.IsExpired(now))
                {
                    return DistCacheResult.AddMatchingSession;
                }

                RemoveLocked(shard, existing);
                Interlocked.Increment(ref _expirations);
            }

            PurgeLocked(shard, now);
            if (TryReserveSlot())
            {
                InsertLocked(shard, id, data, expiry);
                return DistCacheResult.Ok;
            }
        }

        return AddWhenFull(id, data, expiry, now);
    }

    /// <summary>
    /// Counts one more session if that stays within capacity. A compare-and-swap, not increment-then-undo, so the
    /// count (and Count seen by other threads) never passes capacity even for a moment.
    /// </summary>
    private bool TryReserveSlot()
    {
        var count = Interlocked.Read(ref _count);
        while (count < Capacity)
        {
            var seen = Interlocked.CompareExchange(ref _count, count + 1, count);
            if (seen == count)
            {
                return true;
            }

            count = seen;
        }

        return false;
    }

    /// <summary>Looks a session up; expired sessions are misses.</summary>
    public bool TryGet(ReadOnlySpan<byte> id, long now, out byte[] data)
    {
        if (_lookup.TryGetValue(id, out var entry) && !entry.IsExpired(now))
        {
            data = entry.Data;
            return true;
        }

        data = [];
        return false;
    }

    /// <summary>True when an unexpired session exists. Changes nothing (no "touch").</summary>
    public bool Contains(ReadOnlySpan<byte> id, long now) => _lookup.TryGetValue(id, out var entry) && !entry.IsExpired(now);

    /// <summary>Removes a session; true only when an unexpired one was removed (spec 5.3).</summary>
    public bool Remove(ReadOnlySpan<byte> id, long now)
    {
        var shard = ShardFor(id);
        lock (shard.Gate)
        {
            if (!_lookup.TryGetValue(id, out var entry))
            {
                return false;
            }

            RemoveLocked(shard, entry);
            if (entry.IsExpired(now))
            {
                Interlocked.Increment(ref _expirations);
                return false;
            }

            return true;
        }
    }

    /// <summary>Drops every expired session (housekeeping; cost proportional to what expired). Returns how many.</summary>
    public int PurgeExpired(long now)
    {
        var purged = 0;
        foreach (var shard in _shards)
        {
            lock (shard.Gate)
            {
                purged += PurgeLocked(shard, now);
            }
        }

        return purged;
    }

    private DistCacheResult AddWhenFull(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, long expiry, long now)
    {
        // Every shard lock, always in index order, so two full-store writers cannot deadlock.
        foreach (var s in _shards)
        {
            Monitor.Enter(s.Gate);
        }

        try
        {
            var shard = ShardFor(id);
            // The id may have been added while we held no lock.
            if (_lookup.TryGetValue(id, out var existing))
            {
                if (!existing.IsExpired(now))
                {
                    return DistCacheResult.AddMatchingSession;
                }

                RemoveLocked(shard, existing);
                Interlocked.Increment(ref _expirations);
            }

            foreach (var s in _shards)
            {
                PurgeLocked(s, now);
            }

            if (Interlocked.Read(ref _count) >= Capacity)
            {
                EvictSoonestLocked(EvictionBatch);
            }

            Interlocked.Increment(ref _count);
            InsertLocked(shard, id, data, expiry);
            return DistCacheResult.Ok;
        }
        finally
        {
            for (var i = _shards.Length - 1; i >= 0; i--)
            {
                Monitor.Exit(_shards[i].Gate);
            }
        }
    }

    private void EvictSoonestLocked(int howMany)
    {
        // k-way merge over the shard heaps' tops: the globally soonest-expiring entries, in order.
        var tops = new PriorityQueue<Shard, (long Expiry, long Sequence)>(_shards.Length);
        foreach (var shard in _shards)
        {
            if (shard.Heap.Peek() is { } top)
            {
                tops.Enqueue(shard, (top.Expiry, top.Sequence));
            }
        }

        for (var i = 0; i < howMany && tops.TryDequeue(out var shard, out _); i++)
        {
            var victim = shard.Heap.Peek()!;
            RemoveLocked(shard, victim);
            Interlocked.Increment(ref _evictions);
            if (shard.Heap.Peek() is { } next)
            {
                tops.Enqueue(shard, (next.Expiry, next.Sequence));
            }
        }
    }

    private void InsertLocked(Shard shard, ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, long expiry)
    {
        var entry = new SessionEntry(id.ToArray(), data.ToArray(), expiry, Interlocked.Increment(ref _sequence));
        _map[entry.Id] = entry;
        shard.Heap.Add(entry);
        shard.Bytes += entry.Data.Length;
    }

    private int PurgeLocked(Shard shard, long now)
    {
        var purged = 0;
        while (shard.Heap.Peek() is { } top && top.IsExpired(now))
        {
            RemoveLocked(shard, top);
            purged++;
        }

        if (purged > 0)
        {
            Interlocked.Add(ref _expirations, purged);
        }

        return purged;
    }

    private void RemoveLocked(Shard shard, SessionEntry entry)
    {
        // The shard lock owns every id that hashes to it, so the dictionary value is this entry.
        _map.TryRemove(entry.Id, out _);
        shard.Heap.Remove(entry);
        shard.Bytes -= entry.Data.Length;
        Interlocked.Decrement(ref _count);
    }

    private Shard ShardFor(ReadOnlySpan<byte> id) => _shards[(uint)SessionIdComparer.Hash(id) % ShardCount];

    private sealed class Shard
    {
        public readonly object Gate = new();
        public readonly ExpiryHeap Heap = new();
        public long Bytes;
    }
}
