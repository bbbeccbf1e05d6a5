using CacheHost.Protocols.Clacks;
using CacheHost.Transport;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// The protocol engine: every line of every connection is executed under one gate, in arrival order per
/// connection (clacks §2.3), which keeps listen sets, the cache, monitors and links consistent without finer
/// locking. Output goes straight into each connection's transport output (see <see cref="ClacksSession"/>).
/// This class owns the gate, the batched flush and the intake order; the state lives in units it calls under
/// the gate: <see cref="ClacksRegistry"/> (sessions, subscription index, monitors, links, fan-out),
/// <see cref="ClacksCommandExecutor"/> with <see cref="ClacksPermissions"/>, <see cref="InterclacksSync"/> and
/// <see cref="ClacksHousekeeping"/>.
/// </summary>
internal sealed class ClacksServer
{
    private readonly object _gate = new();
    private readonly ClacksOptions _options;
    private readonly ILogger _logger;
    private readonly ClacksRegistry _registry;
    private readonly InterclacksSync _sync;
    private readonly ClacksCommandExecutor _executor;
    private readonly ClacksHousekeeping _housekeeping;
    private TaskCompletionSource _progress = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<ClacksSession> _written = [];
    private readonly TimeProvider _clock;

    public ClacksServer(ClacksOptions options, ILogger logger, TimeProvider? timeProvider = null)
    {
        _options = options;
        _logger = logger;
        _clock = timeProvider ?? TimeProvider.System;
        Warnings = new LogRateLimiter(logger, options.Transport.Warnings, _clock);
        _registry = new ClacksRegistry(Statistics);
        var permissions = new ClacksPermissions(options);
        _sync = new InterclacksSync(options, _registry, permissions, Cache);
        _executor = new ClacksCommandExecutor(options, logger, _registry, permissions, _sync, Cache, Statistics, Warnings, () => ShutdownRequested);
        _housekeeping = new ClacksHousekeeping(options, logger, _registry, Cache, Statistics, Warnings, (session, reason) => Remove(session, reason));
    }

    public ClacksCache Cache { get; } = new();

    /// <summary>Rate limit for the warnings clients can trigger (bad input, failed logins, TLS failures; Transport:Warnings).</summary>
    public LogRateLimiter Warnings { get; }

    /// <summary>The role's counters.</summary>
    public ClacksStatistics Statistics { get; } = new();

    /// <summary>
    /// Tells whether connections are waiting on a listener (accept order, see <see cref="WaitForIntakeTurnAsync"/>).
    /// Set by the role once its listeners are bound.
    /// </summary>
    public Func<bool>? PendingAccepts { get; set; }

    /// <summary>Raised (outside the gate is not guaranteed) when a client asks for shutdown (OVERHEAD S).</summary>
    public Action<double>? ShutdownRequested { get; set; }

    /// <summary>Global sync lock set by the master during the initial sync (clacks §12.3).</summary>
    public bool SyncLocked => _sync.SyncLocked;

    /// <summary>Current time in Unix seconds, shifted by the simulated offset.</summary>
    public double Now => (_clock.GetUtcNow() - DateTimeOffset.UnixEpoch).TotalSeconds + _options.SimulatedTimeOffset;

    public object Gate => _gate;

    /// <summary>
    /// Takes the gate; leaving it flushes every session written to meanwhile, so the replies and deliveries of one
    /// batch leave in one send per connection (and no line written under the gate is ever left unflushed).
    /// </summary>
    private GateScope EnterGate()
    {
        Monitor.Enter(_gate);
        return new GateScope(this);
    }

    private void FlushWrites()
    {
        // Index loop: a flush never adds to the list, but an abort inside one must not break the iteration.
        for (var i = 0; i < _written.Count; i++)
        {
            _written[i].FlushWritten();
        }

        _written.Clear();
    }

    private readonly struct GateScope(ClacksServer server) : IDisposable
    {
        public void Dispose()
        {
            try
            {
                server.FlushWrites();
            }
            finally
            {
                Monitor.Exit(server._gate);
            }
        }
    }

    /// <summary>Registers an accepted connection: greeting and <c>DEBUG CONNECTED</c> (clacks §3.1).</summary>
    public ClacksSession Accept(TransportConnection connection, bool unixSocket)
    {
        using (EnterGate())
        {
            var now = Now;
            var serial = _registry.NextSerial();
            string cid, host, port;
            if (unixSocket)
            {
                host = "unixdomainsocket";
                port = $"{PerlNumber.FormatTime(now)}:{serial}";
            }
            else
            {
                var remote = connection.RemoteEndPoint as System.Net.IPEndPoint;
                host = remote?.Address.ToString() ?? "unknown";
                port = $"{remote?.Port ?? 0}:{serial}";
            }

            cid = $"{host}:{port}";
            var session = new ClacksSession(connection, _gate, _written, serial, cid, host, port, now, _clock);
            _registry.Add(session);
            Statistics.Accepted++;
            Pulse();
            session.Send("CLACKS " + _options.ServerIdentification, now);
            session.Send("OVERHEAD M Authentication required", now);
            _registry.Debug("CONNECTED=" + cid, now);
            ClacksLog.Connected(_logger, cid);
            return session;
        }
    }

    /// <summary>Registers this slave's own link to its master and sends the opening lines (clacks §12.3).</summary>
    public ClacksSession AttachMasterLink(TransportConnection connection, string cid)
    {
        using (EnterGate())
        {
            var now = Now;
            if (_registry.Detach(cid, out var stale))
            {
                stale.Abort("replaced by a new master link");
            }

            var colon = cid.IndexOf(':');
            var session = new ClacksSession(connection, _gate, _written, _registry.NextSerial(), cid, cid[..colon], cid[(colon + 1)..], now, _clock)
            {
                IsMasterLink = true,
                ClientInfo = "Interclacks link",
                CanRead = true,
                CanWrite = true,
                CanManage = true,
                CanInterclacks = true,
                LastInterclacksPingSent = now,
            };
            _registry.Add(session);
            _sync.OpenMasterLink(session, now);
            _registry.Debug("CONNECTED=" + cid, now);
            return session;
        }
    }

    /// <summary>
    /// The reader is done: ends the output (the transport still sends what was written, then closes) and removes
    /// the session.
    /// </summary>
    public void Finish(ClacksSession session, string reason)
    {
        using (EnterGate())
        {
            session.CompleteOutput();
            Remove(session, reason, abort: false);
        }
    }

    /// <summary>Server shutdown for one connection registered after <see cref="QuitAll"/> ran.</summary>
    public void Quit(ClacksSession session)
    {
        using (EnterGate())
        {
            if (!session.Closing)
            {
                session.Send(ClacksWire.QuitLine, Now);
                session.CloseAfterFlush();
            }
        }
    }

    /// <summary>Entries in the cache (tombstones included).</summary>
    public int KeyCount
    {
        get
        {
            using (EnterGate())
            {
                return Cache.Count;
            }
        }
    }

    /// <summary>True while this slave's link to its master is connected.</summary>
    public bool MasterLinkUp
    {
        get
        {
            using (EnterGate())
            {
                return _registry.MasterLinkUp;
            }
        }
    }

    /// <summary>Removes a finished connection; monitors get <c>DEBUG DISCONNECTED</c> (clacks §3.5).</summary>
    public void Remove(ClacksSession session, string reason, bool abort = true)
    {
        using (EnterGate())
        {
            if (!_registry.Remove(session))
            {
                return;
            }

            Pulse();
            if (session.Overflowed)
            {
                Statistics.SlowConsumersDropped++;
                ClacksLog.BadInput(_logger, session.Cid, $"peer fell more than {_options.Transport.MaxWriteBufferSize} bytes behind; dropped");
            }

            var discarded = abort ? session.Abort(reason) : session.PendingBytes;
            var now = Now;
            _registry.Debug($"DISCONNECTED={session.Cid} ({discarded} bytes discarded from outbuffer)", now);
            if (session.IsMasterLink && SyncLocked)
            {
                _registry.Debug($"DISCONNECTED={session.Cid} (Unlocking interclacks mid-sync)", now);
                _sync.Unlock();
            }

            ClacksLog.Disconnected(_logger, session.Cid, reason);
        }
    }

    /// <summary>
    /// Executes a batch of lines from one connection. While the sync lock is held only the master link's
    /// lines run; other connections wait here (their lines stay queued, clacks §12.3).
    /// </summary>
    public async ValueTask ProcessAsync(ClacksSession session, List<string> lines)
    {
        await WaitForIntakeTurnAsync(session).ConfigureAwait(false);
        var index = 0;
        while (index < lines.Count)
        {
            Task wait;
            using (EnterGate())
            {
                var now = Now;
                while (index < lines.Count && !session.Closing && (!SyncLocked || session.IsMasterLink))
                {
                    _executor.ProcessLine(session, lines[index++], now);
                }

                session.FlushDeferred(now);
                if (index >= lines.Count || session.Closing)
                {
                    session.InputInHand = false;
                    Pulse();
                    return;
                }

                wait = _sync.Unlocked;
            }

            await wait.ConfigureAwait(false);
        }
    }

    /// <summary>Longest wait for older connections' input before a batch runs anyway (a wedged peer must not stall others).</summary>
    internal static readonly TimeSpan IntakeWaitLimit = TimeSpan.FromSeconds(1);

    // How often a waiting batch looks again when no progress is signalled.
    private static readonly TimeSpan IntakePoll = TimeSpan.FromMilliseconds(5);

    /// <summary>
    /// Accept and read order of the reference (clacks §2.1: its single loop accepts every pending connection, then
    /// reads the connections in the order they were accepted). Before a batch of <paramref name="session"/> runs,
    /// connections still waiting on a listener are accepted, and connections accepted earlier that have input
    /// received (in the kernel or read but not processed) are processed first. So a client that connected and
    /// sent LISTEN before another client connected and sent SET always gets that SET, however the threads are
    /// scheduled. Bounded by <see cref="IntakeWaitLimit"/>; skipped during the sync lock (clacks §12.3), whose own
    /// rule decides the order then.
    /// </summary>
    private async ValueTask WaitForIntakeTurnAsync(ClacksSession session)
    {
        var start = _clock.GetTimestamp();
        while (true)
        {
            Task progress;
            using (EnterGate())
            {
                if (!MustWaitForOlderInput(session))
                {
                    return;
                }

                progress = _progress.Task;
            }

            var left = IntakeWaitLimit - _clock.GetElapsedTime(start);
            if (left <= TimeSpan.Zero)
            {
                Statistics.IntakeWaitsExpired++;
                return;
            }

            // Progress is signalled when a connection is registered or finishes a batch; the short poll covers
            // input that turns out to be no complete line. The poll looks at the kernel's socket buffers, so it is
            // real time; the limit above is on the injected clock.
            await Task.WhenAny(progress, Task.Delay(left < IntakePoll ? left : IntakePoll)).ConfigureAwait(false);
        }
    }

    private bool MustWaitForOlderInput(ClacksSession session)
    {
        if (SyncLocked || session.IsMasterLink)
        {
            return false;
        }

        if (PendingAccepts?.Invoke() == true)
        {
            return true;
        }

        foreach (var other in _registry.Sessions)
        {
            if (other.Serial < session.Serial && !other.Closing && (other.InputInHand || other.Connection.HasUnreadInput()))
            {
                return true;
            }
        }

        return false;
    }

    private void Pulse()
    {
        var done = _progress;
        _progress = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        done.TrySetResult();
    }

    /// <summary>A batch was read and framed into no line (e.g. the start of a long line): nothing in hand any more.</summary>
    public void NothingInHand(ClacksSession session)
    {
        using (EnterGate())
        {
            session.InputInHand = false;
            Pulse();
        }
    }

    /// <summary>Handles an overlong line (our explicit limit, clacks §2.2): error and close.</summary>
    public void RejectOverlong(ClacksSession session, int limit)
    {
        using (EnterGate())
        {
            Statistics.OverlongLines++;
            if (Warnings.Allow(nameof(ClacksLog.BadInput)))
            {
                ClacksLog.BadInput(_logger, session.Cid, $"line longer than {limit} bytes{(session.Authenticated ? "" : " before login")}");
            }

            session.Send("OVERHEAD E line_too_long", Now);
            session.CloseAfterFlush();
        }
    }

    /// <summary>Server shutdown (clacks §3.5): every connection gets QUIT and is closed.</summary>
    public void QuitAll()
    {
        using (EnterGate())
        {
            var now = Now;
            foreach (var session in _registry.Sessions.ToList())
            {
                session.Send(ClacksWire.QuitLine, now);
                session.CloseAfterFlush();
            }
        }
    }

    /// <summary>The peer half-closed: stop reading but still deliver what is queued for it.</summary>
    public void CloseAfterPeerEof(ClacksSession session)
    {
        using (EnterGate())
        {
            session.CloseAfterFlush();
        }
    }

    /// <summary>Drops every connection still open (end of the shutdown budget).</summary>
    public void AbortAll()
    {
        using (EnterGate())
        {
            foreach (var session in _registry.Sessions.ToList())
            {
                Remove(session, "server shutting down");
            }
        }
    }

    public int SessionCount
    {
        get
        {
            using (EnterGate())
            {
                return _registry.Count;
            }
        }
    }

    /// <summary>Periodic checks (clacks §10): auth/ping/link timeouts, link PINGs, NOP keepalive, stalled writes.</summary>
    public void Tick()
    {
        using (EnterGate())
        {
            _housekeeping.Tick(Now);
        }
    }

    /// <summary>Cache housekeeping (clacks §8.3).</summary>
    public void CleanCache()
    {
        using (EnterGate())
        {
            _housekeeping.CleanCache(Now);
        }
    }

    /// <summary>Snapshot for persistence if the cache changed since the last one (clears the dirty flag).</summary>
    public List<KeyValuePair<string, CacheEntry>>? TakeSnapshot(bool force)
    {
        using (EnterGate())
        {
            return _housekeeping.TakeSnapshot(force);
        }
    }

    public void MarkDirty()
    {
        using (EnterGate())
        {
            _housekeeping.MarkDirty();
        }
    }
}
