using CacheHost.Core;
using CacheHost.Protocols.DistCache;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.CacheServer;

/// <summary>CacheServer log events, ids 2000-2099. Never reuse a retired id.</summary>
internal static partial class CacheServerLog
{
    [LoggerMessage(2000, LogLevel.Warning, "libdistcache(pid={Pid}) protocol incompatibility; my level is {Mine:x8}, the peer's is {Theirs:x8} (closing connection #{ConnectionId} only)", EventName = "ProtocolIncompatible")]
    public static partial void ProtocolIncompatible(ILogger logger, int pid, uint mine, uint theirs, long connectionId);

    [LoggerMessage(2001, LogLevel.Warning, "Connection #{ConnectionId} sent a malformed frame ({Error}); closing it", EventName = "MalformedFrame")]
    public static partial void MalformedFrame(ILogger logger, long connectionId, DistCacheProtocolError error);

    [LoggerMessage(2002, LogLevel.Warning, "Connection #{ConnectionId} sent an ADD with a {Length}-byte payload (at least 8 needed); closing it", EventName = "AddTooShort")]
    public static partial void AddTooShort(ILogger logger, long connectionId, int length);

    [LoggerMessage(2003, LogLevel.Debug, "Connection #{ConnectionId} closed with {Bytes} bytes of an unfinished message", EventName = "ClosedMidMessage")]
    public static partial void ClosedMidMessage(ILogger logger, long connectionId, long bytes);

    [LoggerMessage(2004, LogLevel.Information, "{StatsLine}", EventName = "Stats")]
    public static partial void Stats(ILogger logger, string statsLine);

    [LoggerMessage(2005, LogLevel.Information, "Session cache ready: capacity {Capacity} sessions, evicting {Batch} when full", EventName = "CacheReady")]
    public static partial void CacheReady(ILogger logger, int capacity, int batch);

    [LoggerMessage(2006, LogLevel.Information, "Received signal {Signal}; -killable is set, stopping", EventName = "KillSignal")]
    public static partial void KillSignal(ILogger logger, string signal);

    [LoggerMessage(2007, LogLevel.Debug, "Connection #{ConnectionId}: {Wait} timeout ({Seconds} s without progress); closing it", EventName = "TimedOut")]
    public static partial void TimedOut(ILogger logger, long connectionId, ConnectionWait wait, double seconds);

    [LoggerMessage(2008, LogLevel.Warning, "Connection #{ConnectionId}: the session store failed a {Operation} ({Error}); answered 0x02", EventName = "StoreFailed")]
    public static partial void StoreFailed(ILogger logger, long connectionId, DistCacheOperation operation, string error);

    [LoggerMessage(2009, LogLevel.Information, "Redis session store ready: {Endpoints} ({Mode}), key prefix '{KeyPrefix}'", EventName = "RedisReady")]
    public static partial void RedisReady(ILogger logger, string endpoints, string mode, string keyPrefix);

    [LoggerMessage(2010, LogLevel.Warning, "Redis session store: {Endpoints} unreachable at start; retrying in the background, requests are answered 0x02 meanwhile", EventName = "RedisUnreachable")]
    public static partial void RedisUnreachable(ILogger logger, string endpoints);

    [LoggerMessage(2011, LogLevel.Warning, "Redis session store: lost the {ConnectionType} connection to {Endpoint} ({FailureType}: {Error})", EventName = "RedisConnectionFailed")]
    public static partial void RedisConnectionFailed(ILogger logger, string endpoint, StackExchange.Redis.ConnectionType connectionType, StackExchange.Redis.ConnectionFailureType failureType, string? error);

    [LoggerMessage(2012, LogLevel.Information, "Redis session store: {ConnectionType} connection to {Endpoint} restored", EventName = "RedisConnectionRestored")]
    public static partial void RedisConnectionRestored(ILogger logger, string endpoint, StackExchange.Redis.ConnectionType connectionType);

    [LoggerMessage(2013, LogLevel.Warning, "Redis session store: client error at {Endpoint} in {Origin}: {Error}", EventName = "RedisInternalError")]
    public static partial void RedisInternalError(ILogger logger, string endpoint, string? origin, string error);

    [LoggerMessage(2014, LogLevel.Information, "Loaded {Loaded} sessions from snapshot {Path} ({Expired} expired while the server was stopped)", EventName = "SnapshotLoaded")]
    public static partial void SnapshotLoaded(ILogger logger, long loaded, string path, long expired);

    [LoggerMessage(2015, LogLevel.Information, "No snapshot at {Path} yet; starting with an empty store", EventName = "SnapshotMissing")]
    public static partial void SnapshotMissing(ILogger logger, string path);

    [LoggerMessage(2016, LogLevel.Error, "Snapshot {Path} can't be loaded ({Reason}); starting with an empty store (it is replaced by the next snapshot)", EventName = "SnapshotUnusable")]
    public static partial void SnapshotUnusable(ILogger logger, string path, string reason);

    [LoggerMessage(2017, LogLevel.Information, "Wrote {Count} sessions to snapshot {Path} in {Milliseconds} ms", EventName = "SnapshotWritten")]
    public static partial void SnapshotWritten(ILogger logger, long count, string path, long milliseconds);

    [LoggerMessage(2018, LogLevel.Error, "Can't write snapshot {Path}: {Reason} (the previous snapshot is kept)", EventName = "SnapshotFailed")]
    public static partial void SnapshotFailed(ILogger logger, string path, string reason);

    [LoggerMessage(2019, LogLevel.Debug, "Wrote {Count} sessions to snapshot {Path} in {Milliseconds} ms (periodic)", EventName = "PeriodicSnapshotWritten")]
    public static partial void PeriodicSnapshotWritten(ILogger logger, long count, string path, long milliseconds);
}
