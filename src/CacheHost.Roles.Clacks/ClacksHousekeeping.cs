using CacheHost.Protocols.Clacks;
using CacheHost.Transport;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// Housekeeping (clacks §8.3, §10): the periodic timeouts, PINGs and keepalives of every session, the cache clean-up
/// and the persistence snapshot's dirty flag. Called under the server's gate with the server's time.
/// </summary>
internal sealed class ClacksHousekeeping
{
    private readonly ClacksOptions _options;
    private readonly ILogger _logger;
    private readonly ClacksRegistry _registry;
    private readonly ClacksCache _cache;
    private readonly ClacksStatistics _statistics;
    private readonly LogRateLimiter _warnings;
    private readonly Action<ClacksSession, string> _remove;

    /// <param name="remove">The server's removal of a session (monitors, sync lock and log included).</param>
    public ClacksHousekeeping(ClacksOptions options, ILogger logger, ClacksRegistry registry, ClacksCache cache, ClacksStatistics statistics,
        LogRateLimiter warnings, Action<ClacksSession, string> remove)
    {
        _options = options;
        _logger = logger;
        _registry = registry;
        _cache = cache;
        _statistics = statistics;
        _warnings = warnings;
        _remove = remove;
    }

    /// <summary>Periodic checks (clacks §10): auth/ping/link timeouts, link PINGs, NOP keepalive, stalled writes.</summary>
    public void Tick(double now)
    {
        var linkInterval = Math.Max(1, Math.Floor(_options.InterclacksPingTimeout / 3));
        foreach (var session in _registry.Sessions.ToList())
        {
            if (session.Closing)
            {
                continue;
            }

            if (!session.Authenticated && now - session.AcceptedAt > _options.AuthTimeout)
            {
                session.CloseAfterFlush(); // silently (clacks §3.4)
                continue;
            }

            var stalledLimit = session.IsLink ? _options.InterclacksStalledWriteTimeout : _options.StalledWriteTimeout;
            if (session.FlushBlockedSeconds > stalledLimit)
            {
                _statistics.SlowConsumersDropped++;
                if (_warnings.Allow(nameof(ClacksLog.BadInput)))
                {
                    ClacksLog.BadInput(_logger, session.Cid, "peer does not read its output; dropped");
                }

                _remove(session, "stalled write");
                continue;
            }

            if (session.IsLink)
            {
                if (now - session.LastLinkActivity > _options.InterclacksPingTimeout)
                {
                    session.Send(ClacksWire.TimeoutLine, now);
                    session.CloseAfterFlush();
                    continue;
                }

                if (now - session.LastInterclacksPingSent >= linkInterval)
                {
                    session.Send("PING", now);
                    session.LastInterclacksPingSent = now;
                }
            }
            else if (session.LastPing != 0 && now - session.LastPing > _options.PingTimeout)
            {
                session.Send(ClacksWire.TimeoutLine, now);
                session.CloseAfterFlush();
                continue;
            }

            if (now - session.LastSent >= _options.KeepaliveInterval)
            {
                session.Send("NOP", now);
            }
        }
    }

    /// <summary>Cache housekeeping (clacks §8.3).</summary>
    public void CleanCache(double now)
    {
        foreach (var (key, wasDeleted) in _cache.Clean(now, _options.DeletedCacheTime, _options.StaleCacheTime))
        {
            _registry.Debug($"SERVERCACHE={(wasDeleted ? "CLEANDELETED" : "CLEANSTALE")}={key}", now);
        }
    }

    /// <summary>Snapshot for persistence if the cache changed since the last one (clears the dirty flag).</summary>
    public List<KeyValuePair<string, CacheEntry>>? TakeSnapshot(bool force)
    {
        if (!force && !_cache.Dirty)
        {
            return null;
        }

        _cache.Dirty = false;
        return _cache.SortedEntries();
    }

    public void MarkDirty()
    {
        _cache.Dirty = true;
    }
}

