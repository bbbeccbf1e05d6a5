namespace CacheHost.Roles.CacheServer.Storage;

/// <summary>
/// A binary min-heap of entries ordered by (expiry, insertion order) that supports removal of any entry via
/// the index it keeps in the entry. Purging expired entries pops from the top, so expiry never scans the
/// store. Not thread-safe: the owning shard's lock protects it.
/// </summary>
internal sealed class ExpiryHeap
{
    private SessionEntry[] _items = new SessionEntry[16];
    private int _count;

    public int Count => _count;

    public SessionEntry? Peek() => _count == 0 ? null : _items[0];

    public void Add(SessionEntry entry)
    {
        if (_count == _items.Length)
        {
            Array.Resize(ref _items, _items.Length * 2);
        }

        _items[_count] = entry;
        entry.HeapIndex = _count;
        _count++;
        SiftUp(_count - 1);
    }

    public SessionEntry Pop()
    {
        var top = _items[0];
        RemoveAt(0);
        return top;
    }

    public void Remove(SessionEntry entry)
    {
        var index = entry.HeapIndex;
        if (index < 0 || index >= _count || !ReferenceEquals(_items[index], entry))
        {
            return;
        }

        RemoveAt(index);
    }

    private void RemoveAt(int index)
    {
        var removed = _items[index];
        removed.HeapIndex = -1;
        _count--;
        if (index != _count)
        {
            var last = _items[_count];
            _items[index] = last;
            last.HeapIndex = index;
            _items[_count] = null!;
            SiftDown(index);
            SiftUp(last.HeapIndex);
        }
        else
        {
            _items[_count] = null!;
        }

        // Give memory back after a mass eviction or purge, but not on every small fluctuation.
        if (_items.Length > 64 && _count < _items.Length / 4)
        {
            Array.Resize(ref _items, _items.Length / 2);
        }
    }

    private void SiftUp(int index)
    {
        var item = _items[index];
        while (index > 0)
        {
            var parent = (index - 1) >> 1;
            var p = _items[parent];
            if (!item.EvictsBefore(p))
            {
                break;
            }

            _items[index] = p;
            p.HeapIndex = index;
            index = parent;
        }

        _items[index] = item;
        item.HeapIndex = index;
    }

    private void SiftDown(int index)
    {
        var item = _items[index];
        while (true)
        {
            var child = (index << 1) + 1;
            if (child >= _count)
            {
                break;
            }

            if (child + 1 < _count && _items[child + 1].EvictsBefore(_items[child]))
            {
                child++;
            }

            var c = _items[child];
            if (!c.EvictsBefore(item))
            {
                break;
            }

            _items[index] = c;
            c.HeapIndex = index;
            index = child;
        }

        _items[index] = item;
        item.HeapIndex = index;
    }
}
