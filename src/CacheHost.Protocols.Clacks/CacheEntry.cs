namespace CacheHost.Protocols.Clacks;

/// <summary>
/// One cache entry (clacks §8.1). Data is Latin-1-mapped bytes; times are Unix seconds with fractions.
/// A tombstone has <see cref="Deleted"/> set and empty data.
/// </summary>
public sealed record CacheEntry(string Data, double CacheTime, double AccessTime, bool Deleted);
