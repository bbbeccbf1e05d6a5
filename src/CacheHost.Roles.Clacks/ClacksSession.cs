using System.Buffers;
using System.IO.Pipelines;
using CacheHost.Protocols.Clacks;
using CacheHost.Transport;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// One connection's state (clacks §3-4, 7, 10). Everything here is touched only under the server's gate, output
/// included: lines are written straight into the transport's output pipe, and the server flushes every session
/// written to once per gate section (one send per batch of replies, not one per line). A flush completes at once
/// while less than <see cref="TransportOptions.MaxWriteBufferSize"/> waits to be sent. When it does not complete
/// the peer is that far behind; one more line for it drops the connection (the slow-consumer bound), so
/// producers never block on a slow peer and nothing is buffered beyond the transport's limit.
/// </summary>
internal sealed class ClacksSession
{
    private readonly object _gate;
    private readonly PipeWriter _output;
    private readonly List<byte[]> _deferred = [];
    private readonly List<ClacksSession> _written;
    private bool _unflushed;
    private readonly TimeProvider _clock;
    private long _blockedSinceTicks;
    private long _bytesWhileBlocked;
    private bool _outputDone;

    public ClacksSession(TransportConnection connection, object gate, List<ClacksSession> written, long serial, string cid, string host, string port, double now, TimeProvider? clock = null)
    {
        Connection = connection;
        _clock = clock ?? TimeProvider.System;
        _gate = gate;
        _written = written;
        _output = connection.Transport.Output;
        Serial = serial;
        Cid = cid;
        Host = host;
        Port = port;
        AcceptedAt = now;
        LastPing = now;
        LastLinkActivity = now;
        LastSent = now;
    }

    /// <summary>Accept order (also part of the CID).</summary>
    public long Serial { get; }

    /// <summary>Set by the reader while it holds input it has not processed yet (see ClacksServer's intake order).</summary>
    public bool InputInHand { get; set; }

    /// <summary>Set when the peer fell more than MaxWriteBufferSize behind and the connection was dropped.</summary>
    public bool Overflowed { get; private set; }

    public TransportConnection Connection { get; }

    public string Cid { get; }

    public string Host { get; }

    public string Port { get; }

    public double AcceptedAt { get; }

    public string ClientInfo { get; set; } = "UNKNOWN";

    public bool Authenticated { get; set; }

    public bool CanRead { get; set; }

    public bool CanWrite { get; set; }

    public bool CanManage { get; set; }

    public bool CanInterclacks { get; set; }

    /// <summary>Interclacks link mode: receives forwarded commands, PINGs, link timeout (clacks §12).</summary>
    public bool IsLink { get; set; }

    /// <summary>This server's own link to its master (slave side, clacks §12.3).</summary>
    public bool IsMasterLink { get; init; }

    public bool Monitor { get; set; }

    public HashSet<string> Listening { get; } = new(StringComparer.Ordinal);

    /// <summary>Last PING (0 after NOPING: client ping timeout disabled).</summary>
    public double LastPing { get; set; }

    /// <summary>Last PING/KEYSYNC on a link (NOPING does not count, clacks §10).</summary>
    public double LastLinkActivity { get; set; }

    /// <summary>When we last sent PING on this link (0 for non-links).</summary>
    public double LastInterclacksPingSent { get; set; }

    /// <summary>Time of the last queued output, for the NOP keepalive.</summary>
    public double LastSent { get; set; }

    /// <summary>receiver-now minus sender-now from <c>OVERHEAD T</c> (clacks §12.4).</summary>
    public double TimeOffset { get; set; }

    public int UnauthenticatedLines { get; set; }

    /// <summary>Set once the session is being closed: no more lines are processed.</summary>
    public bool Closing { get; private set; }

    /// <summary>Bytes written while the transport had MaxWriteBufferSize unsent (0 while the peer keeps up).</summary>
    public long PendingBytes => _blockedSinceTicks == 0 ? 0 : _bytesWhileBlocked;

    /// <summary>Seconds the current flush has been waiting for the peer (0 when not blocked).</summary>
    public double FlushBlockedSeconds => _blockedSinceTicks == 0 ? 0 : _clock.GetElapsedTime(_blockedSinceTicks).TotalSeconds;

    /// <summary>Completes when the last flush has completed (at once when none is pending).</summary>
    public Task Drained { get; private set; } = Task.CompletedTask;

    /// <summary>Encodes and sends a line (CR LF appended). Under the gate.</summary>
    public void Send(string line, double now) => Send(ClacksWire.EncodeLine(line), now);

    /// <summary>Sends an already encoded line (fan-out encodes once for every recipient). Under the gate.</summary>
    public void Send(byte[] encoded, double now)
    {
        if (Closing)
        {
            return;
        }

        if (_blockedSinceTicks != 0)
        {
            // The transport already holds MaxWriteBufferSize for this peer and it has not taken it.
            _bytesWhileBlocked += encoded.Length;
            Overflowed = true;
            Abort("peer does not read its output");
            return;
        }

        LastSent = now;
        try
        {
            _output.Write(encoded);
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or ObjectDisposedException)
        {
            Abort("write failed");
            return;
        }

        if (!_unflushed)
        {
            _unflushed = true;
            _written.Add(this);
        }
    }

    /// <summary>Flushes what this gate section wrote (called by the server for every session written to). Under the gate.</summary>
    public void FlushWritten()
    {
        if (!_unflushed)
        {
            return;
        }

        _unflushed = false;
        if (Closing && Overflowed)
        {
            return;
        }

        ValueTask<FlushResult> flush;
        try
        {
            flush = _output.FlushAsync();
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or ObjectDisposedException)
        {
            Abort("write failed");
            return;
        }

        if (!flush.IsCompleted)
        {
            _blockedSinceTicks = _clock.GetTimestamp() | 1; // 0 means "not blocked"
            _bytesWhileBlocked = 0;
            Drained = AwaitFlushAsync(flush);
            return;
        }

        if (flush.IsFaulted || flush.IsCanceled || flush.Result.IsCompleted)
        {
            // The transport's sender ended (peer gone); the reader notices and removes the session.
            Connection.Transport.Input.CancelPendingRead();
        }
    }

    private async Task AwaitFlushAsync(ValueTask<FlushResult> flush)
    {
        try
        {
            await flush.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or ObjectDisposedException or OperationCanceledException)
        {
        }

        lock (_gate)
        {
            _blockedSinceTicks = 0;
            _bytesWhileBlocked = 0;
        }
    }

    /// <summary>Queues a line to be sent after the current batch's direct replies (clacks §3.4 ordering quirk Q3).</summary>
    public void SendDeferred(string line)
    {
        if (!Closing)
        {
            _deferred.Add(ClacksWire.EncodeLine(line));
        }
    }

    /// <summary>Sends what <see cref="SendDeferred"/> collected.</summary>
    public void FlushDeferred(double now)
    {
        foreach (var bytes in _deferred)
        {
            Send(bytes, now);
        }

        _deferred.Clear();
    }

    /// <summary>Stops processing; what was written is still sent, then the connection is closed.</summary>
    public void CloseAfterFlush()
    {
        if (Closing)
        {
            return;
        }

        Closing = true;
        _deferred.Clear();
        Connection.Transport.Input.CancelPendingRead();
    }

    /// <summary>Drops the connection now; returns the number of unsent bytes known to be discarded.</summary>
    public long Abort(string reason)
    {
        Closing = true;
        _deferred.Clear();
        var discarded = PendingBytes;
        Connection.Abort(reason);
        return discarded;
    }

    /// <summary>Ends the output side once (the transport sends what is left, then closes). Under the gate.</summary>
    public void CompleteOutput()
    {
        if (_outputDone)
        {
            return;
        }

        _outputDone = true;
        Closing = true;
        FlushWritten();
        try
        {
            _output.Complete();
        }
        catch (InvalidOperationException)
        {
        }
    }

    /// <summary>One CLIENT line of CLIENTLIST (clacks §5.2).</summary>
    public string ClientListLine() =>
        $"CLIENT CID={Cid};HOST={Host};PORT={Port};CLIENTINFO={ClientInfo};OUTBUFFER_LENGTH={PendingBytes};INBUFFER_LENGTH=0;" +
        $"INTERCLACKS={(IsLink ? 1 : 0)};MONITOR={(Monitor ? 1 : 0)};LASTPING={PerlNumber.FormatTime(LastPing)};" +
        $"LASTINTERCLACKSPING={PerlNumber.FormatTime(LastInterclacksPingSent)};WRITEFAILTIME=0;";
}
