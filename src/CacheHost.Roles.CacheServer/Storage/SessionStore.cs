using System.Buffers;
using CacheHost.Protocols.DistCache;

namespace CacheHost.Roles.CacheServer.Storage;

/// <summary>Receives a session's data while the store holds it steady (see <see cref="SessionStore.TryGet{TReader}"/>).</summary>
public interface ISessionReader
{
    /// <summary>Called once with the data; the span is valid only during the call.</summary>
    void Read(ReadOnlySpan<byte> data);
}

/// <summary>Receives every live session of a store in turn (see <see cref="SessionStore.VisitLive{TVisitor}"/>).</summary>
public interface ISessionVisitor
{
    /// <summary>One session: its id, data and remaining lifetime; the spans are valid only during the call.</summary>
    void Visit(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint remainingMs);
}

/// <summary>
/// The session cache with dc_server's semantics (distcache §5-6) and none of its limits:
/// <list type="bullet">
/// <item>Session id and data live in native memory the store manages itself (<see cref="SlabAllocator"/>,
/// size classes as memcached's slabs); the index is 64 shards, each an array-backed hash table of structs and
/// an expiry heap of entry numbers. So ADD, GET, REMOVE and expiry allocate nothing managed in steady state and
/// the GC has nothing to collect or to scan: the mix runs without collections.</item>
/// <item>Every operation locks only the shard its id hashes to (held for one probe, and for GET one copy of the
/// data into the caller's reader), so connections on different ids rarely meet. Expired entries are popped
/// from the top of the shard's heap lazily, so no request ever scans the store; an expired entry is never
/// returned, even before it is purged (<c>now &gt; expiry</c>, distcache §6.2).</item>
/// <item>Capacity is exact and global. When an ADD finds the store full it takes every shard lock (rare:
/// once per capacity/30 inserts on a full cache), purges what has expired, and evicts the
/// max(1, floor(capacity/30)) entries that expire soonest across all shards (distcache §6.3), ties in insertion
/// order. The duplicate check comes first, so a rejected duplicate never evicts.</item>
/// </list>
/// </summary>
public sealed unsafe class SessionStore : ISessionStore, IDisposable
{
    private const int ShardBits = 6;
    private const int ShardCount = 1 << ShardBits;

    private readonly Shard[] _shards;
    private readonly SlabAllocator _slabs;
    private readonly TimeProvider _clock;
    private readonly long _ticksPerSecond;
    private readonly PriorityQueue<Shard, (long Expiry, long Sequence)> _evictionOrder = new(ShardCount);
    private long _count;
    private long _sequence;
    private long _evictions;
    private long _expirations;
    private bool _disposed;

    /// <summary>Creates a store holding at most <paramref name="capacity"/> sessions.</summary>
    public SessionStore(int capacity, TimeProvider? clock = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        EvictionBatch = Math.Max(1, capacity / 30);
        _clock = clock ?? TimeProvider.System;
        _ticksPerSecond = _clock.TimestampFrequency;
        _slabs = new SlabAllocator(DistCacheProtocol.MaxIdLength + DistCacheProtocol.MaxPayload);
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

    /// <summary>Bytes of native slab pages obtained for ids and data (reused, never returned while running).</summary>
    public long SlabBytes => _slabs.PageBytes;

    /// <summary>The clock's current timestamp, for callers that pass "now" explicitly.</summary>
    public long Now => _clock.GetTimestamp();

    /// <summary>
    /// Stores a session unless an unexpired one with the same id exists (ADD never replaces, distcache §5.1 step 5).
    /// Returns <see cref="DistCacheResult.Ok"/> or <see cref="DistCacheResult.AddMatchingSession"/>.
    /// </summary>
    public DistCacheResult Add(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint timeoutMs, long now)
    {
        if (id.Length > DistCacheProtocol.MaxIdLength || data.Length > DistCacheProtocol.MaxPayload)
        {
            throw new ArgumentException($"id ({id.Length} bytes) or data ({data.Length} bytes) longer than the protocol allows");
        }

        var expiry = now + (timeoutMs * _ticksPerSecond / 1000);
        var hash = Hash(id);
        var shard = ShardFor(hash);
        lock (shard.Gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var existing = shard.Find(id, hash);
            if (existing >= 0)
            {
                if (!shard.At(existing).IsExpired(now))
                {
                    return DistCacheResult.AddMatchingSession;
                }

                RemoveLocked(shard, existing);
                Interlocked.Increment(ref _expirations);
            }

            PurgeLocked(shard, now);
            if (TryReserveSlot())
            {
                InsertLocked(shard, id, hash, data, expiry);
                return DistCacheResult.Ok;
            }
        }

        return AddWhenFull(id, hash, data, expiry, now);
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

    /// <summary>
    /// Looks a session up and, when it is there and unexpired, hands its data to <paramref name="reader"/> under the
    /// shard's lock (the data may be freed and reused once the lock is released, so the reader copies it).
    /// </summary>
    public bool TryGet<TReader>(ReadOnlySpan<byte> id, long now, ref TReader reader)
        where TReader : ISessionReader, allows ref struct
    {
        var hash = Hash(id);
        var shard = ShardFor(hash);
        lock (shard.Gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var index = shard.Find(id, hash);
            if (index < 0)
            {
                return false;
            }

            ref var entry = ref shard.At(index);
            if (entry.IsExpired(now))
            {
                return false;
            }

            reader.Read(new ReadOnlySpan<byte>(entry.Block + entry.IdLength, entry.DataLength));
            return true;
        }
    }

    /// <summary>Looks a session up and copies its data into a new array (convenience for tests and tools).</summary>
    public bool TryGet(ReadOnlySpan<byte> id, long now, out byte[] data)
    {
        var copy = new CopyReader();
        var found = TryGet(id, now, ref copy);
        data = found ? copy.Data : [];
        return found;
    }

    /// <summary>True when an unexpired session exists. Changes nothing (no "touch").</summary>
    public bool Contains(ReadOnlySpan<byte> id, long now)
    {
        var hash = Hash(id);
        var shard = ShardFor(hash);
        lock (shard.Gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var index = shard.Find(id, hash);
            return index >= 0 && !shard.At(index).IsExpired(now);
        }
    }

    /// <summary>Removes a session; true only when an unexpired one was removed (distcache §5.3).</summary>
    public bool Remove(ReadOnlySpan<byte> id, long now)
    {
        var hash = Hash(id);
        var shard = ShardFor(hash);
        lock (shard.Gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var index = shard.Find(id, hash);
            if (index < 0)
            {
                return false;
            }

            var expired = shard.At(index).IsExpired(now);
            RemoveLocked(shard, index);
            if (expired)
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
                ObjectDisposedException.ThrowIf(_disposed, this);
                purged += PurgeLocked(shard, now);
            }
        }

        return purged;
    }

    /// <inheritdoc />
    public SessionStoreKind Kind => SessionStoreKind.Memory;

    // The ISessionStore view, complete on return. The connection handler does not use it (it calls the
    // synchronous methods above: no task, no copy); tests drive the handler's pipelined path with it.

    /// <inheritdoc />
    Task<bool> ISessionStore.AddAsync(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint timeoutMs) =>
        Task.FromResult(Add(id, data, timeoutMs, Now) == DistCacheResult.Ok);

    /// <inheritdoc />
    Task<IMemoryOwner<byte>?> ISessionStore.GetAsync(ReadOnlySpan<byte> id) =>
        Task.FromResult<IMemoryOwner<byte>?>(TryGet(id, Now, out var data) ? new ArrayOwner(data) : null);

    /// <inheritdoc />
    Task<bool> ISessionStore.RemoveAsync(ReadOnlySpan<byte> id) => Task.FromResult(Remove(id, Now));

    /// <inheritdoc />
    Task<bool> ISessionStore.ContainsAsync(ReadOnlySpan<byte> id) => Task.FromResult(Contains(id, Now));

    private sealed class ArrayOwner(byte[] data) : IMemoryOwner<byte>
    {
        public Memory<byte> Memory => data;

        public void Dispose()
        {
        }
    }

    /// <summary>
    /// Hands every unexpired session, with its lifetime left at <paramref name="now"/> (rounded down to whole ms), to
    /// <paramref name="visitor"/>, one shard at a time under that shard's lock (a snapshot: requests on other
    /// shards go on meanwhile). Returns how many were visited.
    /// </summary>
    public long VisitLive<TVisitor>(long now, ref TVisitor visitor)
        where TVisitor : ISessionVisitor, allows ref struct
    {
        long visited = 0;
        foreach (var shard in _shards)
        {
            lock (shard.Gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                for (var i = 0; i < shard.Used; i++)
                {
                    ref var entry = ref shard.At(i);
                    if (entry.Block == null || entry.IsExpired(now))
                    {
                        continue;
                    }

                    var remainingMs = (ulong)(entry.Expiry - now) * 1000 / (ulong)_ticksPerSecond;
                    visitor.Visit(
                        new ReadOnlySpan<byte>(entry.Block, entry.IdLength),
                        new ReadOnlySpan<byte>(entry.Block + entry.IdLength, entry.DataLength),
                        (uint)Math.Min(remainingMs, uint.MaxValue));
                    visited++;
                }
            }
        }

        return visited;
    }

    /// <summary>Frees the native memory. Operations afterwards throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        EnterAll();
        try
        {
            _disposed = true;
            _slabs.Dispose();
        }
        finally
        {
            ExitAll();
        }
    }

    private DistCacheResult AddWhenFull(ReadOnlySpan<byte> id, uint hash, ReadOnlySpan<byte> data, long expiry, long now)
    {
        EnterAll();
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var shard = ShardFor(hash);
            // The id may have been added while we held no lock.
            var existing = shard.Find(id, hash);
            if (existing >= 0)
            {
                if (!shard.At(existing).IsExpired(now))
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
            InsertLocked(shard, id, hash, data, expiry);
            return DistCacheResult.Ok;
        }
        finally
        {
            ExitAll();
        }
    }

    /// <summary>Every shard lock, always in index order, so two full-store writers cannot deadlock.</summary>
    private void EnterAll()
    {
        foreach (var s in _shards)
        {
            s.Gate.Enter();
        }
    }

    private void ExitAll()
    {
        for (var i = _shards.Length - 1; i >= 0; i--)
        {
            _shards[i].Gate.Exit();
        }
    }

    private void EvictSoonestLocked(int howMany)
    {
        // k-way merge over the shard heaps' tops: the globally soonest-expiring entries, in order. The queue is
        // reused (every shard lock is held), so a full store evicts without allocating.
        var tops = _evictionOrder;
        tops.Clear();
        foreach (var shard in _shards)
        {
            if (shard.HeapCount > 0)
            {
                ref var top = ref shard.At(shard.Heap[0]);
                tops.Enqueue(shard, (top.Expiry, top.Sequence));
            }
        }

        for (var i = 0; i < howMany && tops.TryDequeue(out var shard, out _); i++)
        {
            RemoveLocked(shard, shard.Heap[0]);
            Interlocked.Increment(ref _evictions);
            if (shard.HeapCount > 0)
            {
                ref var next = ref shard.At(shard.Heap[0]);
                tops.Enqueue(shard, (next.Expiry, next.Sequence));
            }
        }

        tops.Clear();
    }

    private void InsertLocked(Shard shard, ReadOnlySpan<byte> id, uint hash, ReadOnlySpan<byte> data, long expiry)
    {
        var sizeClass = _slabs.ClassFor(id.Length + data.Length);
        var block = _slabs.Allocate(sizeClass);
        id.CopyTo(new Span<byte>(block, id.Length));
        data.CopyTo(new Span<byte>(block + id.Length, data.Length));
        shard.Insert(hash, block, (byte)sizeClass, id.Length, data.Length, expiry, Interlocked.Increment(ref _sequence));
        shard.Bytes += data.Length;
    }

    private int PurgeLocked(Shard shard, long now)
    {
        var purged = 0;
        while (shard.HeapCount > 0 && shard.At(shard.Heap[0]).IsExpired(now))
        {
            RemoveLocked(shard, shard.Heap[0]);
            purged++;
        }

        if (purged > 0)
        {
            Interlocked.Add(ref _expirations, purged);
        }

        return purged;
    }

    private void RemoveLocked(Shard shard, int index)
    {
        ref var entry = ref shard.At(index);
        shard.Bytes -= entry.DataLength;
        var block = entry.Block;
        var sizeClass = entry.SizeClass;
        shard.Delete(index); // reads the id (for its bucket), so before the chunk is freed
        _slabs.Free(block, sizeClass);
        Interlocked.Decrement(ref _count);
    }

    private Shard ShardFor(uint hash) => _shards[hash & (ShardCount - 1)];

    /// <summary>Per-process seeded (HashCode), which defeats precomputed hash floods.</summary>
    private static uint Hash(ReadOnlySpan<byte> id)
    {
        var hash = new HashCode();
        hash.AddBytes(id);
        return (uint)hash.ToHashCode();
    }

    private struct CopyReader : ISessionReader
    {
        public byte[] Data;

        public void Read(ReadOnlySpan<byte> data) => Data = data.ToArray();
    }

    /// <summary>One stored session: where its id+data block is, and its place in the hash chain and expiry heap.</summary>
    private struct Entry
    {
        public byte* Block;

        /// <summary>Expiry timestamp (clock ticks): the entry is expired when now &gt; Expiry (distcache §6.2).</summary>
        public long Expiry;

        /// <summary>Global insertion order; equal expiries keep insertion order (distcache §6.3).</summary>
        public long Sequence;

        /// <summary>Next entry number + 1 in the bucket's chain (or in the free list), 0 at the end.</summary>
        public int Next;

        public int HeapIndex;
        public int DataLength;

        /// <summary>16 bits of the id's hash: a chain walk skips other ids without reading their blocks.</summary>
        public ushort Tag;
        public byte IdLength;
        public byte SizeClass;

        public readonly bool IsExpired(long now) => now > Expiry;

        public readonly bool EvictsBefore(in Entry other) => Expiry < other.Expiry || (Expiry == other.Expiry && Sequence < other.Sequence);
    }

    /// <summary>
    /// One shard: a chained hash table whose entries live in fixed chunks of structs (free slots chained through
    /// Next), and a binary min-heap of entry numbers ordered by (expiry, insertion order). A new chunk is added
    /// (never copied, so growing leaves no garbage) only when the shard holds more than ever before, so a steady
    /// load allocates nothing. The store's lock for it is Gate.
    /// </summary>
    private sealed class Shard
    {
        public readonly Lock Gate = new();
        public long Bytes;
        private const int ChunkBits = 8;
        private const int ChunkSize = 1 << ChunkBits;
        private Entry[][] _chunks = [];
        public int[] Heap = [];
        public int HeapCount;
        private int[] _buckets = new int[8]; // entry number + 1; 0 = empty
        private int _used; // entries ever handed out (high-water mark)
        private int _freeList; // entry number + 1; 0 = none

        /// <summary>Entry numbers ever handed out: every live entry is below it (free slots have no block).</summary>
        public int Used => _used;

        public int Find(ReadOnlySpan<byte> id, uint hash)
        {
            var buckets = _buckets;
            var tag = TagOf(hash);
            var i = buckets[(hash >> ShardBits) & (uint)(buckets.Length - 1)];
            while (i != 0)
            {
                ref var e = ref At(i - 1);
                if (e.Tag == tag && e.IdLength == id.Length && new ReadOnlySpan<byte>(e.Block, e.IdLength).SequenceEqual(id))
                {
                    return i - 1;
                }

                i = e.Next;
            }

            return -1;
        }

        public void Insert(uint hash, byte* block, byte sizeClass, int idLength, int dataLength, long expiry, long sequence)
        {
            if (HeapCount >= _buckets.Length)
            {
                Rehash(_buckets.Length * 2); // at most one entry per bucket on average
            }

            int index;
            if (_freeList != 0)
            {
                index = _freeList - 1;
                _freeList = At(index).Next;
            }
            else
            {
                if (_used == _chunks.Length * ChunkSize)
                {
                    AddChunk();
                }

                index = _used++;
            }

            ref var e = ref At(index);
            e.Block = block;
            e.SizeClass = sizeClass;
            e.IdLength = (byte)idLength;
            e.Tag = TagOf(hash);
            e.DataLength = dataLength;
            e.Expiry = expiry;
            e.Sequence = sequence;
            ref var bucket = ref _buckets[(hash >> ShardBits) & (uint)(_buckets.Length - 1)];
            e.Next = bucket;
            bucket = index + 1;

            Heap[HeapCount] = index;
            e.HeapIndex = HeapCount;
            HeapCount++;
            SiftUp(HeapCount - 1);
        }

        public void Delete(int index)
        {
            ref var e = ref At(index);
            // Unlink from the bucket's chain.
            ref var link = ref _buckets[(Hash(new ReadOnlySpan<byte>(e.Block, e.IdLength)) >> ShardBits) & (uint)(_buckets.Length - 1)];
            while (link - 1 != index)
            {
                link = ref At(link - 1).Next;
            }

            link = e.Next;

            // Out of the heap: the last element takes its place and moves up or down.
            var at = e.HeapIndex;
            HeapCount--;
            if (at != HeapCount)
            {
                var last = Heap[HeapCount];
                Heap[at] = last;
                At(last).HeapIndex = at;
                SiftDown(at);
                SiftUp(At(last).HeapIndex);
            }

            e.Block = null;
            e.HeapIndex = -1;
            e.Next = _freeList;
            _freeList = index + 1;
        }

        public ref Entry At(int index) => ref _chunks[index >> ChunkBits][index & (ChunkSize - 1)];

        private void AddChunk()
        {
            Array.Resize(ref _chunks, _chunks.Length + 1);
            _chunks[^1] = new Entry[ChunkSize];
            if (Heap.Length < _chunks.Length * ChunkSize)
            {
                Array.Resize(ref Heap, Math.Max(_chunks.Length * ChunkSize, Heap.Length * 3 / 2));
            }
        }

        private static ushort TagOf(uint hash) => (ushort)((hash * 0x9E37_79B1u) >> 16);

        private void Rehash(int size)
        {
            var buckets = new int[size];
            for (var i = 0; i < _used; i++)
            {
                ref var e = ref At(i);
                if (e.Block == null)
                {
                    continue;
                }

                ref var bucket = ref buckets[(Hash(new ReadOnlySpan<byte>(e.Block, e.IdLength)) >> ShardBits) & (uint)(size - 1)];
                e.Next = bucket;
                bucket = i + 1;
            }

            _buckets = buckets;
        }

        private void SiftUp(int at)
        {
            var item = Heap[at];
            ref var entry = ref At(item);
            while (at > 0)
            {
                var parent = (at - 1) >> 1;
                var p = Heap[parent];
                if (!entry.EvictsBefore(At(p)))
                {
                    break;
                }

                Heap[at] = p;
                At(p).HeapIndex = at;
                at = parent;
            }

            Heap[at] = item;
            entry.HeapIndex = at;
        }

        private void SiftDown(int at)
        {
            var item = Heap[at];
            ref var entry = ref At(item);
            while (true)
            {
                var child = (at << 1) + 1;
                if (child >= HeapCount)
                {
                    break;
                }

                if (child + 1 < HeapCount && At(Heap[child + 1]).EvictsBefore(At(Heap[child])))
                {
                    child++;
                }

                var c = Heap[child];
                if (!At(c).EvictsBefore(entry))
                {
                    break;
                }

                Heap[at] = c;
                At(c).HeapIndex = at;
                at = child;
            }

            Heap[at] = item;
            entry.HeapIndex = at;
        }
    }
}
