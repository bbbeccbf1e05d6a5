using System.Buffers;

namespace CacheHost.Roles.CacheServer.Storage;

/// <summary>Which store holds the sessions (<c>CacheHost:CacheServer:Store</c>).</summary>
public enum SessionStoreKind
{
    /// <summary>The in-process store (<see cref="SessionStore"/>): dc_server's own cache, capacity and eviction.</summary>
    Memory,

    /// <summary>A Redis or Valkey server, replicated pair or Redis Cluster (<see cref="RedisSessionStore"/>).</summary>
    Redis,
}

/// <summary>
/// The session cache behind a CacheServer, in the role of libdistcacheserver's pluggable cache (distcache §9):
/// ADD, GET, REMOVE and HAVE with dc_server's meaning (distcache §5). Every method copies the id and data it is
/// given before it returns, so the caller may reuse its buffers while the operation is still pending. A store
/// that cannot be reached faults the task (the connection handler answers 0x02 DISCONNECTED, see
/// docs/session-stores.md); it never leaves it pending forever.
/// </summary>
/// <remarks>
/// The connection handler answers the in-memory <see cref="SessionStore"/> through its synchronous methods (no
/// task, no copy, nothing allocated per request) and any other store through this interface, pipelined: every
/// request of a read batch is issued before the first reply is awaited, and replies are written in request order.
/// </remarks>
public interface ISessionStore
{
    /// <summary>What kind of store this is.</summary>
    SessionStoreKind Kind { get; }

    /// <summary>
    /// Stores a session for <paramref name="timeoutMs"/> unless an unexpired one with the same id exists (ADD never
    /// replaces, distcache §5.1 step 5). True when stored, false when one was present (0x65).
    /// </summary>
    Task<bool> AddAsync(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint timeoutMs);

    /// <summary>The session's data (dispose it once written), or null when there is no unexpired session.</summary>
    Task<IMemoryOwner<byte>?> GetAsync(ReadOnlySpan<byte> id);

    /// <summary>Removes a session; true only when an unexpired one was removed (distcache §5.3).</summary>
    Task<bool> RemoveAsync(ReadOnlySpan<byte> id);

    /// <summary>True when an unexpired session exists; changes nothing (distcache §5.4).</summary>
    Task<bool> ContainsAsync(ReadOnlySpan<byte> id);
}
