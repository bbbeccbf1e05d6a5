using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using CacheHost.Core;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.Snoop;

/// <summary>
/// One client/server pair (distcache §12): connect to the server for the accepted client, then forward whole frames
/// unchanged in both directions, logging one line per frame. Like the reference, only data_len is checked
/// (<= 2048); a bad frame is logged and closes the pair. When the client side ends first, replies to requests
/// already forwarded are still delivered (up to DrainTimeout) before the pair closes, so a client sees exactly
/// what it would see talking to the server directly.
/// </summary>
internal sealed class SnoopConnectionHandler(SnoopOptions options, TimeProvider clock, ILogger logger) : IConnectionHandler
{
    private static readonly Action<object, ConnectionWait, TimeSpan> s_timedOut = static (state, wait, limit) => ((PairState)state).TimedOut(wait, limit);

    private const string ClientToServer = "client->server";
    private const string ServerToClient = "server->client";

    // How often the drain after the client's end looks at the outstanding count. A poll for an event, so real
    // time; the drain limit itself (DrainTimeout) is on the injected clock.
    private static readonly TimeSpan DrainPoll = TimeSpan.FromMilliseconds(5);

    private readonly TransportAddress _server = TransportAddress.Parse(options.Server!);
    private readonly bool _stderr = options.FrameOutput == LineOutput.Stderr;
    private long _connections = -1;
    private long _open;
    private long _connectFailures;
    private long _decodeErrors;
    private long _timedOut;

    /// <summary>TLS of the server connections (ServerTls), or null for plain TCP as dc_snoop.</summary>
    public TlsContext? ServerTls { get; set; }

    /// <summary>Pairs accepted so far.</summary>
    public long Accepted => Interlocked.Read(ref _connections) + 1;

    /// <summary>Pairs with a live server connection now.</summary>
    public long Open => Interlocked.Read(ref _open);

    /// <summary>Clients dropped because the server could not be reached.</summary>
    public long ConnectFailures => Interlocked.Read(ref _connectFailures);

    /// <summary>Frames with an illegal data_len (each closes its pair).</summary>
    public long DecodeErrors => Interlocked.Read(ref _decodeErrors);

    /// <summary>Pairs closed by IdleTimeout or RequestTimeout.</summary>
    public long TimedOut => Interlocked.Read(ref _timedOut);

    /// <summary>Frames forwarded client->server and server->client.</summary>
    public StripedCounter FramesToServer { get; } = new();

    public StripedCounter FramesToClient { get; } = new();

    /// <summary>Bytes of whole frames forwarded in each direction.</summary>
    public StripedCounter BytesToServer { get; } = new();

    public StripedCounter BytesToClient { get; } = new();

    /// <inheritdoc />
    public async Task HandleAsync(TransportConnection client, CancellationToken stopping)
    {
        var number = Interlocked.Increment(ref _connections);
        TransportConnection server;
        try
        {
            using var connectLimit = new CancellationTokenSource(options.ConnectTimeout, clock);
            using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(stopping, connectLimit.Token);
            server = await OutboundConnector.ConnectAsync(_server, options.ServerTransport, logger, ServerTls?.CreateClientAdapter(_server, options.ServerTransport), connectTimeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !stopping.IsCancellationRequested)
        {
            Interlocked.Increment(ref _connectFailures);
            if (client.Warnings.Allow(nameof(SnoopLog.ServerConnectFailed)))
            {
                SnoopLog.ServerConnectFailed(logger, number, _server.Text, ex.Message);
            }

            await client.Transport.Output.CompleteAsync().ConfigureAwait(false);
            await client.Transport.Input.CompleteAsync().ConfigureAwait(false);
            return;
        }

        Interlocked.Increment(ref _open);
        var pair = new PairState(this, client, number);
        pair.Timeouts = ConnectionTimeouts.Start(clock, options.IdleTimeout, options.RequestTimeout, s_timedOut, pair);
        using var pairDone = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        var upstream = PumpAsync(client.Transport.Input, server.Transport.Output, number, ClientToServer, pair, pairDone.Token);
        var downstream = PumpAsync(server.Transport.Input, client.Transport.Output, number, ServerToClient, pair, pairDone.Token);
        try
        {
            var first = await Task.WhenAny(upstream, downstream).ConfigureAwait(false);
            if (first == upstream && !stopping.IsCancellationRequested)
            {
                // The client stopped sending (or sent a bad frame): let the server answer what it already got.
                var drainStart = clock.GetTimestamp();
                while (pair.Outstanding > 0 && !downstream.IsCompleted && clock.GetElapsedTime(drainStart) < options.DrainTimeout)
                {
                    await Task.WhenAny(downstream, Task.Delay(DrainPoll, stopping)).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
        finally
        {
            // Either side closing closes both.
            pairDone.Cancel();
            await Task.WhenAll(upstream, downstream).ConfigureAwait(false);
            await client.Transport.Output.CompleteAsync().ConfigureAwait(false);
            await client.Transport.Input.CompleteAsync().ConfigureAwait(false);
            await server.Transport.Output.CompleteAsync().ConfigureAwait(false);
            await server.Transport.Input.CompleteAsync().ConfigureAwait(false);
            await server.DisposeAsync().ConfigureAwait(false);
            pair.Timeouts?.Dispose();
            Interlocked.Decrement(ref _open);
        }
    }

    /// <summary>
    /// Forwards complete frames from <paramref name="source"/> to <paramref name="destination"/>, one flush per batch;
    /// a batch whose unflushed output passes half the destination's MaxWriteBufferSize is flushed and the peer
    /// awaited before the rest is forwarded (issue 21: a client that pipelines and never reads holds bounded memory).
    /// </summary>
    private async Task PumpAsync(PipeReader source, PipeWriter destination, long number, string direction, PairState pair, CancellationToken done)
    {
        var requests = direction == ClientToServer;
        var limit = (requests ? options.ServerTransport : options.Transport).MaxWriteBufferSize / 2;
        var frames = new FrameCursor();
        try
        {
            while (true)
            {
                var result = await source.ReadAsync(done).ConfigureAwait(false);
                var buffer = result.Buffer;
                var forwarded = 0;
                var progressed = false;
                Forward end;
                while ((end = ForwardFrames(ref buffer, destination, number, direction, pair, requests, limit, ref frames, ref forwarded)) == Forward.Flush)
                {
                    // Output limit, or a final frame C readers must get in its own write: let the peer take what
                    // there is first (the source buffer stays unconsumed meanwhile, so reading pauses too).
                    pair.Timeouts?.Mark(pair.Waiting(ConnectionWait.Output, requests));
                    var partial = await destination.FlushAsync(done).ConfigureAwait(false);
                    progressed = true;
                    forwarded = 0;
                    if (partial.IsCompleted || partial.IsCanceled)
                    {
                        source.AdvanceTo(buffer.Start, buffer.End);
                        return;
                    }

                    if (frames.Separated)
                    {
                        await Task.Delay(DistCacheProtocol.CPeerSplitPause, clock, done).ConfigureAwait(false);
                    }
                }

                source.AdvanceTo(buffer.Start, buffer.End);
                if (forwarded > 0)
                {
                    pair.Timeouts?.Mark(pair.Waiting(ConnectionWait.Output, requests));
                    var flush = await destination.FlushAsync(done).ConfigureAwait(false);
                    progressed = true;
                    if (flush.IsCompleted || flush.IsCanceled)
                    {
                        return;
                    }
                }

                // The client's side decides whether a request is pending; the server's side only shows progress
                // (a reply to an earlier request must not turn a half frame behind it into an idle wait).
                if (requests)
                {
                    pair.RequestPending = !buffer.IsEmpty;
                }

                pair.Timeouts?.Mark(pair.Waiting(ConnectionWait.Idle, requests), progressed);
                if (end == Forward.Bad || result.IsCompleted || result.IsCanceled)
                {
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (done.IsCancellationRequested)
        {
        }
        catch (Exception ex) when (ex is IOException or ConnectionResetException or ConnectionAbortedException or InvalidOperationException)
        {
            // The other side is gone; the pair closes.
        }
    }

    /// <summary>Why <see cref="ForwardFrames"/> stopped.</summary>
    private enum Forward
    {
        NeedMoreData,
        Flush,
        Bad,
    }

    /// <summary>
    /// Forwards complete frames at the start of <paramref name="buffer"/> and logs them, leaving the rest, until
    /// the output limit is reached or the next frame must start a new write.
    /// </summary>
    private Forward ForwardFrames(ref ReadOnlySequence<byte> buffer, PipeWriter destination, long number, string direction, PairState pair, bool requests,
        int limit, ref FrameCursor frames, ref int forwarded)
    {
        Span<byte> header = stackalloc byte[DistCacheProtocol.HeaderSize];
        while (buffer.Length >= DistCacheProtocol.HeaderSize)
        {
            buffer.Slice(0, DistCacheProtocol.HeaderSize).CopyTo(header);
            var dataLength = BinaryPrimitives.ReadUInt16BigEndian(header[12..]);
            if (dataLength > DistCacheProtocol.MaxFrameData)
            {
                Interlocked.Increment(ref _decodeErrors);
                if (_stderr)
                {
                    WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"SNOOP_DBG_MSG: connection {number}, {direction}, message has illegal 'data_len' ({dataLength})"));
                    // Not a placeholder: dc_snoop prints exactly this line (distcache §12); kept for log compatibility.
                    WriteLine($"[TODO: change me] {direction} error");
                }
                else if (pair.Warnings.Allow(nameof(SnoopLog.IllegalDataLength)))
                {
                    SnoopLog.IllegalDataLength(logger, number, direction, dataLength);
                    SnoopLog.DirectionError(logger, direction);
                }

                return Forward.Bad;
            }

            var frameLength = DistCacheProtocol.HeaderSize + dataLength;
            if (buffer.Length < frameLength)
            {
                break;
            }

            var complete = header[11] == 1;
            if (complete && frames.Continued && !frames.Separated && forwarded > 0
                && DistCacheProtocol.IsCPeerReadHazard(DistCacheProtocol.MaxFrameData + dataLength))
            {
                // The final frame of a message C readers mis-read in one piece (distcache §13.1): our server sends it in
                // a write of its own; keep it that way instead of joining it with the frames before.
                frames.Separated = true;
                return Forward.Flush;
            }

            if (options.LogFrames)
            {
                var uid = BinaryPrimitives.ReadUInt32BigEndian(header[5..]);
                if (_stderr)
                {
                    WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"SNOOP_DBG_MSG: connection {number}, {direction}, message completed (request_uid = {uid}), total_len={frameLength}"));
                }
                else
                {
                    SnoopLog.Frame(logger, number, direction, uid, frameLength);
                }
            }

            if (complete)
            {
                pair.CountMessage(requests);
            }

            foreach (var segment in buffer.Slice(0, frameLength))
            {
                destination.Write(segment.Span);
            }

            (requests ? FramesToServer : FramesToClient).Increment();
            (requests ? BytesToServer : BytesToClient).Add(frameLength);
            forwarded++;
            frames.Continued = !complete;
            frames.Separated = false;
            buffer = buffer.Slice(frameLength);
            if (destination.UnflushedBytes >= limit)
            {
                return Forward.Flush;
            }
        }

        return Forward.NeedMoreData;
    }

    private static void WriteLine(string line)
    {
        // Console.Error is synchronised and flushes each line, as the reference's fprintf(stderr) does.
        Console.Error.WriteLine(line);
    }

    private void CloseTimedOut(TransportConnection client, long number, ConnectionWait wait, TimeSpan limit)
    {
        Interlocked.Increment(ref _timedOut);
        SnoopLog.TimedOut(logger, number, wait, limit.TotalSeconds);
        client.Abort($"{wait} timeout");
    }

    /// <summary>Where a direction's stream stands between frames: inside a multi-frame message, and whether its final frame was split off.</summary>
    private struct FrameCursor
    {
        public bool Continued;
        public bool Separated;
    }

    /// <summary>Requests and responses seen complete on one pair, to know whether replies are still due; the pair's timeouts.</summary>
    private sealed class PairState(SnoopConnectionHandler handler, TransportConnection client, long number)
    {
        /// <summary>The client listener's warning rate limit (the decode warnings of both directions count there).</summary>
        public LogRateLimiter Warnings => client.Warnings;

        private long _requests;
        private long _responses;

        public ConnectionTimeouts? Timeouts { get; set; }

        /// <summary>The client side holds part of a frame (set by the client->server pump only).</summary>
        public bool RequestPending { get; set; }

        /// <summary>What the pair waits for: <paramref name="wait"/>, unless the server side reports while a request is pending.</summary>
        public ConnectionWait Waiting(ConnectionWait wait, bool clientSide) => !clientSide && RequestPending ? ConnectionWait.Request : wait;

        public long Outstanding => Interlocked.Read(ref _requests) - Interlocked.Read(ref _responses);

        public void CountMessage(bool request)
        {
            if (request)
            {
                Interlocked.Increment(ref _requests);
            }
            else
            {
                Interlocked.Increment(ref _responses);
            }
        }

        public void TimedOut(ConnectionWait wait, TimeSpan limit) => handler.CloseTimedOut(client, number, wait, limit);
    }
}
