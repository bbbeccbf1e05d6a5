using System.Buffers;
using System.IO.Pipelines;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.ClientProxy;

/// <summary>
/// The link loop: the proxy's one persistent connection to a server (distcache §10.2-10.4), over a list of servers
/// (<see cref="ClientProxyOptions.ServerList"/>, first = preferred). Requests are numbered and remembered by the
/// <see cref="InFlightTable"/> and carried into the link by the <see cref="WriteCoalescer"/>; a single reader per
/// link matches responses to the table by uid and hands each payload to its local connection. When the link dies
/// its in-flight requests are answered 0x02 and the next server in the list is tried at once; a server is tried
/// at most once per RetryMs, so with one server this is dc_client's reconnect every RetryMs. While the link is on
/// another server than the first, the first is tried every <see cref="ClientProxyOptions.FailbackAfter"/> (if set);
/// when it answers, new requests go to it and the old link is closed once its requests are answered.
/// </summary>
internal sealed class UpstreamLink
{
    private readonly ClientProxyOptions _options;
    private readonly TransportAddress[] _servers;
    private readonly long[] _lastAttempt;
    private readonly bool[] _warned;
    private readonly ILogger _logger;
    private readonly TimeProvider _clock;
    private readonly InFlightTable _inFlight;
    private readonly WriteCoalescer _writer;
    private readonly List<Task> _retiring = [];
    private int _epoch;
    private volatile int _current = -1; // server index of the open link; -1 = none

    public UpstreamLink(ClientProxyOptions options, ClientProxyStatistics stats, TimeProvider clock, ILogger logger)
        : this(options, stats, clock, logger, BatchEnd.Scheduler)
    {
    }

    public UpstreamLink(ClientProxyOptions options, ClientProxyStatistics stats, TimeProvider clock, ILogger logger, IBatchEndScheduler batchEnd)
    {
        _options = options;
        _clock = clock;
        _servers = [.. options.ServerList.Select(TransportAddress.Parse)];
        _lastAttempt = new long[_servers.Length];
        _warned = new bool[_servers.Length];
        _logger = logger;
        Stats = stats;
        _inFlight = new InFlightTable(options.EffectiveDepth);
        _writer = new WriteCoalescer(options.CoalesceWrites, batchEnd, stats);
    }

    /// <summary>The last uid handed out (tests seed it near 2^32 to exercise the wrap).</summary>
    internal uint LastUid
    {
        get => _inFlight.LastUid;
        set => _inFlight.LastUid = value;
    }

    public ClientProxyStatistics Stats { get; }

    /// <summary>TLS of the link (ServerTls), or null for plain TCP as dc_client; every connect runs its handshake.</summary>
    public TlsContext? Tls { get; set; }

    /// <summary>True while a server connection takes requests.</summary>
    public bool IsConnected => _current >= 0;

    /// <summary>The server the link is on, or null while there is none.</summary>
    public string? CurrentServer => _current is var index and >= 0 ? _servers[index].Text : null;

    public int InFlight => _inFlight.Count;

    /// <summary>Waits for an in-flight slot; waiters are served in arrival order (round-robin fairness, distcache §10.2).</summary>
    public Task WaitForSlotAsync(CancellationToken cancellationToken) => _inFlight.WaitForSlotAsync(cancellationToken);

    /// <summary>Gives back a slot that was not used.</summary>
    public void ReleaseSlot() => _inFlight.ReleaseSlot();

    /// <summary>
    /// Forwards the request in <paramref name="wire"/> with a fresh uid. False when there is no server link
    /// (the caller answers with the empty reply of distcache §10.4 and releases its slot).
    /// </summary>
    public ValueTask<bool> SubmitAsync(in ReadOnlySequence<byte> wire, in DistCacheMessage message, PendingRequest pending)
    {
        if (!_inFlight.TryAdd(pending, _options.RequestTimeoutMs > 0 ? _clock.GetTimestamp() : 0, out var uid, out var epoch))
        {
            return new ValueTask<bool>(false);
        }

        var length = message.WireLength;
        Stats.Forwarded.Increment();
        Stats.BytesToServer.Add(length);
        return _writer.WriteAsync(wire, length, uid, epoch);
    }

    /// <summary>
    /// Host shutdown: answer every in-flight request with 0x02 at once, so local handlers waiting for answers can
    /// finish within the shutdown budget (the link itself is closed by RunAsync's cancellation).
    /// </summary>
    public void AbandonInFlight()
    {
        _current = -1;
        Answer0x02(_inFlight.CloseAll(), null, "shutting down");
    }

    /// <summary>Keeps a link up until <paramref name="stopping"/>: connect, serve, on loss answer 0x02, next server.</summary>
    public async Task RunAsync(CancellationToken stopping)
    {
        var next = 0;
        var lastConnected = 0;
        try
        {
            while (!stopping.IsCancellationRequested)
            {
                var index = await WaitForTurnAsync(next, stopping).ConfigureAwait(false);
                _lastAttempt[index] = _clock.GetTimestamp();
                var connection = await TryConnectAsync(index, stopping).ConfigureAwait(false);
                if (connection is null)
                {
                    next = (index + 1) % _servers.Length;
                    continue;
                }

                if (index != lastConnected)
                {
                    Stats.Failover();
                    ClientProxyLog.Failover(_logger, _servers[lastConnected].Text, _servers[index].Text);
                }

                Link? retiring = null;
                while (connection is not null)
                {
                    var link = new Link(connection, index, Interlocked.Increment(ref _epoch));
                    lastConnected = index;
                    link.Serving = ServeAsync(link, carry: retiring is not null, stopping);
                    if (retiring is not null)
                    {
                        // Only now that the new link takes requests: the old one's count of requests is final.
                        _retiring.RemoveAll(static t => t.IsCompleted);
                        _retiring.Add(RetireAsync(retiring));
                        retiring = null;
                    }

                    connection = null;
                    if (index > 0 && _options.FailbackAfter > TimeSpan.Zero)
                    {
                        connection = await WatchForFailbackAsync(link, stopping).ConfigureAwait(false);
                    }

                    if (connection is null)
                    {
                        await link.Serving.ConfigureAwait(false);
                        next = (index + 1) % _servers.Length;
                        break;
                    }

                    // Failback: the first server answers again. New requests go to it; the old link finishes.
                    Stats.Failback();
                    ClientProxyLog.Failback(_logger, _servers[0].Text, _servers[index].Text);
                    retiring = link;
                    index = 0;
                }
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
        finally
        {
            await Task.WhenAll(_retiring).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Connects to server <paramref name="index"/> within ConnectTimeout: the one place the link opens a
    /// connection (an adapter such as TLS wraps what this returns). Null on failure, warned about once per streak.
    /// </summary>
    private async Task<TransportConnection?> TryConnectAsync(int index, CancellationToken stopping)
    {
        var server = _servers[index];
        try
        {
            using var connectLimit = new CancellationTokenSource(_options.ConnectTimeout, _clock);
            using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(stopping, connectLimit.Token);
            var connection = await OutboundConnector.ConnectAsync(server, _options.ServerTransport, _logger, Tls?.CreateClientAdapter(server, _options.ServerTransport), connectTimeout.Token).ConfigureAwait(false);
            _warned[index] = false;
            Stats.Connect();
            ClientProxyLog.ServerConnected(_logger, server.Text);
            return connection;
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex)
        {
            if (!_warned[index])
            {
                ClientProxyLog.ServerConnectFailed(_logger, server.Text, ex.Message, _options.RetryMs);
                _warned[index] = true;
            }

            return null;
        }
    }

    /// <summary>
    /// The first server, from <paramref name="from"/> on round the list, not tried within RetryMs; waits for the
    /// soonest when every server was.
    /// </summary>
    private async Task<int> WaitForTurnAsync(int from, CancellationToken stopping)
    {
        var retry = TimeSpan.FromMilliseconds(_options.RetryMs);
        while (true)
        {
            var soonest = from;
            var soonestWait = TimeSpan.MaxValue;
            for (var i = 0; i < _servers.Length; i++)
            {
                var index = (from + i) % _servers.Length;
                var wait = _lastAttempt[index] == 0 ? TimeSpan.Zero : retry - _clock.GetElapsedTime(_lastAttempt[index]);
                if (wait <= TimeSpan.Zero)
                {
                    return index;
                }

                if (wait < soonestWait)
                {
                    (soonest, soonestWait) = (index, wait);
                }
            }

            await Task.Delay(soonestWait, _clock, stopping).ConfigureAwait(false);
            from = soonest;
        }
    }

    /// <summary>
    /// While <paramref name="link"/> serves, tries the first server every FailbackAfter; its connection once it
    /// answers, or null when the link ended first.
    /// </summary>
    private async Task<TransportConnection?> WatchForFailbackAsync(Link link, CancellationToken stopping)
    {
        while (true)
        {
            using (var tick = CancellationTokenSource.CreateLinkedTokenSource(stopping))
            {
                var delay = Task.Delay(_options.FailbackAfter, _clock, tick.Token);
                if (await Task.WhenAny(link.Serving!, delay).ConfigureAwait(false) == link.Serving || stopping.IsCancellationRequested)
                {
                    tick.Cancel();
                    return null;
                }
            }

            _lastAttempt[0] = _clock.GetTimestamp();
            if (await TryConnectAsync(0, stopping).ConfigureAwait(false) is { } connection)
            {
                if (!link.Serving!.IsCompleted)
                {
                    return connection;
                }

                await connection.DisposeAsync().ConfigureAwait(false); // lost meanwhile: the loop reconnects in order
                return null;
            }
        }
    }

    /// <summary>
    /// After a failback: lets the old link answer what it still carries (up to ConnectTimeout; what is left then
    /// gets 0x02), then closes it.
    /// </summary>
    private async Task RetireAsync(Link link)
    {
        link.Retiring = true;
        var drained = _inFlight.RetireAsync(link.Epoch);
        try
        {
            await drained.WaitAsync(_options.ConnectTimeout, _clock).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }

        link.Connection.Abort("retired after failback");
        await link.Serving!.ConfigureAwait(false);
    }

    /// <summary>Serves one link until it dies or is retired; then its in-flight requests are answered 0x02.</summary>
    private async Task ServeAsync(Link link, bool carry, CancellationToken stopping)
    {
        var connection = link.Connection;
        using var linkDone = CancellationTokenSource.CreateLinkedTokenSource(stopping);

        // Writer first: a request the table accepts for this epoch must find the writer bound to it.
        _writer.Attach(connection.Transport.Output, link.Epoch, keepStaged: carry);
        _inFlight.Open(link.Epoch);
        _current = link.Index;

        // One timer per link, not per request: it looks at the oldest request in flight.
        var timeout = _options.RequestTimeoutMs;
        var period = TimeSpan.FromMilliseconds(Math.Max(1, timeout / 4));
        using var watchdog = timeout > 0 ? _clock.CreateTimer(static s => { var (self, l) = ((UpstreamLink, Link))s!; self.CheckRequestTimeout(l); }, (this, link), period, period) : null;
        string reason;
        try
        {
            reason = await ReadLoopAsync(connection.Transport.Input, linkDone.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            reason = "shutting down";
        }
        catch (Exception ex)
        {
            reason = link.Retiring ? "retired after failback" : ex.Message;
        }

        linkDone.Cancel();
        if (!stopping.IsCancellationRequested && !link.Retiring)
        {
            Stats.Loss();
            _lastAttempt[link.Index] = _clock.GetTimestamp(); // the loss counts as this server's attempt (not the dispose below)
        }

        connection.Abort(reason);
        if (Volatile.Read(ref _epoch) == link.Epoch)
        {
            _current = -1;
        }

        _writer.Detach(link.Epoch);
        Answer0x02(_inFlight.Close(link.Epoch), link, reason);
        await connection.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Drops the link when the oldest request has waited RequestTimeoutMs (its reader then answers 0x02).</summary>
    private void CheckRequestTimeout(Link link)
    {
        if (_inFlight.OldestSubmittedAt() is not { } oldest || _clock.GetElapsedTime(oldest).TotalMilliseconds < _options.RequestTimeoutMs)
        {
            return;
        }

        Stats.RequestTimeout();
        ClientProxyLog.RequestTimeout(_logger, _servers[link.Index].Text, _options.RequestTimeoutMs);
        link.Connection.Abort($"no answer within {_options.RequestTimeoutMs} ms");
    }

    /// <summary>Answers requests whose link died with 0x02 (distcache §10.3).</summary>
    private void Answer0x02(PendingRequest[] orphans, Link? link, string reason)
    {
        if (orphans.Length == 0 && (reason == "shutting down" || link?.Retiring == true))
        {
            return;
        }

        var server = link is null ? string.Join(", ", _servers.Select(s => s.Text)) : _servers[link.Index].Text;
        ClientProxyLog.ServerLost(_logger, server, reason, orphans.Length);
        Stats.DisconnectedAnswer(orphans.Length);
        foreach (var pending in orphans)
        {
            pending.CompleteDisconnected();
        }
    }

    private async Task<string> ReadLoopAsync(PipeReader input, CancellationToken linkDone)
    {
        while (true)
        {
            var result = await input.ReadAsync(linkDone).ConfigureAwait(false);
            var buffer = result.Buffer;
            while (true)
            {
                var status = DistCacheMessageReader.TryRead(buffer, expectResponse: true, out var message, out var error, out var header);
                if (status == OperationStatus.NeedMoreData)
                {
                    break;
                }

                if (status == OperationStatus.InvalidData)
                {
                    if (error == DistCacheProtocolError.ProtocolLevel)
                    {
                        Stats.LinkProtocolLevel();
                        ClientProxyLog.ProtocolIncompatible(_logger, Environment.ProcessId, DistCacheProtocol.ProtocolLevel, header.ProtocolLevel, -1);
                    }
                    else
                    {
                        Stats.MalformedResponse();
                        ClientProxyLog.MalformedResponse(_logger, error);
                    }

                    input.AdvanceTo(buffer.Start, buffer.End);
                    return $"malformed response ({error})";
                }

                var wire = buffer.Slice(0, message.WireLength);
                Stats.BytesFromServer.Add(message.WireLength);
                switch (_inFlight.TryTake(message.Uid, message.Operation, out var pending))
                {
                    case InFlightTable.Match.Mismatched:
                        // Not the answer to this request (e.g. an original server's phantom reply, distcache §13.1):
                        // the stream can no longer be trusted. The request stays in flight and gets 0x02 with the rest.
                        Stats.MismatchedResponse();
                        ClientProxyLog.MismatchedResponse(_logger, message.Uid, message.Operation, pending!.Operation);
                        input.AdvanceTo(buffer.Start, buffer.End);
                        return $"response operation {message.Operation} for a {pending.Operation} request";
                    case InFlightTable.Match.Unknown:
                        Stats.UnknownResponse();
                        ClientProxyLog.UnknownUid(_logger, message.Uid);
                        break;
                    default:
                        Stats.Replies.Increment();
                        pending!.Complete(message, wire);
                        break;
                }

                buffer = buffer.Slice(message.WireLength);
            }

            input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted || result.IsCanceled)
            {
                return "server closed the connection";
            }
        }
    }

    /// <summary>One connection to one server, numbered by its epoch.</summary>
    private sealed class Link(TransportConnection connection, int index, int epoch)
    {
        public TransportConnection Connection { get; } = connection;

        public int Index { get; } = index;

        public int Epoch { get; } = epoch;

        public Task? Serving { get; set; }

        public volatile bool Retiring;
    }
}
