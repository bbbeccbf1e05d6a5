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
/// order, however large the replies: fix of spec 13.4). Once a batch's unflushed replies pass half of
/// Transport:MaxWriteBufferSize the handler flushes and waits for the peer to take them before answering the
/// rest, so a client that pipelines and does not read holds at most MaxReadBufferSize of requests plus about
/// 1.5 x MaxWriteBufferSize and one reply of output (issue 21). Any malformed frame, a foreign protocol level or
/// an ADD shorter than 8 bytes closes this connection only, after flushing the replies already produced
/// (spec 4.3, fix of 13.2). Optional idle and incomplete-request timeouts close stalled peers. No managed
/// allocation per request: the store keeps sessions in its own native slabs.
/// </summary>
internal sealed class CacheServerConnectionHandler(
    SessionStore store, CacheServerStatistics statistics, CacheServerOptions options, TimeProvider clock, ILogger logger) : IConnectionHandler
{
    private static readonly Action<object, ConnectionWait, TimeSpan> s_timedOut = static (state, wait, limit) => ((Session)state).TimedOut(wait, limit);

    // Unflushed reply bytes after which the batch pauses for the peer. Half the pipe's pause threshold: what the
    // transport still holds (under MaxWriteBufferSize once a flush returns) plus this stays near the write limit.
    private readonly int _outputLimit = options.Transport.MaxWriteBufferSize / 2;

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
                while ((end = ProcessBatch(ref buffer, output, session, connection, ref replies)) == BatchEnd.Flush)
                {
                    // Too much output for one flush, or a reply whose final frame must leave in its own write: let
                    // the peer take what there is before producing more (the buffer stays unconsumed meanwhile).
                    var pending = output.FlushAsync();
                    if (!pending.IsCompleted)
                    {
                        timeouts?.Mark(ConnectionWait.Output);
                    }

                    var flushed = await pending.ConfigureAwait(false);
                    answered = true;
                    answeredBefore += replies;
                    replies = 0;
                    if (flushed.IsCompleted)
                    {
                        end = BatchEnd.Close; // the peer is gone
                        break;
                    }

                    if (session.HeldLength > 0)
                    {
                        await Task.Delay(DistCacheProtocol.CPeerSplitPause, clock).ConfigureAwait(false);
                        DistCacheMessageWriter.WriteFinalFrame(output, isResponse: true, session.HeldUid, DistCacheOperation.Get, session.Held.AsSpan(0, session.HeldLength));
                        session.HeldLength = 0;
                        replies = 1;
                        answeredBefore--; // the same reply's final frame: counted once, when it leaves
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
            var status = DistCacheMessageReader.TryRead(buffer, expectResponse: false, out var message, out var error, out var header);
            if (status == OperationStatus.NeedMoreData)
            {
                return BatchEnd.NeedMoreData;
            }

            if (status != OperationStatus.Done)
            {
                ReportProtocolError(connection, error, header);
                return BatchEnd.Close;
            }

            var wire = buffer.Slice(0, message.WireLength);
            // libdistcache never pipelines: a reply with requests queued behind it goes to some other client.
            var alone = buffer.Length == message.WireLength;
            if (!Execute(wire, message, output, session, alone))
            {
                // ADD shorter than its 8-byte prefix: the reference closes silently (spec 5.1 check 0).
                if (connection.Warnings.Allow(nameof(CacheServerLog.AddTooShort)))
                {
                    CacheServerLog.AddTooShort(logger, connection.Id, message.PayloadLength);
                }

                statistics.CountProtocolError(DistCacheProtocolError.None);
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

    private bool Execute(in ReadOnlySequence<byte> wire, in DistCacheMessage message, PipeWriter output, Session session, bool alone)
    {
        ReadOnlySpan<byte> payload;
        var single = message.FrameCount == 1 ? message.SingleFramePayload(wire) : default;
        if (message.FrameCount == 1 && single.IsSingleSegment)
        {
            payload = single.FirstSpan;
        }
        else
        {
            var scratch = session.Scratch;
            message.CopyPayloadTo(wire, scratch);
            payload = scratch.AsSpan(0, message.PayloadLength);
        }

        statistics.BytesIn.Add(payload.Length);
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

        public byte[] Scratch => _scratch ??= ArrayPool<byte>.Shared.Rent(DistCacheProtocol.MaxPayload);

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
