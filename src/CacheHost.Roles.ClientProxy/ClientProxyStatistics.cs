using CacheHost.Core;
using CacheHost.Protocols.DistCache;

namespace CacheHost.Roles.ClientProxy;

/// <summary>
/// Counters for <c>proxy.stats</c> (docs/systemd.md, "Control socket"). Per-request counters are striped so
/// that local connections on different CPUs do not contend; rare events use plain Interlocked fields.
/// </summary>
internal sealed class ClientProxyStatistics
{
    private readonly StripedCounter[] _requests = [new(), new(), new(), new()];
    private long _emptyAnswers;
    private long _malformedRequests;
    private long _protocolLevel;
    private long _addTooShort;
    private long _idleClosed;
    private long _addRefused;

    /// <summary>Requests read from local clients, by operation (add/get/remove/have), forwarded or not.</summary>
    public void Request(DistCacheOperation operation, int wireLength)
    {
        _requests[(int)operation & 3].Increment();
        BytesFromClients.Add(wireLength);
    }

    public long Requests(DistCacheOperation operation) => _requests[(int)operation & 3].Value;

    /// <summary>Server answers delivered to a waiting local connection.</summary>
    public StripedCounter Replies { get; } = new();

    public StripedCounter BytesFromClients { get; } = new();

    public StripedCounter BytesToServer { get; } = new();

    public StripedCounter BytesFromServer { get; } = new();

    public long EmptyAnswers => Interlocked.Read(ref _emptyAnswers);

    public long MalformedRequests => Interlocked.Read(ref _malformedRequests);

    public long ProtocolLevelErrors => Interlocked.Read(ref _protocolLevel);

    public long AddTooShort => Interlocked.Read(ref _addTooShort);

    public long IdleClosed => Interlocked.Read(ref _idleClosed);

    /// <summary>ADDs refused because an original server would store them corrupted (distcache §13.1).</summary>
    public long AddRefused => Interlocked.Read(ref _addRefused);

    public void AddRefusal() => Interlocked.Increment(ref _addRefused);

    public void EmptyAnswer() => Interlocked.Increment(ref _emptyAnswers);

    public void MalformedRequest() => Interlocked.Increment(ref _malformedRequests);

    public void ProtocolLevel() => Interlocked.Increment(ref _protocolLevel);

    public void AddTooShortRequest() => Interlocked.Increment(ref _addTooShort);

    public void IdleClose() => Interlocked.Increment(ref _idleClosed);
}
