using CacheHost.Protocols.Clacks;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// Who is connected and who hears what (clacks §3, §7, §11, §12): the sessions by CID, the subscription index
/// (name to listening sessions), the monitors and the interclacks links, and the fan-out that sends one encoded
/// line to all of them. Touched under the server's gate only.
/// </summary>
internal sealed class ClacksRegistry
{
    private readonly Dictionary<string, ClacksSession> _sessions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, HashSet<ClacksSession>> _subscribers = new(StringComparer.Ordinal);
    private readonly HashSet<ClacksSession> _monitors = [];
    private readonly HashSet<ClacksSession> _links = [];
    private readonly ClacksStatistics _statistics;
    private long _serial;

    public ClacksRegistry(ClacksStatistics statistics) => _statistics = statistics;

    public int Count => _sessions.Count;

    public IEnumerable<ClacksSession> Sessions => _sessions.Values;

    /// <summary>True while this slave's link to its master is registered.</summary>
    public bool MasterLinkUp => _sessions.Values.Any(static s => s.IsMasterLink);

    /// <summary>The next accept serial (accept order, also part of the CID).</summary>
    public long NextSerial() => ++_serial;

    public bool TryGet(string cid, out ClacksSession session) => _sessions.TryGetValue(cid, out session!);

    /// <summary>Registers a session under its CID (a session already registered there is replaced).</summary>
    public void Add(ClacksSession session) => _sessions[session.Cid] = session;

    /// <summary>Takes the session registered under <paramref name="cid"/> out of the table without cleanup (a replaced master link).</summary>
    public bool Detach(string cid, out ClacksSession session) => _sessions.Remove(cid, out session!);

    /// <summary>
    /// Removes a session and every trace of it (subscriptions, monitor, link). False when <paramref name="session"/>
    /// is not the one registered under its CID (already removed or replaced).
    /// </summary>
    public bool Remove(ClacksSession session)
    {
        if (!_sessions.TryGetValue(session.Cid, out var current) || !ReferenceEquals(current, session))
        {
            return false;
        }

        _sessions.Remove(session.Cid);
        foreach (var name in session.Listening)
        {
            Unsubscribe(session, name);
        }

        _monitors.Remove(session);
        _links.Remove(session);
        return true;
    }

    /// <summary>All sessions, ordered by CID (CLIENTLIST, clacks §9).</summary>
    public IEnumerable<ClacksSession> OrderedByCid() => _sessions.Keys.Order(StringComparer.Ordinal).Select(cid => _sessions[cid]);

    /// <summary>LISTEN (clacks §7): false when the session listened already.</summary>
    public bool Listen(ClacksSession session, string name)
    {
        if (!session.Listening.Add(name))
        {
            return false;
        }

        if (!_subscribers.TryGetValue(name, out var set))
        {
            _subscribers[name] = set = [];
        }

        if (set.Add(session))
        {
            _statistics.Subscriptions++;
        }

        return true;
    }

    /// <summary>UNLISTEN (clacks §7): false when the session did not listen.</summary>
    public bool Unlisten(ClacksSession session, string name)
    {
        if (!session.Listening.Remove(name))
        {
            return false;
        }

        Unsubscribe(session, name);
        return true;
    }

    /// <summary>Number of sessions listening to <paramref name="name"/> (0 when the index has no entry).</summary>
    public int ListenerCount(string name) => _subscribers.TryGetValue(name, out var set) ? set.Count : 0;

    /// <summary>Names with at least one listener (the index holds no empty sets).</summary>
    public int IndexedNames => _subscribers.Count;

    private void Unsubscribe(ClacksSession session, string name)
    {
        if (_subscribers.TryGetValue(name, out var set) && set.Remove(session))
        {
            _statistics.Subscriptions--;
            if (set.Count == 0)
            {
                _subscribers.Remove(name);
            }
        }
    }

    /// <summary>MONITOR / UNMONITOR (clacks §11).</summary>
    public void SetMonitor(ClacksSession session, bool monitor)
    {
        session.Monitor = monitor;
        if (monitor)
        {
            _monitors.Add(session);
        }
        else
        {
            _monitors.Remove(session);
        }
    }

    /// <summary>Interclacks link mode on or off (clacks §12).</summary>
    public void SetLink(ClacksSession session, bool link)
    {
        session.IsLink = link;
        if (link)
        {
            _links.Add(session);
        }
        else
        {
            _links.Remove(session);
        }
    }

    /// <summary>Delivers to every other connection listening to the name; never echoed (clacks §7.1).</summary>
    public void Deliver(ClacksSession sender, string name, string text, double now)
    {
        if (!_subscribers.TryGetValue(name, out var listeners) || (listeners.Count == 1 && listeners.Contains(sender)))
        {
            return;
        }

        var encoded = Encode(text);
        foreach (var other in listeners)
        {
            if (!ReferenceEquals(other, sender))
            {
                SendFanOut(other, encoded, now);
            }
        }
    }

    /// <summary>Forwards an executed command verbatim to every other link (clacks §5.1 step 8, §12.5).</summary>
    public void ForwardToLinks(ClacksSession origin, string line, double now)
    {
        if (_links.Count == 0 || (_links.Count == 1 && _links.Contains(origin)))
        {
            return;
        }

        var encoded = Encode(line);
        foreach (var other in _links)
        {
            if (!ReferenceEquals(other, origin))
            {
                SendFanOut(other, encoded, now);
            }
        }
    }

    /// <summary>Mirrors a line to every monitor as <c>DEBUG</c> (clacks §11).</summary>
    public void Debug(string text, double now)
    {
        if (_monitors.Count == 0)
        {
            return;
        }

        var encoded = Encode("DEBUG " + text);
        foreach (var session in _monitors)
        {
            SendFanOut(session, encoded, now);
        }
    }

    /// <summary>OVERHEAD F (clacks §6.1): to every authenticated session and link, the sender only when asked.</summary>
    public void ForwardOverhead(ClacksSession sender, string line, bool toSender, double now)
    {
        var forwarded = Encode(line);
        foreach (var other in _sessions.Values)
        {
            if ((other.Authenticated || other.IsLink) && (toSender || !ReferenceEquals(other, sender)))
            {
                SendFanOut(other, forwarded, now);
            }
        }
    }

    /// <summary>OVERHEAD C (clacks §6.1): QUIT to everybody; links first get <c>OVERHEAD GC 1</c> when G was set.</summary>
    public void CloseAll(bool cascade, double now)
    {
        foreach (var session in _sessions.Values.ToList())
        {
            if (cascade && session.IsLink)
            {
                session.Send(ClacksWire.CloseAllCascadeLine, now);
            }

            session.Send(ClacksWire.QuitLine, now);
            session.CloseAfterFlush();
        }
    }

    private byte[] Encode(string line)
    {
        _statistics.FanOutEncodes++;
        return ClacksWire.EncodeLine(line);
    }

    private void SendFanOut(ClacksSession recipient, byte[] encoded, double now)
    {
        _statistics.FanOutDeliveries++;
        recipient.Send(encoded, now);
    }
}
