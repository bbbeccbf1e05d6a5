using System.Buffers;
using System.IO.Pipelines;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer.Storage;
using CacheHost.Transport;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.CacheServer;

/// <summary>
/// Serves one distcache client connection: parse every complete request in the received batch, write each
/// reply straight into the output pipe, and flush once per batch (pipelined requests are all answered, in
/// order, however large the replies: fix of spec 13.4). Any malformed frame, a foreign protocol level or an
/// ADD shorter than 8 bytes closes this connection only, after flushing the replies already produced
/// (spec 4.3, fix of 13.2). No managed allocation per request: the store keeps sessions in its own native slabs.
/// </summary>
internal sealed class CacheServerConnectionHandler(SessionStore store, CacheServerStatistics statistics, ILogger logger) : IConnectionHandler
{
    /// <inheritdoc />
    public async Task HandleAsync(TransportConnection connection, CancellationToken stopping)
    {
        var input = connection.Transport.Input;
        var output = connection.Transport.Output;
        var session = new Session();
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
                var replies = ProcessBatch(ref buffer, output, session, connection, out var close);
                input.AdvanceTo(buffer.Start, result.Buffer.End);

                if (replies > 0)
                {
                    var flush = await output.FlushAsync().ConfigureAwait(false);
                    if (flush.IsCompleted)
                    {
                        break; // the peer is gone
                    }
                }

                if (close)
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

    /// <summary>Answers every complete request at the start of <paramref name="buffer"/>; leaves the rest in it.</summary>
    private int ProcessBatch(ref ReadOnlySequence<byte> buffer, PipeWriter output, Session session, TransportConnection connection, out bool close)
    {
        var replies = 0;
        close = false;
        while (true)
        {
            var status = DistCacheMessageReader.TryRead(buffer, expectResponse: false, out var message, out var error, out var header);
            if (status == OperationStatus.NeedMoreData)
            {
                return replies;
            }

            if (status != OperationStatus.Done)
            {
                ReportProtocolError(connection, error, header);
                close = true;
                return replies;
            }

            var wire = buffer.Slice(0, message.WireLength);
            if (!Execute(wire, message, output, session))
            {
                // ADD shorter than its 8-byte prefix: the reference closes silently (spec 5.1 check 0).
                if (connection.Warnings.Allow(nameof(CacheServerLog.AddTooShort)))
                {
                    CacheServerLog.AddTooShort(logger, connection.Id, message.PayloadLength);
                }

                statistics.CountProtocolError(DistCacheProtocolError.None);
                close = true;
                return replies;
            }

            replies++;
            buffer = buffer.Slice(message.WireLength);
        }
    }

    private bool Execute(in ReadOnlySequence<byte> wire, in DistCacheMessage message, PipeWriter output, Session session)
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
        switch (message.Operation)
        {
            case DistCacheOperation.Add:
                var add = AddRequest.Parse(payload);
                if (add.Status == AddRequestStatus.TooShort)
                {
                    return false;
                }

                var result = add.Status == AddRequestStatus.Rejected ? add.Rejection : store.Add(add.Id, add.Data, add.TimeoutMs, now);
                if (result != DistCacheResult.Ok)
                {
                    statistics.AddRejections.Increment();
                }

                DistCacheMessageWriter.WriteResult(output, uid, DistCacheOperation.Add, result);
                break;

            case DistCacheOperation.Get:
                var reply = new GetReply(output, uid);
                if (store.TryGet(payload, now, ref reply))
                {
                    statistics.Hits.Increment();
                    statistics.BytesOut.Add(reply.Length);
                }
                else
                {
                    statistics.Misses.Increment();
                    DistCacheMessageWriter.WriteResult(output, uid, DistCacheOperation.Get, DistCacheResult.NotOk);
                }

                break;

            case DistCacheOperation.Remove:
                DistCacheMessageWriter.WriteResult(output, uid, DistCacheOperation.Remove,
                    store.Remove(payload, now) ? DistCacheResult.Ok : DistCacheResult.NotOk);
                break;

            default:
                var present = store.Contains(payload, now);
                (present ? statistics.Hits : statistics.Misses).Increment();
                DistCacheMessageWriter.WriteResult(output, uid, DistCacheOperation.Have, present ? DistCacheResult.Ok : DistCacheResult.NotOk);
                break;
        }

        statistics.CountOperation(message.Operation);
        return true;
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
    private struct GetReply(PipeWriter output, uint uid) : ISessionReader
    {
        public int Length;

        public void Read(ReadOnlySpan<byte> data)
        {
            Length = data.Length;
            DistCacheMessageWriter.Write(output, isResponse: true, uid, DistCacheOperation.Get, data);
        }
    }

    /// <summary>Per-connection state: a reassembly buffer for multi-frame payloads, rented only when needed.</summary>
    private sealed class Session : IDisposable
    {
        private byte[]? _scratch;

        public byte[] Scratch => _scratch ??= ArrayPool<byte>.Shared.Rent(DistCacheProtocol.MaxPayload);

        public void Dispose()
        {
            if (_scratch is not null)
            {
                ArrayPool<byte>.Shared.Return(_scratch);
                _scratch = null;
            }
        }
    }
}
