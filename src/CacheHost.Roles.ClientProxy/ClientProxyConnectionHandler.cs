using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.ClientProxy;

/// <summary>
/// Serves one local client connection (distcache §10.2): one request at a time — read it, forward it (or answer at
/// once with the empty reply when there is no server link, 10.4), wait for the answer, write it back with the
/// client's own uid, and only then look at the next request. A client that pipelines still gets its replies in
/// order. Malformed frames, a foreign protocol level (13.2) or an ADD shorter than 8 bytes close this connection
/// only; such an ADD is not forwarded, because the server would drop the shared link for it.
/// </summary>
internal sealed class ClientProxyConnectionHandler(UpstreamLink link, ClientProxyOptions options, ClientProxyStatistics stats, TimeProvider clock, ILogger logger) : IConnectionHandler
{
    /// <inheritdoc />
    public async Task HandleAsync(TransportConnection connection, CancellationToken stopping)
    {
        var input = connection.Transport.Input;
        var output = connection.Transport.Output;
        using var pending = new PendingRequest();
        var idleMs = options.IdleMs;
        var lastMark = clock.GetTimestamp();
        try
        {
            while (true)
            {
                ReadResult result;
                CancellationTokenSource? idleTimer = null;
                CancellationTokenRegistration stopIdle = default;
                if (idleMs > 0)
                {
                    var remaining = idleMs - (long)clock.GetElapsedTime(lastMark).TotalMilliseconds;
                    if (remaining <= 0)
                    {
                        stats.IdleClose();
                        ClientProxyLog.IdleClose(logger, connection.Id, idleMs);
                        break;
                    }

                    // A fresh timer per wait (only with -idle): re-arming one timer raced with its own expiry. It runs
                    // on the injected clock; stopping cancels it too (as many allocations as the linked source had).
                    idleTimer = new CancellationTokenSource(TimeSpan.FromMilliseconds(remaining), clock);
                    stopIdle = stopping.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), idleTimer);
                }

                try
                {
                    result = await input.ReadAsync(idleTimer?.Token ?? stopping).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    if (!stopping.IsCancellationRequested)
                    {
                        stats.IdleClose();
                        ClientProxyLog.IdleClose(logger, connection.Id, idleMs);
                    }

                    break;
                }
                finally
                {
                    stopIdle.Dispose();
                    idleTimer?.Dispose();
                }

                var buffer = result.Buffer;
                var status = DistCacheMessageReader.TryRead(buffer, expectResponse: false, out var message, out var error, out var header);
                if (status == OperationStatus.NeedMoreData)
                {
                    input.AdvanceTo(buffer.Start, buffer.End);
                    if (result.IsCompleted || result.IsCanceled)
                    {
                        break;
                    }

                    continue;
                }

                if (status == OperationStatus.InvalidData)
                {
                    if (error == DistCacheProtocolError.ProtocolLevel)
                    {
                        stats.ProtocolLevel();
                        if (connection.Warnings.Allow(nameof(ClientProxyLog.ProtocolIncompatible)))
                        {
                            ClientProxyLog.ProtocolIncompatible(logger, Environment.ProcessId, DistCacheProtocol.ProtocolLevel, header.ProtocolLevel, connection.Id);
                        }
                    }
                    else
                    {
                        stats.MalformedRequest();
                        if (connection.Warnings.Allow(nameof(ClientProxyLog.MalformedRequest)))
                        {
                            ClientProxyLog.MalformedRequest(logger, connection.Id, error);
                        }
                    }

                    input.AdvanceTo(buffer.Start, buffer.End);
                    break;
                }

                var wire = buffer.Slice(0, message.WireLength);
                if (message.Operation == DistCacheOperation.Add && message.PayloadLength < DistCacheProtocol.AddPrefixSize)
                {
                    // The server closes the connection for this (distcache §5.1 check 0); here that would be the shared link.
                    stats.AddTooShortRequest();
                    if (connection.Warnings.Allow(nameof(ClientProxyLog.AddTooShort)))
                    {
                        ClientProxyLog.AddTooShort(logger, connection.Id, message.PayloadLength);
                    }

                    input.AdvanceTo(buffer.Start, buffer.End);
                    break;
                }

                stats.Request(message.Operation, message.WireLength);
                if (message.Operation == DistCacheOperation.Add && options.ServerKind != ClientProxyServerKind.CacheHost
                    && DistCacheProtocol.IsCPeerReadHazard(message.PayloadLength))
                {
                    // An original dc_server reads this ADD across its 4096-byte buffer boundary, answers it three
                    // times and stores it corrupted (distcache §13.1, known-defects D). Refused as 13.1 allows, with
                    // "data length out of range": every client library reports a failed ADD for it.
                    stats.AddRefusal();
                    ClientProxyLog.AddRefused(logger, connection.Id, message.PayloadLength);
                    DistCacheMessageWriter.WriteResult(output, message.Uid, DistCacheOperation.Add, DistCacheResult.AddDataRange);
                    input.AdvanceTo(buffer.GetPosition(message.WireLength));
                    if ((await output.FlushAsync().ConfigureAwait(false)).IsCompleted)
                    {
                        break;
                    }

                    continue;
                }

                var localUid = message.Uid;
                var operation = message.Operation;
                var forwarded = false;
                ValueTask<bool> answer = default;
                if (link.IsConnected)
                {
                    await link.WaitForSlotAsync(stopping).ConfigureAwait(false);

                    // Armed before SubmitAsync publishes it: the upstream reader may answer at once.
                    answer = pending.Arm(localUid, operation);
                    forwarded = await link.SubmitAsync(wire, message, pending).ConfigureAwait(false);
                    if (forwarded)
                    {
                        lastMark = clock.GetTimestamp();
                    }
                    else
                    {
                        link.ReleaseSlot();
                    }
                }

                input.AdvanceTo(buffer.GetPosition(message.WireLength));

                if (!forwarded)
                {
                    // No server link: an immediate empty reply (one frame, data_len 0, distcache §10.4).
                    stats.EmptyAnswer();
                    DistCacheMessageWriter.WriteEmptyResponse(output, localUid, operation);
                }
                else if (await answer.ConfigureAwait(false))
                {
                    var response = pending.Response;
                    if (DistCacheProtocol.IsCPeerReadHazard(response.Length))
                    {
                        // libdistcache (Apache, stunnel) mis-reads this reply when it arrives in one piece (spec
                        // 13.1): its final frame leaves in a write of its own, as from the original server.
                        DistCacheMessageWriter.WriteLeadingFrames(output, isResponse: true, localUid, operation, response);
                        if ((await output.FlushAsync().ConfigureAwait(false)).IsCompleted)
                        {
                            break;
                        }

                        await Task.Delay(DistCacheProtocol.CPeerSplitPause, clock).ConfigureAwait(false);
                        response = pending.Response;
                        DistCacheMessageWriter.WriteFinalFrame(output, isResponse: true, localUid, operation, response[(response.Length - DistCacheProtocol.FinalFrameData(response.Length))..]);
                    }
                    else
                    {
                        DistCacheMessageWriter.Write(output, isResponse: true, localUid, operation, response);
                    }
                }
                else
                {
                    DistCacheMessageWriter.WriteResult(output, localUid, operation, DistCacheResult.Disconnected);
                }

                var flush = await output.FlushAsync().ConfigureAwait(false);
                if (flush.IsCompleted)
                {
                    break; // the client is gone
                }
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
        finally
        {
            await output.CompleteAsync().ConfigureAwait(false);
            await input.CompleteAsync().ConfigureAwait(false);
        }
    }
}
