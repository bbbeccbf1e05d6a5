using CacheHost.Protocols.DistCache;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.ClientProxy;

/// <summary>Log events of the ClientProxy role (EventIds 6000-6099).</summary>
internal static partial class ClientProxyLog
{
    [LoggerMessage(EventId = 6000, Level = LogLevel.Information, Message = "client proxy listening on {Listen}, server {Server}, retry {RetryMs} ms, idle {IdleMs} ms, {MaxInFlight} in flight, pipeline depth {Depth}")]
    public static partial void Started(ILogger logger, string listen, string server, int retryMs, int idleMs, int maxInFlight, int depth);

    [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "connected to server {Server}")]
    public static partial void ServerConnected(ILogger logger, string server);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Warning, Message = "can't connect to server {Server}: {Reason}; retrying every {RetryMs} ms")]
    public static partial void ServerConnectFailed(ILogger logger, string server, string reason, int retryMs);

    [LoggerMessage(EventId = 6003, Level = LogLevel.Warning, Message = "server link to {Server} lost ({Reason}); {InFlight} in-flight requests answered with 0x02")]
    public static partial void ServerLost(ILogger logger, string server, string reason, int inFlight);

    [LoggerMessage(EventId = 6004, Level = LogLevel.Debug, Message = "discarded a server response with unknown uid {Uid} (its client is gone or it was never asked)")]
    public static partial void UnknownUid(ILogger logger, uint uid);

    [LoggerMessage(EventId = 6005, Level = LogLevel.Warning, Message = "connection {ConnectionId}: malformed request ({Error}); closing it")]
    public static partial void MalformedRequest(ILogger logger, long connectionId, DistCacheProtocolError error);

    [LoggerMessage(EventId = 6006, Level = LogLevel.Error, Message = "libdistcache(pid={Pid}) protocol incompatibility; my level is {Mine:x8}, the peer's is {Theirs:x8} (connection {ConnectionId} closed, process keeps running)")]
    public static partial void ProtocolIncompatible(ILogger logger, int pid, uint mine, uint theirs, long connectionId);

    [LoggerMessage(EventId = 6007, Level = LogLevel.Warning, Message = "connection {ConnectionId}: ADD payload of {Length} bytes is shorter than 8; closing it (not forwarded)")]
    public static partial void AddTooShort(ILogger logger, long connectionId, int length);

    [LoggerMessage(EventId = 6008, Level = LogLevel.Debug, Message = "connection {ConnectionId}: idle for {IdleMs} ms; closing it")]
    public static partial void IdleClose(ILogger logger, long connectionId, int idleMs);

    [LoggerMessage(EventId = 6009, Level = LogLevel.Warning, Message = "server link: malformed response ({Error}); dropping the link")]
    public static partial void MalformedResponse(ILogger logger, DistCacheProtocolError error);

    [LoggerMessage(EventId = 6010, Level = LogLevel.Information, Message = "{Signal} received: stopping (killable)")]
    public static partial void KillSignal(ILogger logger, string signal);

    [LoggerMessage(EventId = 6011, Level = LogLevel.Warning, Message = "server link: response uid {Uid} has operation {Got} but its request was {Expected}; dropping the link")]
    public static partial void MismatchedResponse(ILogger logger, uint uid, DistCacheOperation got, DistCacheOperation expected);

    [LoggerMessage(EventId = 6012, Level = LogLevel.Warning, Message = "server {Server} left a request unanswered for {TimeoutMs} ms; dropping the link")]
    public static partial void RequestTimeout(ILogger logger, string server, int timeoutMs);

    [LoggerMessage(EventId = 6013, Level = LogLevel.Warning, Message = "connection {ConnectionId}: ADD with a {Length}-byte payload refused (answered 0x68): an original dc_server would answer it three times and store it corrupted (distcache 13.1); set ServerKind=CacheHost if the server is CacheHost")]
    public static partial void AddRefused(ILogger logger, long connectionId, int length);

    [LoggerMessage(EventId = 6014, Level = LogLevel.Warning, Message = "server link moved from {From} to {To} (failover)")]
    public static partial void Failover(ILogger logger, string from, string to);

    [LoggerMessage(EventId = 6015, Level = LogLevel.Information, Message = "first server {Server} answers again: new requests go to it; the link to {From} closes once its requests are answered (failback)")]
    public static partial void Failback(ILogger logger, string server, string from);
}
