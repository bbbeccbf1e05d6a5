using System.Buffers;
using System.IO.Pipelines;
using CacheHost.Core;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer.Storage;
using CacheHost.Transport;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.CacheServer;

/// <summary>
/// Serves one distcache client connection: parse every complete request in the received batch, write each
/// reply straight into the output pipe, and flush once per batch (pipelined requests are all answered, in
/// order, however large the replies: fix of distcache §13.4). Once a batch's unflushed replies pass half of
/// Transport:MaxWriteBufferSize the handler flushes and waits for the peer to take them before answering the
/// rest, so a client that pipelines and does not read holds at most MaxReadBufferSize of requests plus about
/// 1.5 x MaxWriteBufferSize and one reply of output (issue 21). Any malformed frame, a foreign protocol level or
/// an ADD shorter than 8 bytes closes this connection only, after flushing the replies already produced
/// (distcache §4.3, fix of 13.2). Optional idle and incomplete-request timeouts close stalled peers. No managed
/// allocation per request: the store keeps sessions in its own native slabs.
/// <para>The store is an <see cref="ISessionStore"/>. The in-memory <see cref="SessionStore"/> is answered in place
/// through its synchronous methods (the fast path above). Any other store (Redis) is pipelined: every request of
/// the batch, up to <see cref="MaxPipelined"/>, is issued before the first reply is awaited, replies are written
/// in request order and flushed once; a request the store fails is answered 0x02 (docs/session-stores.md).</para>
/// </summary>
internal sealed class CacheServerConnectionHandler(
    ISessionStore store, CacheServerStatistics statistics, CacheServerOptions options, TimeProvider clock, ILogger logger) : IConnectionHandler
{
    /// <summary>
    /// Requests of one connection issued to a remote store before their replies are awaited: bounds what one
    /// pipelining client holds in flight (dc_client's own limit toward its server, distcache §10.2).
    /// </summary>
    internal const int MaxPipelined = 512;

    private static readonly Action<object, ConnectionWait, TimeSpan> s_timedOut = static (state, wait, limit) => ((Session)state).TimedOut(wait, limit);

    // Unflushed reply bytes after which the batch pauses for the peer. Half the pipe's pause threshold: what the
    // transport still holds (under MaxWriteBufferSize once a flush returns) plus this stays near the write limit.
    private readonly int _outputLimit = options.Transport.MaxWriteBufferSize / 2;

    // The memory store's synchronous fast path; null for a store answered through ISessionStore's tasks.
    private readonly SessionStore? _memory = store as SessionStore;

    /// <summary>Why <see cref="ProcessBatch"/> stopped.</summary>
    private enum BatchEnd
    {
        /// <summary>Every complete request is answered; the rest of the buffer is an incomplete one (or nothing).</summary>
        NeedMoreData,

        /// <summary>Flush and wait for the peer, then go on with the same buffer: output limit, or a held final frame.</summary>
        Flush,

        /// <summary>A bad request: flush what was answered and close.</summary>
        Close,
    }

    /// <inheritdoc />
    public async Task HandleAsync(TransportConnection connection, CancellationToken stopping)
    {
        var input = connection.Transport.Input;
        var output = connection.Transport.Output;
        var session = new Session(this, connection);
        var timeouts = session.Timeouts = ConnectionTimeouts.Start(clock, options.IdleTimeout, options.RequestTimeout, s_timedOut, session);
        statistics.ConnectionsAccepted.Increment();
        statistics.ConnectionsOpen.Increment();
        try
        {
            while (true)
            {
                ReadResult result;
                try
                {
                    result = await input.ReadAsync(stopping).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (stopping.IsCancellationRequested)
                {
                    break; // graceful shutdown between batches
                }

                var buffer = result.Buffer;
                var started = RequestLatency.Start(); // server-side latency: batch read to its replies flushed
                var answeredBefore = 0;
                var replies = 0;
                var answered = false;
                BatchEnd end;
                if (_memory is null)
                {
                    SequencePosition consumed;
                    (end, replies, answered, consumed) = await ProcessPipelinedBatchAsync(buffer, output, session, connection).ConfigureAwait(false);
                    buffer = buffer.Slice(consumed);
                }
                else
                {
                    while ((end = ProcessBatch(ref buffer, output, session, connection, ref replies)) == BatchEnd.Flush)
                    {
                        // Too much output for one flush, or a reply whose final frame must leave in its own write: let
                        // the peer take what there is before producing more (the buffer stays unconsumed meanwhile).
                        answered = true;
                        answeredBefore += replies;
                        replies = 0;
                        if (!await FlushPausedAsync(output, session).ConfigureAwait(false))
                        {
                            end = BatchEnd.Close; // the peer is gone
                            break;
                        }

                        if (session.HeldLength > 0)
                        {
                            await WriteHeldFinalFrameAsync(output, session).ConfigureAwait(false);
                            replies = 1;
                            answeredBefore--; // the same reply's final frame: counted once, when it leaves
                        }
                    }
                }

                input.AdvanceTo(buffer.Start, result.Buffer.End);

                // Marked before the replies leave, so a peer that has its reply finds the clock already running.
                var next = buffer.IsEmpty ? ConnectionWait.Idle : ConnectionWait.Request;
                timeouts?.Mark(next, answered || replies > 0);
                if (replies > 0)
                {
                    var pending = output.FlushAsync();
                    var waited = !pending.IsCompleted;
                    if (waited)
                    {
                        timeouts?.Mark(ConnectionWait.Output); // the peer is not taking its replies
                    }

                    var flush = await pending.ConfigureAwait(false);
                    if (flush.IsCompleted)
                    {
                        break; // the peer is gone
                    }

                    if (waited)
                    {
                        timeouts?.Mark(next);
                    }
                }

                statistics.Latency.Record(started, answeredBefore + replies);

                if (end == BatchEnd.Close)
                {
                    break;
                }

                if (result.IsCompleted || result.IsCanceled)
                {
                    if (!buffer.IsEmpty)
                    {
                        CacheServerLog.ClosedMidMessage(logger, connection.Id, buffer.Length);
                    }

                    break;
                }
            }
        }
        finally
        {
            session.Dispose();
            statistics.ConnectionsOpen.Add(-1);
            await output.CompleteAsync().ConfigureAwait(false);
            await input.CompleteAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Answers the complete requests at the start of <paramref name="buffer"/>, leaving the rest in it, until none
    /// is left, the output limit is reached, a reply holds back its final frame, or a request is bad.
    /// </summary>
    private BatchEnd ProcessBatch(ref ReadOnlySequence<byte> buffer, PipeWriter output, Session session, TransportConnection connection, ref int replies)
    {
        while (true)
        {
            var status = NextRequest(buffer, connection, out var message);
            if (status != OperationStatus.Done)
            {
                return status == OperationStatus.NeedMoreData ? BatchEnd.NeedMoreData : BatchEnd.Close;
            }

            var wire = buffer.Slice(0, message.WireLength);
            // libdistcache never pipelines: a reply with requests queued behind it goes to some other client.
            var alone = buffer.Length == message.WireLength;
            if (!Execute(wire, message, output, session, alone))
            {
                ReportAddTooShort(connection, message.PayloadLength);
                return BatchEnd.Close;
            }

            replies++;
            buffer = buffer.Slice(message.WireLength);
            if (session.HeldLength > 0 || output.UnflushedBytes >= _outputLimit)
            {
                return BatchEnd.Flush;
            }
        }
    }

    /// <summary>Reads the next complete request; a bad one is reported (the caller closes the connection).</summary>
    private OperationStatus NextRequest(in ReadOnlySequence<byte> buffer, TransportConnection connection, out DistCacheMessage message)
    {
        var status = DistCacheMessageReader.TryRead(buffer, expectResponse: false, out message, out var error, out var header);
        if (status is not OperationStatus.Done and not OperationStatus.NeedMoreData)
        {
            ReportProtocolError(connection, error, header);
        }

        return status;
    }

    /// <summary>The request's payload: in place when it is one contiguous frame, else reassembled in the scratch buffer.</summary>
    private ReadOnlySpan<byte> Payload(in ReadOnlySequence<byte> wire, in DistCacheMessage message, Session session)
    {
        var single = message.FrameCount == 1 ? message.SingleFramePayload(wire) : default;
        if (message.FrameCount == 1 && single.IsSingleSegment)
        {
            statistics.BytesIn.Add(single.Length);
            return single.FirstSpan;
        }

        var scratch = session.Scratch;
        message.CopyPayloadTo(wire, scratch);
        statistics.BytesIn.Add(message.PayloadLength);
        return scratch.AsSpan(0, message.PayloadLength);
    }

    /// <summary>ADD shorter than its 8-byte prefix: the reference closes silently (distcache §5.1 check 0).</summary>
    private void ReportAddTooShort(TransportConnection connection, int payloadLength)
    {
        if (connection.Warnings.Allow(nameof(CacheServerLog.AddTooShort)))
        {
            CacheServerLog.AddTooShort(logger, connection.Id, payloadLength);
        }

        statistics.CountProtocolError(DistCacheProtocolError.None);
    }

    private bool Execute(in ReadOnlySequence<byte> wire, in DistCacheMessage message, PipeWriter output, Session session, bool alone)
    {
        var store = _memory!;
        var payload = Payload(wire, message, session);
        var now = store.Now;
        var uid = message.Uid;
        bool ok;
        switch (message.Operation)
        {
            case DistCacheOperation.Add:
                var add = AddRequest.Parse(payload);
                if (add.Status == AddRequestStatus.TooShort)
                {
                    return false;
                }

                var result = add.Status == AddRequestStatus.Rejected ? add.Rejection : store.Add(add.Id, add.Data, add.TimeoutMs, now);
                ok = result == DistCacheResult.Ok;
                DistCacheMessageWriter.WriteResult(output, uid, DistCacheOperation.Add, result);
                break;

            case DistCacheOperation.Get:
                var reply = new GetReply(output, uid, session, alone);
                ok = store.TryGet(payload, now, ref reply);
                if (ok)
                {
                    statistics.BytesOut.Add(reply.Length);
                }
                else
                {
                    DistCacheMessageWriter.WriteResult(output, uid, DistCacheOperation.Get, DistCacheResult.NotOk);
                }

                break;

            case DistCacheOperation.Remove:
                ok = store.Remove(payload, now);
                DistCacheMessageWriter.WriteResult(output, uid, DistCacheOperation.Remove, ok ? DistCacheResult.Ok : DistCacheResult.NotOk);
                break;

            default:
                ok = store.Contains(payload, now);
                DistCacheMessageWriter.WriteResult(output, uid, DistCacheOperation.Have, ok ? DistCacheResult.Ok : DistCacheResult.NotOk);
                break;
        }

        statistics.CountOperation(message.Operation, ok);
        return true;
    }

    /// <summary>
    /// Flushes in the middle of a batch (output limit, or a held final frame) and waits for the peer to take it.
    /// False when the peer is gone.
    /// </summary>
    private static async ValueTask<bool> FlushPausedAsync(PipeWriter output, Session session)
    {
        var pending = output.FlushAsync();
        if (!pending.IsCompleted)
        {
            session.Timeouts?.Mark(ConnectionWait.Output);
        }

        var flushed = await pending.ConfigureAwait(false);
        return !flushed.IsCompleted;
    }

    /// <summary>Sends the held final frame of a shaped GET reply after the C peer's pause (distcache §13.1).</summary>
    private async ValueTask WriteHeldFinalFrameAsync(PipeWriter output, Session session)
    {
        await Task.Delay(DistCacheProtocol.CPeerSplitPause, clock).ConfigureAwait(false);
        DistCacheMessageWriter.WriteFinalFrame(output, isResponse: true, session.HeldUid, DistCacheOperation.Get, session.Held.AsSpan(0, session.HeldLength));
        session.HeldLength = 0;
    }

    /// <summary>
    /// The remote store's batch: issues up to <see cref="MaxPipelined"/> requests, then writes their replies in
    /// request order as they complete (pausing for the peer at the output limit or a held final frame, like
    /// <see cref="ProcessBatch"/>), and goes on until the buffer holds no complete request. Returns why it stopped,
    /// the replies not yet flushed, whether any were flushed, and how far the buffer was consumed.
    /// </summary>
    private async ValueTask<(BatchEnd End, int Replies, bool Answered, SequencePosition Consumed)> ProcessPipelinedBatchAsync(
        ReadOnlySequence<byte> buffer, PipeWriter output, Session session, TransportConnection connection)
    {
        var pending = session.Pending;
        var replies = 0;
        var answered = false;
        while (true)
        {
            var end = IssueRequests(ref buffer, session, connection, pending);
            var gone = false;
            try
            {
                foreach (var request in pending)
                {
                    if (gone)
                    {
                        await DiscardAsync(request).ConfigureAwait(false); // nobody to answer; observe the task
                        continue;
                    }

                    await WriteReplyAsync(request, output, session, connection).ConfigureAwait(false);
                    replies++;
                    if (session.HeldLength > 0 || output.UnflushedBytes >= _outputLimit)
                    {
                        answered = true;
                        replies = 0;
                        if (!await FlushPausedAsync(output, session).ConfigureAwait(false))
                        {
                            gone = true;
                            continue;
                        }

                        if (session.HeldLength > 0)
                        {
                            await WriteHeldFinalFrameAsync(output, session).ConfigureAwait(false);
                            replies = 1;
                        }
                    }
                }
            }
            finally
            {
                pending.Clear();
            }

            if (gone)
            {
                return (BatchEnd.Close, 0, true, buffer.Start);
            }

            if (end != BatchEnd.Flush)
            {
                return (end, replies, answered, buffer.Start);
            }
        }
    }

    /// <summary>
    /// Issues the complete requests at the start of <paramref name="buffer"/> to the store (consuming them) until
    /// none is left (<see cref="BatchEnd.NeedMoreData"/>), <see cref="MaxPipelined"/> are pending
    /// (<see cref="BatchEnd.Flush"/>: answer them, then go on) or a request is bad (<see cref="BatchEnd.Close"/>).
    /// </summary>
    private BatchEnd IssueRequests(ref ReadOnlySequence<byte> buffer, Session session, TransportConnection connection, List<PendingRequest> pending)
    {
        while (pending.Count < MaxPipelined)
        {
            var status = NextRequest(buffer, connection, out var message);
            if (status != OperationStatus.Done)
            {
                return status == OperationStatus.NeedMoreData ? BatchEnd.NeedMoreData : BatchEnd.Close;
            }

            var wire = buffer.Slice(0, message.WireLength);
            var request = new PendingRequest { Operation = message.Operation, Uid = message.Uid, Alone = buffer.Length == message.WireLength };
            var payload = Payload(wire, message, session);
            try
            {
                switch (message.Operation)
                {
                    case DistCacheOperation.Add:
                        var add = AddRequest.Parse(payload);
                        if (add.Status == AddRequestStatus.TooShort)
                        {
                            ReportAddTooShort(connection, message.PayloadLength);
                            return BatchEnd.Close;
                        }

                        if (add.Status == AddRequestStatus.Rejected)
                        {
                            request.Rejection = add.Rejection;
                        }
                        else
                        {
                            request.Flag = store.AddAsync(add.Id, add.Data, add.TimeoutMs);
                        }

                        break;

                    case DistCacheOperation.Get:
                        request.Data = store.GetAsync(payload);
                        break;

                    case DistCacheOperation.Remove:
                        request.Flag = store.RemoveAsync(payload);
                        break;

                    default:
                        request.Flag = store.ContainsAsync(payload);
                        break;
                }
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // A store that throws before it has a task fails this request like one whose task faults.
                request.Flag = Task.FromException<bool>(ex);
                request.Data = null;
            }

            pending.Add(request);
            buffer = buffer.Slice(message.WireLength);
        }

        return BatchEnd.Flush;
    }

    /// <summary>Waits for one issued request and writes its reply; a store failure is answered 0x02, counted and logged.</summary>
    private async ValueTask WriteReplyAsync(PendingRequest request, PipeWriter output, Session session, TransportConnection connection)
    {
        var uid = request.Uid;
        var operation = request.Operation;
        DistCacheResult result;
        IMemoryOwner<byte>? data = null;
        try
        {
            result = request.Operation switch
            {
                DistCacheOperation.Add when request.Flag is null => request.Rejection,
                DistCacheOperation.Add => await request.Flag.ConfigureAwait(false) ? DistCacheResult.Ok : DistCacheResult.AddMatchingSession,
                DistCacheOperation.Get when request.Data is not null => (data = await request.Data.ConfigureAwait(false)) is null ? DistCacheResult.NotOk : DistCacheResult.Ok,
                _ => await request.Flag!.ConfigureAwait(false) ? DistCacheResult.Ok : DistCacheResult.NotOk,
            };
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // dc_server itself never fails a request; 0x02 is what a distcache client gets when the server side
            // cannot answer (distcache §5.5, §10.3): every client library reports it as a failed operation.
            statistics.StoreErrors.Increment();
            if (connection.Warnings.Allow(nameof(CacheServerLog.StoreFailed)))
            {
                CacheServerLog.StoreFailed(logger, connection.Id, operation, ex.GetType().Name + ": " + ex.Message);
            }

            DistCacheMessageWriter.WriteResult(output, uid, operation, DistCacheResult.Disconnected);
            statistics.CountOperation(operation, ok: false);
            return;
        }

        switch (operation)
        {
            case DistCacheOperation.Add:
                DistCacheMessageWriter.WriteResult(output, uid, operation, result);
                break;

            case DistCacheOperation.Get when data is not null:
                using (data)
                {
                    var reply = new GetReply(output, uid, session, request.Alone);
                    reply.Read(data.Memory.Span);
                    statistics.BytesOut.Add(reply.Length);
                }

                break;

            case DistCacheOperation.Remove:
                DistCacheMessageWriter.WriteResult(output, uid, operation, result);
                break;

            default: // GET miss, HAVE
                DistCacheMessageWriter.WriteResult(output, uid, operation, result);
                break;
        }

        // OK: ADD stored, GET/HAVE hit, REMOVE removed (the memory path's rule, CacheServerStatistics).
        statistics.CountOperation(operation, result == DistCacheResult.Ok);
    }

    /// <summary>Waits for a request whose peer is gone, releasing what it returns.</summary>
    private static async ValueTask DiscardAsync(PendingRequest request)
    {
        try
        {
            if (request.Data is not null)
            {
                (await request.Data.ConfigureAwait(false))?.Dispose();
            }
            else if (request.Flag is not null)
            {
                await request.Flag.ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The peer that asked is gone: nothing to answer, and the store's own log reports its failures.
        }
    }

    private void CloseTimedOut(TransportConnection connection, ConnectionWait wait, TimeSpan limit)
    {
        statistics.ConnectionsTimedOut.Increment();
        CacheServerLog.TimedOut(logger, connection.Id, wait, limit.TotalSeconds);
        connection.Abort($"{wait} timeout");
    }

    private void ReportProtocolError(TransportConnection connection, DistCacheProtocolError error, FrameHeader header)
    {
        statistics.CountProtocolError(error);
        if (error == DistCacheProtocolError.ProtocolLevel)
        {
            // The reference prints this line and aborts the whole process (13.2); we close this connection only.
            if (connection.Warnings.Allow(nameof(CacheServerLog.ProtocolIncompatible)))
            {
                CacheServerLog.ProtocolIncompatible(logger, Environment.ProcessId, DistCacheProtocol.ProtocolLevel, header.ProtocolLevel, connection.Id);
            }
        }
        else if (connection.Warnings.Allow(nameof(CacheServerLog.MalformedFrame)))
        {
            CacheServerLog.MalformedFrame(logger, connection.Id, error);
        }
    }

    /// <summary>A request issued to a remote store, waiting for its reply (the task that applies to its operation).</summary>
    private struct PendingRequest
    {
        public DistCacheOperation Operation;
        public uint Uid;
        public bool Alone;
        public DistCacheResult Rejection;
        public Task<bool>? Flag;
        public Task<IMemoryOwner<byte>?>? Data;
    }

    /// <summary>Writes a GET's reply straight from the store's memory (no copy of the session in between).</summary>
    private struct GetReply(PipeWriter output, uint uid, Session session, bool alone) : ISessionReader
    {
        public int Length;

        public void Read(ReadOnlySpan<byte> data)
        {
            Length = data.Length;
            // libdistcache never pipelines: a reply with requests queued behind it goes to some other client.
            if (alone && DistCacheProtocol.IsCPeerReadHazard(data.Length))
            {
                // The original libdistcache mis-reads this reply when it arrives in one piece (distcache §13.1):
                // send the final frame in its own write after the others, as the original server's
                // frame-by-frame 4096-byte send buffer does. Copied: the stored data may change meanwhile.
                DistCacheMessageWriter.WriteLeadingFrames(output, isResponse: true, uid, DistCacheOperation.Get, data);
                session.Hold(uid, data[(data.Length - DistCacheProtocol.FinalFrameData(data.Length))..]);
            }
            else
            {
                DistCacheMessageWriter.Write(output, isResponse: true, uid, DistCacheOperation.Get, data);
            }
        }
    }

    /// <summary>
    /// Per-connection state: a reassembly buffer for multi-frame payloads and the held-back final frame of a
    /// shaped reply, both rented only when needed, and the connection's timeouts.
    /// </summary>
    private sealed class Session(CacheServerConnectionHandler handler, TransportConnection connection) : IDisposable
    {
        private byte[]? _scratch;
        private byte[]? _held;
        private List<PendingRequest>? _pending;

        public byte[] Scratch => _scratch ??= ArrayPool<byte>.Shared.Rent(DistCacheProtocol.MaxPayload);

        /// <summary>Requests issued to a remote store and not yet answered (reused batch to batch).</summary>
        public List<PendingRequest> Pending => _pending ??= [];

        public ConnectionTimeouts? Timeouts { get; set; }

        public byte[] Held => _held!;

        public int HeldLength { get; set; }

        public uint HeldUid { get; private set; }

        public void Hold(uint uid, ReadOnlySpan<byte> finalData)
        {
            _held ??= ArrayPool<byte>.Shared.Rent(DistCacheProtocol.MaxFrameData);
            finalData.CopyTo(_held);
            HeldUid = uid;
            HeldLength = finalData.Length;
        }

        public void TimedOut(ConnectionWait wait, TimeSpan limit) => handler.CloseTimedOut(connection, wait, limit);

        public void Dispose()
        {
            Timeouts?.Dispose();
            if (_scratch is not null)
            {
                ArrayPool<byte>.Shared.Return(_scratch);
                _scratch = null;
            }

            if (_held is not null)
            {
                ArrayPool<byte>.Shared.Return(_held);
                _held = null;
            }
        }
    }
}
