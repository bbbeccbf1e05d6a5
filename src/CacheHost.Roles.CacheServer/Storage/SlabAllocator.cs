using System.Runtime.InteropServices;

namespace CacheHost.Roles.CacheServer.Storage;

/// <summary>
/// Native memory for session data, in size classes as memcached's slabs: a chunk of class <c>c</c> holds up to
/// <see cref="ChunkSize"/>(c) bytes; chunks are carved from 1 MiB pages and a freed chunk goes on its class's
/// free list for the next item of that class. So a steady ADD/REMOVE/expiry load allocates nothing, managed or
/// native, and the garbage collector never sees session data. Classes are 32 bytes apart up to 1 KiB, then 32
/// per doubling (a chunk wastes at most ~3 % of its size, on average ~16 bytes for a 1 KiB session).
/// Pages are kept for reuse once touched (memcached does the same); a page's untouched tail costs no RSS.
/// Thread-safe: one lock per class, held only to pop or push one chunk.
/// </summary>
internal sealed unsafe class SlabAllocator : IDisposable
{
    /// <summary>Bytes per page (memcached's default item page size).</summary>
    public const int PageSize = 1 << 20;

    private const int Granule = 32;

    private readonly int[] _chunkSizes;
    private readonly byte[] _classOfGranules;
    private readonly SizeClass[] _classes;
    private readonly List<nint> _pages = [];
    private long _pageBytes;
    private bool _disposed;

    /// <summary>Creates the classes for items of up to <paramref name="maxItemSize"/> bytes.</summary>
    public SlabAllocator(int maxItemSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxItemSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxItemSize, PageSize);
        var sizes = new List<int>();
        for (var size = Granule; ; )
        {
            sizes.Add(Math.Min(size, RoundUp(maxItemSize)));
            if (size >= maxItemSize)
            {
                break;
            }

            size += Math.Max(Granule, (size / 32) & ~(Granule - 1));
        }

        _chunkSizes = [.. sizes];
        _classes = new SizeClass[_chunkSizes.Length];
        for (var c = 0; c < _classes.Length; c++)
        {
            _classes[c] = new SizeClass(_chunkSizes[c]);
        }

        _classOfGranules = new byte[(RoundUp(maxItemSize) / Granule) + 1];
        var cls = 0;
        for (var g = 0; g < _classOfGranules.Length; g++)
        {
            while (_chunkSizes[cls] < g * Granule)
            {
                cls++;
            }

            _classOfGranules[g] = checked((byte)cls);
        }

        MaxItemSize = maxItemSize;
    }

    /// <summary>Frees the pages if the store was never disposed (tests create many).</summary>
    ~SlabAllocator() => FreePages();

    /// <summary>Largest item this allocator takes.</summary>
    public int MaxItemSize { get; }

    /// <summary>Number of size classes.</summary>
    public int ClassCount => _chunkSizes.Length;

    /// <summary>Bytes of native pages obtained so far (an upper bound of the RSS they cost).</summary>
    public long PageBytes => Interlocked.Read(ref _pageBytes);

    /// <summary>Chunk size of a class.</summary>
    public int ChunkSize(int sizeClass) => _chunkSizes[sizeClass];

    /// <summary>The smallest class whose chunks hold <paramref name="size"/> bytes.</summary>
    public int ClassFor(int size) => _classOfGranules[(size + Granule - 1) / Granule];

    /// <summary>A chunk of <paramref name="sizeClass"/>; from the free list, else carved from a page.</summary>
    public byte* Allocate(int sizeClass)
    {
        var c = _classes[sizeClass];
        lock (c.Gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var chunk = c.FreeHead;
            if (chunk != null)
            {
                c.FreeHead = *(byte**)chunk;
                return chunk;
            }

            if (c.PageLeft < c.Size)
            {
                c.PageNext = NewPage();
                c.PageLeft = PageSize;
            }

            chunk = c.PageNext;
            c.PageNext += c.Size;
            c.PageLeft -= c.Size;
            return chunk;
        }
    }

    /// <summary>Returns a chunk to its class's free list.</summary>
    public void Free(byte* chunk, int sizeClass)
    {
        var c = _classes[sizeClass];
        lock (c.Gate)
        {
            *(byte**)chunk = c.FreeHead;
            c.FreeHead = chunk;
        }
    }

    /// <summary>Gives every page back. Callers must not touch chunks afterwards (the store disposes under all its locks).</summary>
    public void Dispose()
    {
        FreePages();
        GC.SuppressFinalize(this);
    }

    private byte* NewPage()
    {
        var page = (byte*)NativeMemory.Alloc(PageSize);
        lock (_pages)
        {
            _pages.Add((nint)page);
        }

        // No GC.AddMemoryPressure: it induces gen-2 collections while the store grows, which is what this
        // allocator exists to avoid (an unreferenced store in a test is still finalized by an ordinary GC).
        Interlocked.Add(ref _pageBytes, PageSize);
        return page;
    }

    private void FreePages()
    {
        lock (_pages)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (var c in _classes)
            {
                lock (c.Gate)
                {
                    c.FreeHead = null;
                    c.PageNext = null;
                    c.PageLeft = 0;
                }
            }

            foreach (var page in _pages)
            {
                NativeMemory.Free((void*)page);
            }

            _pages.Clear();
            Interlocked.Exchange(ref _pageBytes, 0);
        }
    }

    private static int RoundUp(int size) => (size + Granule - 1) & ~(Granule - 1);

    private sealed class SizeClass(int size)
    {
        public readonly Lock Gate = new();
        public readonly int Size = size;
        public byte* FreeHead;
        public byte* PageNext;
        public int PageLeft;
    }
}
