using CacheHost.Protocols.Clacks;
using CacheHost.Transport;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// Runs one session's lines (clacks §5.1): client identification, OVERHEAD (clacks §6), the login and the
/// permission checks of <see cref="ClacksPermissions"/>, the commands (clacks §5.2), monitor copies and link
/// forwarding. Holds no state of its own beyond its collaborators; called under the server's gate.
/// </summary>
internal sealed class ClacksCommandExecutor
{
    private readonly ClacksOptions _options;
    private readonly ILogger _logger;
    private readonly ClacksRegistry _registry;
    private readonly ClacksPermissions _permissions;
    private readonly InterclacksSync _sync;
    private readonly ClacksCache _cache;
    private readonly ClacksStatistics _statistics;
    private readonly LogRateLimiter _warnings;
    private readonly Func<Action<double>?> _shutdownRequested;

    public ClacksCommandExecutor(ClacksOptions options, ILogger logger, ClacksRegistry registry, ClacksPermissions permissions,
        InterclacksSync sync, ClacksCache cache, ClacksStatistics statistics, LogRateLimiter warnings, Func<Action<double>?> shutdownRequested)
    {
        _options = options;
        _logger = logger;
        _registry = registry;
        _permissions = permissions;
        _sync = sync;
        _cache = cache;
        _statistics = statistics;
        _warnings = warnings;
        _shutdownRequested = shutdownRequested;
    }

    /// <summary>One line of an authenticated or unauthenticated session, in the order of clacks §5.1.</summary>
    public void ProcessLine(ClacksSession session, string line, double now)
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
                _statistics.UnauthenticatedFloods++;
                if (_warnings.Allow(nameof(ClacksLog.BadInput)))
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
                _registry.Debug(session.Cid + "=" + MaskLogin(line, isOverhead, overhead), now);
            }

            return;
        }

        // 6-8. Commands; only executed commands are forwarded (fix of Q1).
        var command = ClacksCommandParser.Parse(line);
        var executed = Execute(session, command, line, now);

        // 4. Monitor copy. The reference sends monitor lines after the batch's replies, which is why a
        // connection sees its own MONITOR command; mirroring after execution gives the same effect.
        _registry.Debug(session.Cid + "=" + line, now);
        if (executed && command.IsReplicated)
        {
            _registry.ForwardToLinks(session, line, now);
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
                _sync.Lock();
            }
            else
            {
                _sync.UnlockAndAnswer(session, now);
            }

            return;
        }

        if (overhead.Has(OverheadFlags.CloseAll))
        {
            if (!ClacksPermissions.Allows(session, ClacksPermission.Manage))
            {
                session.Send("OVERHEAD E permission_denied", now);
                return;
            }

            if (overhead.ValueIsTrue)
            {
                _registry.CloseAll(cascade: overhead.Has(OverheadFlags.Forward), now);
                return;
            }
        }

        if (overhead.Has(OverheadFlags.Shutdown))
        {
            if (!ClacksPermissions.Allows(session, ClacksPermission.Manage))
            {
                session.Send("OVERHEAD E permission_denied", now);
                return;
            }

            var seconds = PerlNumber.ParseTime(overhead.Value);
            if (seconds > 0)
            {
                ClacksLog.ShutdownRequested(_logger, session.Cid, seconds);
                _shutdownRequested()?.Invoke(seconds);
            }
        }

        if (overhead.Has(OverheadFlags.Error))
        {
            if (_warnings.Allow(nameof(ClacksLog.ClientError)))
            {
                ClacksLog.ClientError(_logger, session.Cid, overhead.Value);
            }
        }

        if (overhead.Has(OverheadFlags.Interclacks))
        {
            if (!ClacksPermissions.Allows(session, ClacksPermission.Interclacks))
            {
                session.Send("OVERHEAD E permission_denied", now);
                return;
            }

            if (overhead.ValueIsTrue)
            {
                if (!session.IsMasterLink)
                {
                    _sync.StartMasterSide(session, now);
                }
            }
            else
            {
                _registry.SetLink(session, false);
                session.LastInterclacksPingSent = 0;
            }
        }

        if (overhead.Has(OverheadFlags.Forward))
        {
            if (!ClacksPermissions.Allows(session, ClacksPermission.Write))
            {
                session.Send("OVERHEAD E permission_denied", now);
                return;
            }

            _registry.ForwardOverhead(session, $"OVERHEAD {overhead.ForwardFlags()} {overhead.Value}", overhead.Has(OverheadFlags.ReturnToSender), now);
        }
    }

    private void Authenticate(ClacksSession session, string token, double now)
    {
        if (!_permissions.TryGrant(session, token))
        {
            _statistics.LoginFailures++;
            if (_warnings.Allow(nameof(ClacksLog.LoginFailed)))
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

    /// <summary>Runs a command (clacks §5.2). Returns true when it was executed (permission granted).</summary>
    public bool Execute(ClacksSession session, ClacksCommand command, string line, double now)
    {
        switch (command.Kind)
        {
            case ClacksCommandKind.Notify:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                _registry.Deliver(session, command.Name, "NOTIFY " + command.Name, now);
                return true;

            case ClacksCommandKind.Set:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                _registry.Deliver(session, command.Name, line, now);
                return true;

            case ClacksCommandKind.SetAndStore:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                _cache.Store(command.Name, command.Value!, now);
                _registry.Deliver(session, command.Name, $"SET {command.Name}={command.Value}", now);
                return true;

            case ClacksCommandKind.Store:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                _cache.Store(command.Name, command.Value!, now);
                return true;

            case ClacksCommandKind.Retrieve:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                var data = _cache.Retrieve(command.Name, now);
                session.Send(data is null ? "NOTRETRIEVED " + command.Name : $"RETRIEVED {command.Name}={data}", now);
                return true;

            case ClacksCommandKind.Remove:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                _cache.Remove(command.Name, now);
                return true;

            case ClacksCommandKind.Increment:
            case ClacksCommandKind.Decrement:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                _cache.Add(command.Name, command.Value, command.Kind == ClacksCommandKind.Decrement, now);
                return true;

            case ClacksCommandKind.KeyList:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                session.Send("KEYLISTSTART", now);
                foreach (var key in _cache.SortedKeys())
                {
                    session.Send("KEY " + key, now);
                }

                session.Send("KEYLISTEND", now);
                return true;

            case ClacksCommandKind.ClearCache:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                _cache.Clear();
                return true;

            case ClacksCommandKind.Listen:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                _registry.Listen(session, command.Name);

                return true;

            case ClacksCommandKind.Unlisten:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                _registry.Unlisten(session, command.Name);

                return true;

            case ClacksCommandKind.Monitor:
            case ClacksCommandKind.Unmonitor:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                _registry.SetMonitor(session, command.Kind == ClacksCommandKind.Monitor);

                return true;

            case ClacksCommandKind.Quit:
                // Lines after QUIT are not executed (fix of Q6).
                session.CloseAfterFlush();
                return true;

            case ClacksCommandKind.Timeout when session.IsLink:
                if (!Require(session, command.Kind))
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
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                session.Send("CLIENTLISTSTART", now);
                foreach (var listed in _registry.OrderedByCid())
                {
                    session.Send(listed.ClientListLine(), now);
                }

                session.Send("CLIENTLISTEND", now);
                return true;

            case ClacksCommandKind.ClientDisconnect:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                if (_registry.TryGet(command.Name, out var victim))
                {
                    victim.Send(ClacksWire.QuitLine, now);
                    victim.CloseAfterFlush();
                }

                return true;

            case ClacksCommandKind.Flush:
                session.Send("FLUSHED " + command.Name, now);
                return true;

            case ClacksCommandKind.KeySync:
                if (!Require(session, command.Kind))
                {
                    return false;
                }

                _sync.MergeKeySync(session, command, now);
                return true;

            default:
                session.Send("OVERHEAD E unknown_command " + line, now);
                return false;
        }
    }

    /// <summary>Checks the permission table; a refusal is answered at once (clacks §4).</summary>
    private static bool Require(ClacksSession session, ClacksCommandKind kind)
    {
        var allowed = ClacksPermissions.Allows(session, ClacksPermissions.Required(kind));
        if (!allowed)
        {
            // Immediately, in order with other replies (the reference delays it to the end of the batch, Q3).
            session.Send("OVERHEAD E permission_denied", session.LastSent);
        }

        return allowed;
    }
}
