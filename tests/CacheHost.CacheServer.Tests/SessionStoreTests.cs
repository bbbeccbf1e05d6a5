using System.Text;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer.Storage;
using Xunit;

namespace CacheHost.CacheServer.Tests;

/// <summary>Expiry and eviction against the rules of distcache §6.2 and §6.3.</summary>
public sealed class SessionStoreTests
{
    private static byte[] Id(string s) => Encoding.ASCII.GetBytes(s);

    [Fact]
    public void AnEntryExpiresStrictlyAfterItsTimeout()
    {
        var clock = new ManualClock();
        var store = new SessionStore(64, clock);
        Assert.Equal(DistCacheResult.Ok, store.Add(Id("a"), [1, 2, 3, 4, 5], 1000, clock.GetTimestamp()));
        clock.AdvanceMs(1000);
        Assert.True(store.Contains(Id("a"), clock.GetTimestamp()), "now == expiry is not expired");
        clock.AdvanceMicros(1);
        Assert.False(store.Contains(Id("a"), clock.GetTimestamp()));
        Assert.False(store.TryGet(Id("a"), clock.GetTimestamp(), out _));
        Assert.False(store.Remove(Id("a"), clock.GetTimestamp()), "REMOVE of an expired entry reports absent");
    }

    [Fact]
    public void TimeoutZeroIsAcceptedButExpiredForAnyLaterLookup()
    {
        var clock = new ManualClock();
        var store = new SessionStore(64, clock);
        Assert.Equal(DistCacheResult.Ok, store.Add(Id("z"), [1], 0, clock.GetTimestamp()));
        clock.AdvanceMicros(1);
        Assert.False(store.Contains(Id("z"), clock.GetTimestamp()));
        Assert.Equal(DistCacheResult.Ok, store.Add(Id("z"), [2], 1000, clock.GetTimestamp()));
    }

    [Fact]
    public void AddNeverReplacesAnUnexpiredEntryButReplacesAnExpiredOne()
    {
        var clock = new ManualClock();
        var store = new SessionStore(64, clock);
        store.Add(Id("k"), [1], 100, clock.GetTimestamp());
        Assert.Equal(DistCacheResult.AddMatchingSession, store.Add(Id("k"), [2], 100, clock.GetTimestamp()));
        Assert.True(store.TryGet(Id("k"), clock.GetTimestamp(), out var data));
        Assert.Equal([1], data);
        clock.AdvanceMs(101);
        Assert.Equal(DistCacheResult.Ok, store.Add(Id("k"), [3], 100, clock.GetTimestamp()));
        Assert.True(store.TryGet(Id("k"), clock.GetTimestamp(), out data));
        Assert.Equal([3], data);
        Assert.Equal(1, store.Count);
    }

    [Fact]
    public void WhenFullTheSoonestExpiringThirtiethIsEvictedBeforeInserting()
    {
        var clock = new ManualClock();
        var store = new SessionStore(64, clock);
        var now = clock.GetTimestamp();
        // Descending timeouts: s0 expires last, s63 first.
        for (var i = 0; i < 64; i++)
        {
            Assert.Equal(DistCacheResult.Ok, store.Add(Id($"s{i}"), [1], (uint)(1_000_000 - (i * 1000)), now));
        }

        Assert.Equal(DistCacheResult.Ok, store.Add(Id("new1"), [1], 2_000_000, now));
        Assert.Equal(63, store.Count);
        Assert.False(store.Contains(Id("s63"), now));
        Assert.False(store.Contains(Id("s62"), now));
        Assert.True(store.Contains(Id("s61"), now));
        Assert.Equal(2, store.Evictions);

        // One free slot: the next add evicts nothing.
        Assert.Equal(DistCacheResult.Ok, store.Add(Id("new2"), [1], 2_000_000, now));
        Assert.Equal(64, store.Count);
        Assert.Equal(2, store.Evictions);

        // Full again: the next two soonest go.
        Assert.Equal(DistCacheResult.Ok, store.Add(Id("new3"), [1], 2_000_000, now));
        Assert.False(store.Contains(Id("s61"), now));
        Assert.False(store.Contains(Id("s60"), now));
        Assert.True(store.Contains(Id("s59"), now));
    }

    [Fact]
    public void EqualExpiriesAreEvictedInInsertionOrder()
    {
        var clock = new ManualClock();
        var store = new SessionStore(90, clock);
        var now = clock.GetTimestamp();
        for (var i = 0; i < 90; i++)
        {
            store.Add(Id($"t{i}"), [1], 5000, now);
        }

        store.Add(Id("extra"), [1], 5000, now);
        Assert.False(store.Contains(Id("t0"), now));
        Assert.False(store.Contains(Id("t1"), now));
        Assert.False(store.Contains(Id("t2"), now));
        Assert.True(store.Contains(Id("t3"), now));
        Assert.True(store.Contains(Id("extra"), now));
    }

    [Fact]
    public void ADuplicateAddOnAFullStoreEvictsNothing()
    {
        var clock = new ManualClock();
        var store = new SessionStore(64, clock);
        var now = clock.GetTimestamp();
        for (var i = 0; i < 64; i++)
        {
            store.Add(Id($"d{i}"), [1], 10_000, now);
        }

        Assert.Equal(DistCacheResult.AddMatchingSession, store.Add(Id("d5"), [2], 10_000, now));
        Assert.Equal(64, store.Count);
        Assert.Equal(0, store.Evictions);
    }

    [Fact]
    public void ExpiredEntriesAreFreedBeforeAnythingIsEvicted()
    {
        var clock = new ManualClock();
        var store = new SessionStore(64, clock);
        var now = clock.GetTimestamp();
        for (var i = 0; i < 64; i++)
        {
            store.Add(Id($"e{i}"), [1], i < 10 ? 200u : 100_000u, now);
        }

        clock.AdvanceMs(300);
        now = clock.GetTimestamp();

        // Ten slots were freed by expiry: ten fresh ADDs evict nothing, whichever shards the ids land in
        // (an expired entry may be purged lazily, but always before anything is evicted).
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(DistCacheResult.Ok, store.Add(Id($"fresh{i}"), [1], 100_000, now));
            Assert.Equal(0, store.Evictions);
        }

        store.PurgeExpired(now);
        Assert.Equal(64, store.Count);
        Assert.Equal(10, store.Expirations);

        // The eleventh finds the store really full and evicts the soonest-expiring live entries.
        Assert.Equal(DistCacheResult.Ok, store.Add(Id("fresh10"), [1], 100_000, now));
        Assert.Equal(2, store.Evictions);
    }

    [Fact]
    public void PurgeOnlyTouchesWhatExpired()
    {
        var clock = new ManualClock();
        var store = new SessionStore(10_000, clock);
        var now = clock.GetTimestamp();
        for (var i = 0; i < 5000; i++)
        {
            store.Add(Id($"p{i}"), new byte[10], i % 2 == 0 ? 50u : 60_000u, now);
        }

        Assert.Equal(50_000, store.DataBytes);
        clock.AdvanceMs(51);
        Assert.Equal(2500, store.PurgeExpired(clock.GetTimestamp()));
        Assert.Equal(2500, store.Count);
        Assert.Equal(25_000, store.DataBytes);
        Assert.Equal(0, store.PurgeExpired(clock.GetTimestamp()));
    }

    [Fact]
    public void AMillionSessionsFitAndOverflowEvictsAThirtiethByExpiry()
    {
        const int capacity = 1_000_000;
        var clock = new ManualClock();
        var store = new SessionStore(capacity, clock);
        var now = clock.GetTimestamp();
        var data = new byte[16];
        var id = new byte[8];
        for (var i = 0; i < capacity; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(id, i);
            // Timeouts cycle so that expiry order differs from insertion order.
            Assert.Equal(DistCacheResult.Ok, store.Add(id, data, (uint)(100_000 + ((i * 7919L) % 1_000_000)), now));
        }

        Assert.Equal(capacity, store.Count);
        Assert.Equal(33_333, store.EvictionBatch);
        Assert.Equal(DistCacheResult.Ok, store.Add("overflow"u8, data, 5_000_000, now));
        Assert.Equal(capacity - 33_333 + 1, store.Count);
        Assert.Equal(33_333, store.Evictions);

        // Exactly the entries with the 33,333 smallest timeouts are gone.
        var survivors = 0;
        var wrong = 0;
        for (var i = 0; i < capacity; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(id, i);
            var timeout = 100_000 + ((i * 7919L) % 1_000_000);
            var present = store.Contains(id, now);
            survivors += present ? 1 : 0;
            if (present == (timeout < 100_000 + 33_333))
            {
                wrong++;
            }
        }

        Assert.Equal(capacity - 33_333, survivors);
        Assert.Equal(0, wrong);
    }

    [Fact]
    public void ConcurrentWritersNeverExceedCapacity()
    {
        var clock = new ManualClock();
        var store = new SessionStore(1000, clock);
        var now = clock.GetTimestamp();
        Parallel.For(0, 8, worker =>
        {
            var id = new byte[12];
            for (var i = 0; i < 20_000; i++)
            {
                BitConverter.TryWriteBytes(id, (worker * 1_000_000) + i);
                store.Add(id, [1, 2, 3, 4, 5], (uint)(1000 + (i % 5000)), now);
                Assert.True(store.Count <= 1000);
                if (i % 3 == 0)
                {
                    store.Remove(id, now);
                }
            }
        });
        Assert.True(store.Count <= 1000);
        Assert.Equal(store.Count * 5L, store.DataBytes);
    }

    [Fact]
    public void AddGetRemoveAndEvictionAllocateNothingManagedInSteadyState()
    {
        // Issue 13: session data lives in the store's native slabs, the index in struct arrays, so once the arrays
        // have grown to the largest population seen, no request allocates (no gen-0 collections under the mix).
        var clock = new ManualClock();
        var store = new SessionStore(300, clock);
        var data = new byte[1024];
        var id = new byte[32];
        var reader = new LengthReader();
        var failures = 0;
        void Round(int from, int count)
        {
            var now = clock.GetTimestamp();
            for (var i = from; i < from + count; i++)
            {
                BitConverter.TryWriteBytes(id, i);
                data[0] = (byte)i;
                // Plain checks, not Assert.Equal (xunit's comparer allocates).
                failures += store.Add(id, data.AsSpan(0, 100 + (i % 900)), (uint)(1000 + (i % 7)), now) == DistCacheResult.Ok ? 0 : 1;
                failures += store.TryGet(id, now, ref reader) ? 0 : 1;
                if (i % 4 == 0)
                {
                    failures += store.Remove(id, now) ? 0 : 1;
                }

                if (i % 16 == 0)
                {
                    clock.AdvanceMs(1); // some entries expire and are purged by later ADDs
                }
            }
        }

        Round(0, 100_000); // fills the store, evicts, expires: every array at its final size, every path jitted
        var before = GC.GetAllocatedBytesForCurrentThread();
        Round(100_000, 100_000);
        // A shard whose population reaches a new high grows its index arrays by half (the only allocation left: a
        // few hundred bytes now and then for the small shards here, as random per-shard populations set new
        // records). Anything per request would be tens of megabytes: 100,000 ADDs of 100-999 bytes.
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 32 * 1024);
        Assert.Equal(0, failures);
        Assert.True(store.Evictions > 0, "the full-store path was measured");
        Assert.True(store.Expirations > 0, "the expiry path was measured");
        Assert.InRange(reader.Length, 100, 999);
    }

    [Fact]
    public void FreedSlabChunksAreReusedSoAChurningLoadNeedsNoNewPages()
    {
        var clock = new ManualClock();
        var store = new SessionStore(10_000, clock);
        var now = clock.GetTimestamp();
        var id = new byte[16];
        for (var round = 0; round < 20; round++)
        {
            for (var i = 0; i < 5000; i++)
            {
                BitConverter.TryWriteBytes(id, (round * 5000) + i);
                Assert.Equal(DistCacheResult.Ok, store.Add(id, new byte[1000], 60_000, now));
            }

            if (round == 0)
            {
                Assert.InRange(store.SlabBytes, 1, 6 * SlabAllocator.PageSize); // 5000 x 1 KiB chunks
            }

            for (var i = 0; i < 5000; i++)
            {
                BitConverter.TryWriteBytes(id, (round * 5000) + i);
                Assert.True(store.Remove(id, now));
            }
        }

        Assert.InRange(store.SlabBytes, 1, 6 * SlabAllocator.PageSize);
        Assert.Equal(0, store.Count);
        Assert.Equal(0, store.DataBytes);
    }

    [Fact]
    public void SizeClassesHoldEverySizeWithAtMostAThirtySecondWasted()
    {
        using var slabs = new SlabAllocator(64 + 32768);
        for (var size = 1; size <= 64 + 32768; size++)
        {
            var c = slabs.ClassFor(size);
            Assert.True(slabs.ChunkSize(c) >= size, $"size {size}: class {c} holds {slabs.ChunkSize(c)}");
            Assert.True(c == 0 || slabs.ChunkSize(c - 1) < size, $"size {size}: a smaller class would do");
            Assert.True(slabs.ChunkSize(c) - size < Math.Max(32, slabs.ChunkSize(c) / 32), $"size {size}: chunk {slabs.ChunkSize(c)}");
        }
    }

    [Fact]
    public void SessionsOfEverySizeComeBackByteForByte()
    {
        var clock = new ManualClock();
        using var store = new SessionStore(1000, clock);
        var now = clock.GetTimestamp();
        var random = new Random(13);
        var stored = new Dictionary<string, byte[]>();
        foreach (var size in new[] { 1, 7, 31, 32, 33, 1000, 1024, 2047, 4096, 20_000, 32_768 })
        {
            var id = new byte[1 + random.Next(64)];
            random.NextBytes(id);
            var data = new byte[size];
            random.NextBytes(data);
            Assert.Equal(DistCacheResult.Ok, store.Add(id, data, 10_000, now));
            stored[Convert.ToHexString(id)] = data;
        }

        foreach (var (id, data) in stored)
        {
            Assert.True(store.TryGet(Convert.FromHexString(id), now, out var back));
            Assert.Equal(data, back);
        }

        Assert.Throws<ArgumentException>(() => store.Add(new byte[65], [1], 1000, now));
    }

    [Fact]
    public void ADisposedStoreRefusesWorkInsteadOfTouchingFreedMemory()
    {
        var clock = new ManualClock();
        var store = new SessionStore(10, clock);
        store.Add(Id("a"), [1], 1000, clock.GetTimestamp());
        store.Dispose();
        Assert.Throws<ObjectDisposedException>(() => store.Contains(Id("a"), clock.GetTimestamp()));
        Assert.Throws<ObjectDisposedException>(() => store.Add(Id("b"), [1], 1000, clock.GetTimestamp()));
    }

    private struct LengthReader : ISessionReader
    {
        public int Length;

        public void Read(ReadOnlySpan<byte> data) => Length = data.Length;
    }
}
