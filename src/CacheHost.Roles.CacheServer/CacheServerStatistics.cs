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

    // Answers by kind and result: [operation * 2] OK (ADD stored, GET/HAVE hit, REMOVE removed), [+ 1] anything else.
    private readonly StripedCounter[] _results = [new(), new(), new(), new(), new(), new(), new(), new()];

    /// <summary>GET/HAVE hits.</summary>
    public long Hits => Results(DistCacheOperation.Get, ok: true) + Results(DistCacheOperation.Have, ok: true);

    /// <summary>GET/HAVE misses.</summary>
    public long Misses => Results(DistCacheOperation.Get, ok: false) + Results(DistCacheOperation.Have, ok: false);

    /// <summary>ADDs answered with anything but OK.</summary>
    public long AddRejections => Results(DistCacheOperation.Add, ok: false);

    /// <summary>Server-side latency of answered requests (read to reply flushed).</summary>
    public RequestLatency Latency { get; } = new();

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

    /// <summary>Counts one answered request and its result (OK, or any other answer).</summary>
    public void CountOperation(DistCacheOperation operation, bool ok)
    {
        _operations[(int)operation].Increment();
        _results[((int)operation * 2) + (ok ? 0 : 1)].Increment();
    }

    /// <summary>Answers of one kind that were OK (<paramref name="ok"/>) or not.</summary>
    public long Results(DistCacheOperation operation, bool ok) => _results[((int)operation * 2) + (ok ? 0 : 1)].Value;

    /// <summary>Requests of one kind.</summary>
    public long Operations(DistCacheOperation operation) => _operations[(int)operation].Value;

    /// <summary>Counts a connection closed for a protocol error.</summary>
    public void CountProtocolError(DistCacheProtocolError error) => _protocolErrors[(int)error].Increment();

    /// <summary>Protocol errors of one kind.</summary>
    public long ProtocolErrors(DistCacheProtocolError error) => _protocolErrors[(int)error].Value;

    /// <summary>Protocol errors of every kind.</summary>
    public long TotalProtocolErrors => _protocolErrors.Sum(c => c.Value);
}
