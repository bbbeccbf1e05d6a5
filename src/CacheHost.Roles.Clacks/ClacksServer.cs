using CacheHost.Protocols.Clacks;
using CacheHost.Transport;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// The protocol engine: every line of every connection is executed under one gate, in arrival order per
/// connection (clacks §2.3), which keeps listen sets, the cache, monitors and links consistent without finer
/// locking. Output goes straight into each connection's transport output (see <see cref="ClacksSession"/>).
/// Deliveries use an index (name to listening sessions, monitors, links) and encode a line once for all its
/// recipients.
/// </summary>
internal sealed class ClacksServer
{
    private readonly object _gate = new();
    private readonly ClacksOptions _options;
    private readonly ILogger _logger;
    private readonly Dictionary<string, ClacksSession> _sessions = new(StringComparer.Ordinal);
    private readonly string _mainToken;
    private readonly Dictionary<string, ClacksUserOptions> _userTokens = new(StringComparer.Ordinal);
    private readonly Dictionary<string, HashSet<ClacksSession>> _subscribers = new(StringComparer.Ordinal);
    private readonly HashSet<ClacksSession> _monitors = [];
    private readonly HashSet<ClacksSession> _links = [];
    private TaskCompletionSource _progress = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<ClacksSession> _written = [];
    private TaskCompletionSource _unlocked = CompletedSource();
    private long _serial;
    private readonly TimeProvider _clock;

    public ClacksServer(ClacksOptions options, ILogger logger, TimeProvider? timeProvider = null)
    {
        _options = options;
        _logger = logger;
        _clock = timeProvider ?? TimeProvider.System;
        Warnings = new LogRateLimiter(logger, options.Transport.Warnings, _clock);
        _mainToken = LoginToken.Create(options.Username, options.Password);
        foreach (var user in options.Users)
        {
            _userTokens.TryAdd(LoginToken.Create(user.Username, user.Password), user);
        }
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
    public bool SyncLocked { get; private set; }

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

    private static TaskCompletionSource CompletedSource()
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        tcs.SetResult();
        return tcs;
    }

    /// <summary>Registers an accepted connection: greeting and <c>DEBUG CONNECTED</c> (clacks §3.1).</summary>
    public ClacksSession Accept(TransportConnection connection, bool unixSocket)
    {
        using (EnterGate())
        {
            var now = Now;
            var serial = ++_serial;
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
            _sessions[cid] = session;
            Statistics.Accepted++;
            Pulse();
            session.Send("CLACKS " + _options.ServerIdentification, now);
            session.Send("OVERHEAD M Authentication required", now);
            Debug("CONNECTED=" + cid, now);
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
            if (_sessions.Remove(cid, out var stale))
            {
                stale.Abort("replaced by a new master link");
            }

            var colon = cid.IndexOf(':');
            var session = new ClacksSession(connection, _gate, _written, ++_serial, cid, cid[..colon], cid[(colon + 1)..], now, _clock)
            {
                IsMasterLink = true,
                ClientInfo = "Interclacks link",
                CanRead = true,
                CanWrite = true,
                CanManage = true,
                CanInterclacks = true,
                LastInterclacksPingSent = now,
            };
            _sessions[cid] = session;
            SetLink(session, true);
            session.Send($"CLACKS {_options.ServerIdentification} in interclacks client mode", now);
            session.Send("OVERHEAD A " + _mainToken, now);
            session.Send("OVERHEAD I 1", now);
            Debug("CONNECTED=" + cid, now);
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
                return _sessions.Values.Any(static s => s.IsMasterLink);
            }
        }
    }

    /// <summary>Removes a finished connection; monitors get <c>DEBUG DISCONNECTED</c> (clacks §3.5).</summary>
    public void Remove(ClacksSession session, string reason, bool abort = true)
    {
        using (EnterGate())
        {
            if (!_sessions.TryGetValue(session.Cid, out var current) || !ReferenceEquals(current, session))
            {
                return;
            }

            _sessions.Remove(session.Cid);
            foreach (var name in session.Listening)
            {
                Unsubscribe(session, name);
            }

            _monitors.Remove(session);
            _links.Remove(session);
            Pulse();
            if (session.Overflowed)
            {
                Statistics.SlowConsumersDropped++;
                ClacksLog.BadInput(_logger, session.Cid, $"peer fell more than {_options.Transport.MaxWriteBufferSize} bytes behind; dropped");
            }

            var discarded = abort ? session.Abort(reason) : session.PendingBytes;
            var now = Now;
            Debug($"DISCONNECTED={session.Cid} ({discarded} bytes discarded from outbuffer)", now);
            if (session.IsMasterLink && SyncLocked)
            {
                Debug($"DISCONNECTED={session.Cid} (Unlocking interclacks mid-sync)", now);
                Unlock();
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
                    ProcessLine(session, lines[index++], now);
                }

                session.FlushDeferred(now);
                if (index >= lines.Count || session.Closing)
                {
                    session.InputInHand = false;
                    Pulse();
                    return;
                }

                wait = _unlocked.Task;
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

        foreach (var other in _sessions.Values)
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

    private void ProcessLine(ClacksSession session, string line, double now)
    {
        // 1. Client identification (clacks §3.3).
        if (line.StartsWith("CLACKS ", StringComparison.Ordinal))
        {
            if (line.Length > 7)
            {
                session.ClientInfo = line[7..].Replace(';', '_');
            }

            return;
        }

        // 2. OVERHEAD (clacks §6), also before authentication.
        var isOverhead = OverheadLine.TryParse(line, out var overhead);
        if (isOverhead)
        {
            ProcessOverhead(session, line, overhead, now);
            if (session.Closing && !session.Authenticated)
            {
                return;
            }
        }

        // 3. Unauthenticated lines are dropped (Q11 kept); a flood of them closes the connection.
        if (!session.Authenticated)
        {
            if (!isOverhead && ++session.UnauthenticatedLines > _options.MaxUnauthenticatedLines)
            {
                Statistics.UnauthenticatedFloods++;
                if (Warnings.Allow(nameof(ClacksLog.BadInput)))
                {
                    ClacksLog.BadInput(_logger, session.Cid, "too many lines before authentication");
                }

                session.Send("OVERHEAD E too_many_unauthenticated_lines", now);
                session.CloseAfterFlush();
            }

            return;
        }

        // 5. OVERHEAD lines are done (also "OVERHEAD X" without a value, which is ignored).
        if (isOverhead || line.StartsWith("OVERHEAD ", StringComparison.Ordinal))
        {
            // 4. Monitor copy; the login token is redacted (fix of Q2), N lines are not mirrored.
            if (!isOverhead || !overhead.Has(OverheadFlags.NoLogging))
            {
                Debug(session.Cid + "=" + MaskLogin(line, isOverhead, overhead), now);
            }

            return;
        }

        // 6-8. Commands; only executed commands are forwarded (fix of Q1).
        var command = ClacksCommandParser.Parse(line);
        var executed = Execute(session, command, line, now);

        // 4. Monitor copy. The reference sends monitor lines after the batch's replies, which is why a
        // connection sees its own MONITOR command; mirroring after execution gives the same effect.
        Debug(session.Cid + "=" + line, now);
        if (executed && command.IsReplicated)
        {
            ForwardToLinks(session, line, now);
        }
    }

    /// <summary>
    /// The login token never reaches monitors (fix of Q2): a parsed <c>OVERHEAD A</c>, and also any OVERHEAD line
    /// whose flags include A but that does not parse with a space (e.g. <c>OVERHEAD A&lt;TAB&gt;token</c>, which a
    /// logged-in client's re-login may send), is mirrored as <c>OVERHEAD A ***</c>.
    /// </summary>
    private static string MaskLogin(string line, bool isOverhead, OverheadLine overhead)
    {
        if (isOverhead)
        {
            return overhead.Has(OverheadFlags.Auth) ? "OVERHEAD A ***" : line;
        }

        const string prefix = "OVERHEAD ";
        var end = line.AsSpan(prefix.Length).IndexOfAny(' ', '\t');
        var flags = end < 0 ? line.AsSpan(prefix.Length) : line.AsSpan(prefix.Length, end);
        return flags.Contains('A') ? "OVERHEAD A ***" : line;
    }

    private void ProcessOverhead(ClacksSession session, string line, OverheadLine overhead, double now)
    {
        // clacks §6.3 order: A, auth check, T, L, C, S, D/N/E, I, G.
        if (overhead.Has(OverheadFlags.Auth))
        {
            Authenticate(session, overhead.Value, now);
            return;
        }

        if (!session.Authenticated)
        {
            return;
        }

        if (overhead.Has(OverheadFlags.Timestamp))
        {
            session.TimeOffset = now - PerlNumber.ParseTime(overhead.Value);
            return;
        }

        if (overhead.Has(OverheadFlags.Lock) && session.IsMasterLink)
        {
            if (overhead.ValueIsTrue)
            {
                SyncLocked = true;
                if (_unlocked.Task.IsCompleted)
                {
                    _unlocked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                }
            }
            else
            {
                Unlock();
                session.Send("OVERHEAD T " + PerlNumber.FormatTime(now), now);
                SendKeySyncDump(session, now);
            }

            return;
        }

        if (overhead.Has(OverheadFlags.CloseAll))
        {
            if (!session.CanManage)
            {
                session.Send("OVERHEAD E permission_denied", now);
                return;
            }

            if (overhead.ValueIsTrue)
            {
                CloseAll(cascade: overhead.Has(OverheadFlags.Forward), now);
                return;
            }
        }

        if (overhead.Has(OverheadFlags.Shutdown))
        {
            if (!session.CanManage)
            {
                session.Send("OVERHEAD E permission_denied", now);
                return;
            }

            var seconds = PerlNumber.ParseTime(overhead.Value);
            if (seconds > 0)
            {
                ClacksLog.ShutdownRequested(_logger, session.Cid, seconds);
                ShutdownRequested?.Invoke(seconds);
            }
        }

        if (overhead.Has(OverheadFlags.Error))
        {
            if (Warnings.Allow(nameof(ClacksLog.ClientError)))
            {
                ClacksLog.ClientError(_logger, session.Cid, overhead.Value);
            }
        }

        if (overhead.Has(OverheadFlags.Interclacks))
        {
            if (!session.CanInterclacks)
            {
                session.Send("OVERHEAD E permission_denied", now);
                return;
            }

            if (overhead.ValueIsTrue)
            {
                if (!session.IsMasterLink)
                {
                    StartMasterSideSync(session, now);
                }
            }
            else
            {
                SetLink(session, false);
                session.LastInterclacksPingSent = 0;
            }
        }

        if (overhead.Has(OverheadFlags.Forward))
        {
            if (!session.CanWrite)
            {
                session.Send("OVERHEAD E permission_denied", now);
                return;
            }

            var forwarded = Encode($"OVERHEAD {overhead.ForwardFlags()} {overhead.Value}");
            var toSender = overhead.Has(OverheadFlags.ReturnToSender);
            foreach (var other in _sessions.Values)
            {
                if ((other.Authenticated || other.IsLink) && (toSender || !ReferenceEquals(other, session)))
                {
                    SendFanOut(other, forwarded, now);
                }
            }
        }
    }

    private void Authenticate(ClacksSession session, string token, double now)
    {
        if (token == _mainToken)
        {
            session.CanRead = session.CanWrite = session.CanManage = session.CanInterclacks = true;
        }
        else if (!session.IsMasterLink && _userTokens.TryGetValue(token, out var user))
        {
            session.CanRead = user.Read;
            session.CanWrite = user.Write;
            session.CanManage = user.Manage;
            session.CanInterclacks = false;
        }
        else
        {
            Statistics.LoginFailures++;
            if (Warnings.Allow(nameof(ClacksLog.LoginFailed)))
            {
                ClacksLog.LoginFailed(_logger, session.Cid);
            }

            session.Authenticated = false;
            session.Send("OVERHEAD F Login failed!", now);
            session.CloseAfterFlush();
            return;
        }

        session.Authenticated = true;
        session.SendDeferred("OVERHEAD O Welcome!");
    }

    /// <summary>Master side of <c>OVERHEAD I 1</c> (clacks §12.3): link mode, lock the slave, dump, unlock, PING.</summary>
    private void StartMasterSideSync(ClacksSession session, double now)
    {
        SetLink(session, true);
        session.LastPing = now;
        session.LastLinkActivity = now;
        session.Send($"CLACKS {_options.ServerIdentification} in interclacks master mode", now);
        session.Send("OVERHEAD M Authentication required", now);
        session.Send("OVERHEAD A " + _mainToken, now);
        session.Send("OVERHEAD L 1", now);
        session.Send("OVERHEAD T " + PerlNumber.FormatTime(now), now);
        SendKeySyncDump(session, now);
        session.Send("OVERHEAD L 0", now);
        session.Send("PING", now);
        session.LastInterclacksPingSent = now;
    }

    private void SendKeySyncDump(ClacksSession session, double now)
    {
        foreach (var (key, entry) in Cache.SortedEntries())
        {
            session.Send(KeySyncLine(key, entry), now);
        }
    }

    private static string KeySyncLine(string key, CacheEntry entry) => entry.Deleted
        ? $"KEYSYNC {PerlNumber.FormatTime(entry.CacheTime)} 0 D {key}=REMOVED"
        : $"KEYSYNC {PerlNumber.FormatTime(entry.CacheTime)} {PerlNumber.FormatTime(entry.AccessTime)} U {key}={entry.Data}";

    /// <summary>Runs a command (clacks §5.2). Returns true when it was executed (permission granted).</summary>
    private bool Execute(ClacksSession session, ClacksCommand command, string line, double now)
    {
        switch (command.Kind)
        {
            case ClacksCommandKind.Notify:
                if (!Require(session, session.CanWrite))
                {
                    return false;
                }

                Deliver(session, command.Name, "NOTIFY " + command.Name, now);
                return true;

            case ClacksCommandKind.Set:
                if (!Require(session, session.CanWrite))
                {
                    return false;
                }

                Deliver(session, command.Name, line, now);
                return true;

            case ClacksCommandKind.SetAndStore:
                if (!Require(session, session.CanWrite))
                {
                    return false;
                }

                Cache.Store(command.Name, command.Value!, now);
                Deliver(session, command.Name, $"SET {command.Name}={command.Value}", now);
                return true;

            case ClacksCommandKind.Store:
                if (!Require(session, session.CanWrite))
                {
                    return false;
                }

                Cache.Store(command.Name, command.Value!, now);
                return true;

            case ClacksCommandKind.Retrieve:
                if (!Require(session, session.CanRead))
                {
                    return false;
                }

                var data = Cache.Retrieve(command.Name, now);
                session.Send(data is null ? "NOTRETRIEVED " + command.Name : $"RETRIEVED {command.Name}={data}", now);
                return true;

            case ClacksCommandKind.Remove:
                if (!Require(session, session.CanWrite))
                {
                    return false;
                }

                Cache.Remove(command.Name, now);
                return true;

            case ClacksCommandKind.Increment:
            case ClacksCommandKind.Decrement:
                if (!Require(session, session.CanWrite))
                {
                    return false;
                }

                Cache.Add(command.Name, command.Value, command.Kind == ClacksCommandKind.Decrement, now);
                return true;

            case ClacksCommandKind.KeyList:
                if (!Require(session, session.CanRead))
                {
                    return false;
                }

                session.Send("KEYLISTSTART", now);
                foreach (var key in Cache.SortedKeys())
                {
                    session.Send("KEY " + key, now);
                }

                session.Send("KEYLISTEND", now);
                return true;

            case ClacksCommandKind.ClearCache:
                if (!Require(session, session.CanManage))
                {
                    return false;
                }

                Cache.Clear();
                return true;

            case ClacksCommandKind.Listen:
                if (!Require(session, session.CanRead))
                {
                    return false;
                }

                if (session.Listening.Add(command.Name))
                {
                    Subscribe(session, command.Name);
                }

                return true;

            case ClacksCommandKind.Unlisten:
                if (!Require(session, session.CanRead))
                {
                    return false;
                }

                if (session.Listening.Remove(command.Name))
                {
                    Unsubscribe(session, command.Name);
                }

                return true;

            case ClacksCommandKind.Monitor:
            case ClacksCommandKind.Unmonitor:
                if (!Require(session, session.CanManage))
                {
                    return false;
                }

                session.Monitor = command.Kind == ClacksCommandKind.Monitor;
                if (session.Monitor)
                {
                    _monitors.Add(session);
                }
                else
                {
                    _monitors.Remove(session);
                }

                return true;

            case ClacksCommandKind.Quit:
                // Lines after QUIT are not executed (fix of Q6).
                session.CloseAfterFlush();
                return true;

            case ClacksCommandKind.Timeout when session.IsLink:
                if (!Require(session, session.CanInterclacks))
                {
                    return false;
                }

                session.CloseAfterFlush();
                return true;

            case ClacksCommandKind.Ping:
                session.LastPing = now;
                session.LastLinkActivity = now;
                return true;

            case ClacksCommandKind.NoPing:
                session.LastPing = 0;
                return true;

            case ClacksCommandKind.ClientList:
                if (!Require(session, session.CanManage))
                {
                    return false;
                }

                session.Send("CLIENTLISTSTART", now);
                foreach (var cid in _sessions.Keys.Order(StringComparer.Ordinal))
                {
                    session.Send(_sessions[cid].ClientListLine(), now);
                }

                session.Send("CLIENTLISTEND", now);
                return true;

            case ClacksCommandKind.ClientDisconnect:
                if (!Require(session, session.CanManage))
                {
                    return false;
                }

                if (_sessions.TryGetValue(command.Name, out var victim))
                {
                    victim.Send(ClacksWire.QuitLine, now);
                    victim.CloseAfterFlush();
                }

                return true;

            case ClacksCommandKind.Flush:
                session.Send("FLUSHED " + command.Name, now);
                return true;

            case ClacksCommandKind.KeySync:
                if (!Require(session, session.CanInterclacks))
                {
                    return false;
                }

                MergeKeySync(session, command, now);
                return true;

            default:
                session.Send("OVERHEAD E unknown_command " + line, now);
                return false;
        }
    }

    /// <summary>KEYSYNC receiver (clacks §12.4): counts as a ping, skew-corrected times, newest wins.</summary>
    private void MergeKeySync(ClacksSession session, ClacksCommand command, double now)
    {
        session.LastPing = now;
        session.LastLinkActivity = now;
        var cacheTime = PerlNumber.ParseTime(command.CacheTime) + session.TimeOffset;
        var accessTime = PerlNumber.ParseTime(command.AccessTime);
        if (accessTime != 0)
        {
            accessTime += session.TimeOffset;
        }

        var deleted = command.Mode == "D";
        Cache.Merge(command.Name, new CacheEntry(deleted ? string.Empty : command.Value ?? string.Empty, cacheTime, accessTime, deleted));
    }

    private static bool Require(ClacksSession session, bool allowed)
    {
        if (!allowed)
        {
            // Immediately, in order with other replies (the reference delays it to the end of the batch, Q3).
            session.Send("OVERHEAD E permission_denied", session.LastSent);
        }

        return allowed;
    }

    /// <summary>Delivers to every other connection listening to the name; never echoed (clacks §7.1).</summary>
    private void Deliver(ClacksSession sender, string name, string text, double now)
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

    /// <summary>Forwards an executed command verbatim to every other link (clacks §5.1 step 8, 12.5).</summary>
    private void ForwardToLinks(ClacksSession origin, string line, double now)
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

    /// <summary>Mirrors a line to every monitor (clacks §11).</summary>
    private void Debug(string text, double now)
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

    private byte[] Encode(string line)
    {
        Statistics.FanOutEncodes++;
        return ClacksWire.EncodeLine(line);
    }

    private void SendFanOut(ClacksSession recipient, byte[] encoded, double now)
    {
        Statistics.FanOutDeliveries++;
        recipient.Send(encoded, now);
    }

    private void Subscribe(ClacksSession session, string name)
    {
        if (!_subscribers.TryGetValue(name, out var set))
        {
            _subscribers[name] = set = [];
        }

        if (set.Add(session))
        {
            Statistics.Subscriptions++;
        }
    }

    private void Unsubscribe(ClacksSession session, string name)
    {
        if (_subscribers.TryGetValue(name, out var set) && set.Remove(session))
        {
            Statistics.Subscriptions--;
            if (set.Count == 0)
            {
                _subscribers.Remove(name);
            }
        }
    }

    private void SetLink(ClacksSession session, bool link)
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

    private void Unlock()
    {
        SyncLocked = false;
        _unlocked.TrySetResult();
    }

    /// <summary>OVERHEAD C (clacks §6.1): QUIT to everybody; links first get <c>OVERHEAD GC 1</c> when G was set.</summary>
    private void CloseAll(bool cascade, double now)
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

    /// <summary>Server shutdown (clacks §3.5): every connection gets QUIT and is closed.</summary>
    public void QuitAll()
    {
        using (EnterGate())
        {
            var now = Now;
            foreach (var session in _sessions.Values.ToList())
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
            foreach (var session in _sessions.Values.ToList())
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
                return _sessions.Count;
            }
        }
    }

    /// <summary>Periodic checks (clacks §10): auth/ping/link timeouts, link PINGs, NOP keepalive, stalled writes.</summary>
    public void Tick()
    {
        using (EnterGate())
        {
            var now = Now;
            var linkInterval = Math.Max(1, Math.Floor(_options.InterclacksPingTimeout / 3));
            foreach (var session in _sessions.Values.ToList())
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
                    Statistics.SlowConsumersDropped++;
                    if (Warnings.Allow(nameof(ClacksLog.BadInput)))
                    {
                        ClacksLog.BadInput(_logger, session.Cid, "peer does not read its output; dropped");
                    }

                    Remove(session, "stalled write");
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
    }

    /// <summary>Cache housekeeping (clacks §8.3).</summary>
    public void CleanCache()
    {
        using (EnterGate())
        {
            var now = Now;
            foreach (var (key, wasDeleted) in Cache.Clean(now, _options.DeletedCacheTime, _options.StaleCacheTime))
            {
                Debug($"SERVERCACHE={(wasDeleted ? "CLEANDELETED" : "CLEANSTALE")}={key}", now);
            }
        }
    }

    /// <summary>Snapshot for persistence if the cache changed since the last one (clears the dirty flag).</summary>
    public List<KeyValuePair<string, CacheEntry>>? TakeSnapshot(bool force)
    {
        using (EnterGate())
        {
            if (!force && !Cache.Dirty)
            {
                return null;
            }

            Cache.Dirty = false;
            return Cache.SortedEntries();
        }
    }

    public void MarkDirty()
    {
        using (EnterGate())
        {
            Cache.Dirty = true;
        }
    }
}
