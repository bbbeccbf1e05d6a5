using CacheHost.Protocols.Clacks;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// The key/value store of clacks §8: entries with modification/access times and tombstones. Not thread-safe;
/// the server's gate serialises access. <see cref="Dirty"/> drives persistence (clacks §8.2 / 13.2).
/// </summary>
internal sealed class ClacksCache
{
    private readonly Dictionary<string, CacheEntry> _entries = new(StringComparer.Ordinal);

    public bool Dirty { get; set; }

    public int Count => _entries.Count;

    public void Store(string key, string value, double now)
    {
        _entries[key] = new CacheEntry(value, now, now, false);
        Dirty = true;
    }

    /// <summary>Live value or null; a hit refreshes accesstime.</summary>
    public string? Retrieve(string key, double now)
    {
        if (_entries.TryGetValue(key, out var entry) && !entry.Deleted)
        {
            _entries[key] = entry with { AccessTime = now };
            Dirty = true;
            return entry.Data;
        }

        return null;
    }

    /// <summary>Tombstones the key (even if it never existed, clacks §5.2).</summary>
    public void Remove(string key, double now)
    {
        _entries[key] = new CacheEntry(string.Empty, now, now, true);
        Dirty = true;
    }

    /// <summary>INCREMENT/DECREMENT with Perl number semantics (clacks §8.4).</summary>
    public void Add(string key, string? step, bool negate, double now)
    {
        string? old = _entries.TryGetValue(key, out var entry) && !entry.Deleted ? entry.Data : null;
        _entries[key] = new CacheEntry(PerlNumber.Apply(old, step, negate), now, now, false);
        Dirty = true;
    }

    public void Clear()
    {
        _entries.Clear();
        Dirty = true;
    }

    /// <summary>KEYSYNC merge (clacks §12.4 step 3): newest modification wins, ties keep the local entry.</summary>
    public void Merge(string key, CacheEntry incoming)
    {
        if (!_entries.TryGetValue(key, out var local) || incoming.CacheTime > local.CacheTime)
        {
            _entries[key] = incoming;
        }

        Dirty = true;
    }

    /// <summary>All keys including tombstones, bytewise order (Q4 kept).</summary>
    public List<string> SortedKeys()
    {
        var keys = _entries.Keys.ToList();
        keys.Sort(StringComparer.Ordinal);
        return keys;
    }

    public List<KeyValuePair<string, CacheEntry>> SortedEntries()
    {
        var list = _entries.ToList();
        list.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        return list;
    }

    public void Load(Dictionary<string, CacheEntry> entries)
    {
        _entries.Clear();
        foreach (var (key, entry) in entries)
        {
            _entries[key] = entry;
        }
    }

    /// <summary>Housekeeping (clacks §8.3); returns the removed keys with their kind.</summary>
    public List<(string Key, bool WasDeleted)> Clean(double now, double deletedCacheTime, double staleCacheTime)
    {
        var removed = new List<(string, bool)>();
        foreach (var (key, entry) in _entries)
        {
            if (entry.Deleted ? entry.CacheTime < now - deletedCacheTime : entry.AccessTime < now - staleCacheTime)
            {
                removed.Add((key, entry.Deleted));
            }
        }

        foreach (var (key, _) in removed)
        {
            _entries.Remove(key);
        }

        if (removed.Count > 0)
        {
            Dirty = true;
        }

        return removed;
    }
}
