using CacheHost.Core;
using CacheHost.Protocols.DistCache;

namespace CacheHost.Roles.ClientProxy;

/// <summary>
/// Counters for <c>proxy.stats</c> (docs/systemd.md, "Control socket"): the local side and the server link, one
/// place for both. Per-request counters are striped so that local connections on different CPUs do not contend;
/// rare events use plain Interlocked fields.
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
    private long _writes;
    private long _unknownResponses;
    private long _disconnectedAnswers;
    private long _connects;
    private long _losses;
    private long _malformedResponses;
    private long _linkProtocolLevel;
    private long _mismatchedResponses;
    private long _requestTimeouts;
    private long _failovers;
    private long _failbacks;

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

    /// <summary>Requests forwarded to the server.</summary>
    public StripedCounter Forwarded { get; } = new();

    /// <summary>Writes to the server link; fewer than <see cref="Forwarded"/> when requests were coalesced.</summary>
    public long Writes => Interlocked.Read(ref _writes);

    /// <summary>Server responses whose uid was not in flight (dropped, distcache §13.3).</summary>
    public long UnknownResponses => Interlocked.Read(ref _unknownResponses);

    /// <summary>In-flight requests answered 0x02 because their server link died (distcache §10.3).</summary>
    public long DisconnectedAnswers => Interlocked.Read(ref _disconnectedAnswers);

    /// <summary>Successful connects to a server (the first one included).</summary>
    public long Connects => Interlocked.Read(ref _connects);

    /// <summary>Times an established server link was lost.</summary>
    public long Losses => Interlocked.Read(ref _losses);

    public long MalformedResponses => Interlocked.Read(ref _malformedResponses);

    /// <summary>Server responses with a foreign protocol level (each dropped the link).</summary>
    public long LinkProtocolLevelErrors => Interlocked.Read(ref _linkProtocolLevel);

    /// <summary>Responses whose operation differed from their request's (each dropped the link).</summary>
    public long MismatchedResponses => Interlocked.Read(ref _mismatchedResponses);

    /// <summary>Times the link was dropped because a request went unanswered for RequestTimeoutMs.</summary>
    public long RequestTimeouts => Interlocked.Read(ref _requestTimeouts);

    /// <summary>Connects to another server than the one whose link was lost or refused (ClientProxy:Servers).</summary>
    public long Failovers => Interlocked.Read(ref _failovers);

    /// <summary>Returns to the first server while another one's link was up (ClientProxy:FailbackAfter).</summary>
    public long Failbacks => Interlocked.Read(ref _failbacks);

    public void Write() => Interlocked.Increment(ref _writes);

    public void UnknownResponse() => Interlocked.Increment(ref _unknownResponses);

    public void DisconnectedAnswer(int count) => Interlocked.Add(ref _disconnectedAnswers, count);

    public void Connect() => Interlocked.Increment(ref _connects);

    public void Loss() => Interlocked.Increment(ref _losses);

    public void MalformedResponse() => Interlocked.Increment(ref _malformedResponses);

    public void LinkProtocolLevel() => Interlocked.Increment(ref _linkProtocolLevel);

    public void MismatchedResponse() => Interlocked.Increment(ref _mismatchedResponses);

    public void RequestTimeout() => Interlocked.Increment(ref _requestTimeouts);

    public void Failover() => Interlocked.Increment(ref _failovers);

    public void Failback() => Interlocked.Increment(ref _failbacks);

    public void AddRefusal() => Interlocked.Increment(ref _addRefused);

    public void EmptyAnswer() => Interlocked.Increment(ref _emptyAnswers);

    public void MalformedRequest() => Interlocked.Increment(ref _malformedRequests);

    public void ProtocolLevel() => Interlocked.Increment(ref _protocolLevel);

    public void AddTooShortRequest() => Interlocked.Increment(ref _addTooShort);

    public void IdleClose() => Interlocked.Increment(ref _idleClosed);
}
