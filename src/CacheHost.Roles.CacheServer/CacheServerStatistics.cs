using CacheHost.Core;
using CacheHost.Protocols.DistCache;

namespace CacheHost.Roles.CacheServer;

/// <summary>
/// Counters of the CacheServer role (for the stats line, STATUS= and the control socket's cache.stats).
/// Each counter is striped, so connections never contend on them.
/// </summary>
public sealed class CacheServerStatistics
{
    private readonly StripedCounter[] _operations = [new(), new(), new(), new()];
    private readonly StripedCounter[] _protocolErrors = Enumerable.Range(0, Enum.GetValues<DistCacheProtocolError>().Length + 1).Select(_ => new StripedCounter()).ToArray();

    /// <summary>GET/HAVE hits.</summary>
    public StripedCounter Hits { get; } = new();

    /// <summary>GET/HAVE misses.</summary>
    public StripedCounter Misses { get; } = new();

    /// <summary>ADDs answered with anything but OK.</summary>
    public StripedCounter AddRejections { get; } = new();

    /// <summary>Connections accepted.</summary>
    public StripedCounter ConnectionsAccepted { get; } = new();

    /// <summary>Connections currently open.</summary>
    public StripedCounter ConnectionsOpen { get; } = new();

    /// <summary>Connections closed by IdleTimeout or RequestTimeout.</summary>
    public StripedCounter ConnectionsTimedOut { get; } = new();

    /// <summary>Requests the session store failed (Redis unreachable, failover, timeout), each answered 0x02.</summary>
    public StripedCounter StoreErrors { get; } = new();

    /// <summary>Request payload bytes received.</summary>
    public StripedCounter BytesIn { get; } = new();

    /// <summary>Response payload bytes sent.</summary>
    public StripedCounter BytesOut { get; } = new();

    /// <summary>Requests answered, of every kind (the reference's "total operations").</summary>
    public long TotalOperations => _operations.Sum(c => c.Value);

    /// <summary>Counts one answered request.</summary>
    public void CountOperation(DistCacheOperation operation) => _operations[(int)operation].Increment();

    /// <summary>Requests of one kind.</summary>
    public long Operations(DistCacheOperation operation) => _operations[(int)operation].Value;

    /// <summary>Counts a connection closed for a protocol error.</summary>
    public void CountProtocolError(DistCacheProtocolError error) => _protocolErrors[(int)error].Increment();

    /// <summary>Protocol errors of one kind.</summary>
    public long ProtocolErrors(DistCacheProtocolError error) => _protocolErrors[(int)error].Value;

    /// <summary>Protocol errors of every kind.</summary>
    public long TotalProtocolErrors => _protocolErrors.Sum(c => c.Value);
}
