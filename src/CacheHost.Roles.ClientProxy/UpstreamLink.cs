using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;
using CacheHost.Transport.Epoll;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.ClientProxy;

/// <summary>
/// The proxy's one persistent connection to the server (spec 10.2-10.4). Local requests are copied into a
/// staging buffer with their uid rewritten to the next value of a 32-bit counter (from 1, wrapping modulo 2^32
/// and skipping uids still in flight: fix of 13.9). On an epoll loop the staged requests leave at the end of the
/// loop's round (<see cref="ClientProxyOptions.CoalesceWrites"/>); otherwise whichever caller finds the writer idle
/// moves the staged bytes into the link and flushes once per batch (no writer thread, no hop). A single reader matches responses to the in-flight table by uid and hands each
/// payload to its local connection; responses with unknown uids (departed clients, or never asked) are dropped
/// quietly (fix of 13.3). When the link dies every in-flight request is answered 0x02 and reconnects are
/// attempted every RetryMs.
/// </summary>
internal sealed class UpstreamLink
{
    private readonly object _lock = new();
    private readonly Dictionary<uint, PendingRequest> _inFlight = [];
    private readonly SemaphoreSlim _slots;
    private readonly ClientProxyOptions _options;
    private readonly TransportAddress _server;
    private readonly ILogger _logger;
    private readonly TimeProvider _clock;
    private ArrayBufferWriter<byte> _staging = new(64 * 1024);
    private ArrayBufferWriter<byte> _sending = new(64 * 1024);
    private static readonly Action<object?> s_flushAtBatchEnd = static state => ((UpstreamLink)state!).FlushAtBatchEnd();
    private bool _writing;
    private bool _batchFlushScheduled;
    private bool _connected;
    private PipeWriter? _output;
    private int _generation;
    private uint _lastUid;
    private long _forwarded;
    private long _writes;
    private long _unknownResponses;
    private long _disconnectedAnswers;
    private long _connects;
    private long _losses;
    private long _malformedResponses;
    private long _protocolLevel;
    private long _mismatchedResponses;
    private long _requestTimeouts;

    public UpstreamLink(ClientProxyOptions options, ProxyStats stats, TimeProvider clock, ILogger logger)
    {
        _options = options;
        _clock = clock;
        _server = TransportAddress.Parse(options.Server!);
        _logger = logger;
        Stats = stats;
        _slots = new SemaphoreSlim(options.EffectiveDepth, options.EffectiveDepth);
    }

    /// <summary>The last uid handed out (tests seed it near 2^32 to exercise the wrap).</summary>
    internal uint LastUid
    {
        get
        {
            lock (_lock)
            {
                return _lastUid;
            }
        }

        set
        {
            lock (_lock)
            {
                _lastUid = value;
            }
        }
    }

    public ProxyStats Stats { get; }

    /// <summary>Successful connects to the server (the first one included).</summary>
    public long Connects => Interlocked.Read(ref _connects);

    /// <summary>Times an established server link was lost.</summary>
    public long Losses => Interlocked.Read(ref _losses);

    public long MalformedResponses => Interlocked.Read(ref _malformedResponses);

    public long ProtocolLevelErrors => Interlocked.Read(ref _protocolLevel);

    /// <summary>Responses whose operation differed from their request's (each dropped the link).</summary>
    public long MismatchedResponses => Interlocked.Read(ref _mismatchedResponses);

    /// <summary>Times the link was dropped because a request went unanswered for RequestTimeoutMs.</summary>
    public long RequestTimeouts => Interlocked.Read(ref _requestTimeouts);

    /// <summary>True while a server connection is up.</summary>
    public bool IsConnected => Volatile.Read(ref _connected);

    public long Forwarded => Interlocked.Read(ref _forwarded);

    /// <summary>Writes to the server link; fewer than <see cref="Forwarded"/> when requests were coalesced.</summary>
    public long Writes => Interlocked.Read(ref _writes);

    public long UnknownResponses => Interlocked.Read(ref _unknownResponses);

    public long DisconnectedAnswers => Interlocked.Read(ref _disconnectedAnswers);

    public int InFlight
    {
        get
        {
            lock (_lock)
            {
                return _inFlight.Count;
            }
        }
    }

    /// <summary>Waits for an in-flight slot; waiters are served in arrival order (round-robin fairness, 10.2).</summary>
    public Task WaitForSlotAsync(CancellationToken cancellationToken) => _slots.WaitAsync(cancellationToken);

    /// <summary>Gives back a slot that was not used.</summary>
    public void ReleaseSlot() => _slots.Release();

    /// <summary>
    /// Forwards the request in <paramref name="wire"/> with a fresh uid. False when there is no server link
    /// (the caller answers with the empty reply of 10.4 and releases its slot). If no other caller is writing to
    /// the link, this caller moves the staged bytes into the link itself (no thread hop; usually synchronous);
    /// otherwise its request leaves with the writer's next batch.
    /// </summary>
    public ValueTask<bool> SubmitAsync(in ReadOnlySequence<byte> wire, in DistCacheMessage message, PendingRequest pending)
    {
        PipeWriter output;
        int generation;
        lock (_lock)
        {
            if (!_connected)
            {
                return new ValueTask<bool>(false);
            }

            var uid = _lastUid;
            do
            {
                uid = unchecked(uid + 1);
            }
            while (_inFlight.ContainsKey(uid));

            _lastUid = uid;
            pending.SubmittedAt = _options.RequestTimeoutMs > 0 ? _clock.GetTimestamp() : 0;
            _inFlight.Add(uid, pending);

            // Copy the frames unchanged except for the uid field of every frame header (offset 5). Every frame but
            // the last carries 2048 bytes (4.2 rule 5), so the headers sit at fixed strides.
            var length = message.WireLength;
            var span = _staging.GetSpan(length)[..length];
            wire.CopyTo(span);
            for (var offset = 0; offset < length; offset += DistCacheProtocol.HeaderSize + DistCacheProtocol.MaxFrameData)
            {
                BinaryPrimitives.WriteUInt32BigEndian(span[(offset + 5)..], uid);
            }

            _staging.Advance(length);
            _forwarded++;
            Stats.BytesToServer.Add(length);

            if (_writing)
            {
                return new ValueTask<bool>(true); // leaves with the writer's next batch
            }

            // On an epoll loop: send after the loop has read every client that is ready in this round, so the
            // requests of one round leave in one write (dc_client's select loop does the same).
            if (_options.CoalesceWrites && (_batchFlushScheduled || EpollEngine.RunAtBatchEnd(s_flushAtBatchEnd, this)))
            {
                _batchFlushScheduled = true;
                return new ValueTask<bool>(true);
            }

            _writing = true;
            output = _output!;
            generation = _generation;
        }

        return DrainAsync(output, generation);
    }

    /// <summary>Writes staged batches into the link until none is left; only one caller at a time owns the writer.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> DrainAsync(PipeWriter output, int generation)
    {
        try
        {
            while (true)
            {
                ArrayBufferWriter<byte> batch;
                lock (_lock)
                {
                    if (generation != _generation || _staging.WrittenCount == 0)
                    {
                        if (generation == _generation)
                        {
                            _writing = false;
                        }

                        return true;
                    }

                    batch = _staging;
                    _staging = _sending;
                    _sending = batch;
                }

                output.Write(batch.WrittenSpan);
                batch.ResetWrittenCount();
                Interlocked.Increment(ref _writes);
                var flush = await output.FlushAsync().ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            // The link died under us; its reader reports that and answers the in-flight requests.
        }

        lock (_lock)
        {
            if (generation == _generation)
            {
                _writing = false;
            }
        }

        return true;
    }

    /// <summary>Keeps the link up until <paramref name="stopping"/>: connect, serve, on loss answer 0x02, retry.</summary>
    public async Task RunAsync(CancellationToken stopping)
    {
        var retry = TimeSpan.FromMilliseconds(_options.RetryMs);
        long? lastAttempt = null;
        var warned = false;
        while (!stopping.IsCancellationRequested)
        {
            var wait = lastAttempt is { } last ? retry - _clock.GetElapsedTime(last) : TimeSpan.Zero;
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, _clock, stopping).ConfigureAwait(false);
            }

            lastAttempt = _clock.GetTimestamp();
            TransportConnection connection;
            try
            {
                using var connectLimit = new CancellationTokenSource(_options.ConnectTimeout, _clock);
                using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(stopping, connectLimit.Token);
                connection = await OutboundConnector.ConnectAsync(_server, _options.ServerTransport, _logger, connectTimeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                if (!warned)
                {
                    ClientProxyLog.ServerConnectFailed(_logger, _server.Text, ex.Message, _options.RetryMs);
                    warned = true;
                }

                continue;
            }

            warned = false;
            Interlocked.Increment(ref _connects);
            ClientProxyLog.ServerConnected(_logger, _server.Text);
            var reason = await ServeAsync(connection, stopping).ConfigureAwait(false);
            lastAttempt = _clock.GetTimestamp();
            await connection.DisposeAsync().ConfigureAwait(false);
            _ = reason;
        }
    }

    private async Task<string> ServeAsync(TransportConnection connection, CancellationToken stopping)
    {
        using var linkDone = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        lock (_lock)
        {
            _staging.ResetWrittenCount();
            _generation++;
            _writing = false;
            _output = connection.Transport.Output;
            _connected = true;
        }

        // One timer per link, not per request: it looks at the oldest request in flight.
        var timeout = _options.RequestTimeoutMs;
        var period = TimeSpan.FromMilliseconds(Math.Max(1, timeout / 4));
        using var watchdog = timeout > 0 ? _clock.CreateTimer(static s => ((LinkWatch)s!).Link.CheckRequestTimeout(((LinkWatch)s!).Connection), new LinkWatch(this, connection), period, period) : null;
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
            reason = ex.Message;
        }

        linkDone.Cancel();
        if (!stopping.IsCancellationRequested)
        {
            Interlocked.Increment(ref _losses);
        }

        connection.Abort(reason);
        Fail(reason);
        return reason;
    }

    /// <summary>Drops the link when its oldest request has waited RequestTimeoutMs (the reader then answers 0x02 to all).</summary>
    private void CheckRequestTimeout(TransportConnection connection)
    {
        long oldest = long.MaxValue;
        lock (_lock)
        {
            foreach (var pending in _inFlight.Values)
            {
                oldest = Math.Min(oldest, pending.SubmittedAt);
            }
        }

        if (oldest == long.MaxValue || _clock.GetElapsedTime(oldest).TotalMilliseconds < _options.RequestTimeoutMs)
        {
            return;
        }

        Interlocked.Increment(ref _requestTimeouts);
        ClientProxyLog.RequestTimeout(_logger, _server.Text, _options.RequestTimeoutMs);
        connection.Abort($"no answer within {_options.RequestTimeoutMs} ms");
    }

    /// <summary>
    /// Host shutdown: answer every in-flight request with 0x02 at once, so local handlers waiting for answers can
    /// finish within the shutdown budget (the link itself is closed by RunAsync's cancellation).
    /// </summary>
    public void AbandonInFlight() => Fail("shutting down");

    /// <summary>Marks the link down and answers every in-flight request with 0x02 (spec 10.3).</summary>
    private void Fail(string reason)
    {
        PendingRequest[] orphans;
        lock (_lock)
        {
            _connected = false;
            _generation++;
            _writing = false;
            _output = null;
            _staging.ResetWrittenCount();
            orphans = [.. _inFlight.Values];
            _inFlight.Clear();
        }

        if (orphans.Length == 0 && reason == "shutting down")
        {
            return;
        }

        ClientProxyLog.ServerLost(_logger, _server.Text, reason, orphans.Length);
        Interlocked.Add(ref _disconnectedAnswers, orphans.Length);
        foreach (var pending in orphans)
        {
            pending.CompleteDisconnected();
            _slots.Release();
        }
    }

    /// <summary>
    /// End of an epoll round (<see cref="ClientProxyOptions.CoalesceWrites"/>): sends what the round staged. Never
    /// waits for the write itself: the loop must go on serving, and a full link drains on its own.
    /// </summary>
    private void FlushAtBatchEnd()
    {
        lock (_lock)
        {
            _batchFlushScheduled = false;
        }

        FlushStaged();
    }

    private void FlushStaged()
    {
        PipeWriter output;
        int generation;
        lock (_lock)
        {
            if (_writing || _staging.WrittenCount == 0 || !_connected)
            {
                return;
            }

            _writing = true;
            output = _output!;
            generation = _generation;
        }

        var drain = DrainAsync(output, generation);
        if (drain.IsCompletedSuccessfully)
        {
            _ = drain.Result; // returns the pooled state machine
        }
        else
        {
            _ = drain.AsTask(); // the link is full; DrainAsync finishes on its own and never throws
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
                        Interlocked.Increment(ref _protocolLevel);
                        ClientProxyLog.ProtocolIncompatible(_logger, Environment.ProcessId, DistCacheProtocol.ProtocolLevel, header.ProtocolLevel, -1);
                    }
                    else
                    {
                        Interlocked.Increment(ref _malformedResponses);
                        ClientProxyLog.MalformedResponse(_logger, error);
                    }

                    input.AdvanceTo(buffer.Start, buffer.End);
                    return $"malformed response ({error})";
                }

                var wire = buffer.Slice(0, message.WireLength);
                Stats.BytesFromServer.Add(message.WireLength);
                PendingRequest? pending;
                lock (_lock)
                {
                    if (_inFlight.TryGetValue(message.Uid, out pending) && pending.Operation != message.Operation)
                    {
                        // Not the answer to this request (e.g. an original server's phantom reply, spec 13.1): the
                        // stream can no longer be trusted. The request stays in flight and gets 0x02 with the rest.
                        Interlocked.Increment(ref _mismatchedResponses);
                        ClientProxyLog.MismatchedResponse(_logger, message.Uid, message.Operation, pending.Operation);
                        input.AdvanceTo(buffer.Start, buffer.End);
                        return $"response operation {message.Operation} for a {pending.Operation} request";
                    }

                    if (pending is not null)
                    {
                        _inFlight.Remove(message.Uid);
                    }
                }

                if (pending is null)
                {
                    Interlocked.Increment(ref _unknownResponses);
                    ClientProxyLog.UnknownUid(_logger, message.Uid);
                }
                else
                {
                    _slots.Release();
                    Stats.Replies.Increment();
                    pending.Complete(message, wire);
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

    private sealed record LinkWatch(UpstreamLink Link, TransportConnection Connection);
}
