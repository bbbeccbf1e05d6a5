using System.Buffers;
using System.Threading.Channels;
using CacheHost.Protocols.Clacks;
using CacheHost.Transport;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// One connection's state (spec 3-4, 7, 10). Mutable fields are only touched under the server's gate;
/// output goes through an unbounded queue drained by <see cref="RunWriterAsync"/>, so producers never
/// block on a slow peer (the peer is dropped when its queue exceeds the configured limit instead).
/// </summary>
internal sealed class ClacksSession
{
    private readonly Channel<byte[]> _output = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });
    private readonly List<byte[]> _deferred = [];
    private long _pendingBytes;
    private long _flushStartedTicks;

    public ClacksSession(TransportConnection connection, string cid, string host, string port, double now)
    {
        Connection = connection;
        Cid = cid;
        Host = host;
        Port = port;
        AcceptedAt = now;
        LastPing = now;
        LastLinkActivity = now;
        LastSent = now;
    }

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

    /// <summary>Interclacks link mode: receives forwarded commands, PINGs, link timeout (spec 12).</summary>
    public bool IsLink { get; set; }

    /// <summary>This server's own link to its master (slave side, spec 12.3).</summary>
    public bool IsMasterLink { get; init; }

    public bool Monitor { get; set; }

    public HashSet<string> Listening { get; } = new(StringComparer.Ordinal);

    /// <summary>Last PING (0 after NOPING: client ping timeout disabled).</summary>
    public double LastPing { get; set; }

    /// <summary>Last PING/KEYSYNC on a link (NOPING does not count, spec 10).</summary>
    public double LastLinkActivity { get; set; }

    /// <summary>When we last sent PING on this link (0 for non-links).</summary>
    public double LastInterclacksPingSent { get; set; }

    /// <summary>Time of the last queued output, for the NOP keepalive.</summary>
    public double LastSent { get; set; }

    /// <summary>receiver-now minus sender-now from <c>OVERHEAD T</c> (spec 12.4).</summary>
    public double TimeOffset { get; set; }

    public int UnauthenticatedLines { get; set; }

    /// <summary>Set once the session is being closed: no more lines are processed.</summary>
    public bool Closing { get; private set; }

    public long PendingBytes => Interlocked.Read(ref _pendingBytes);

    /// <summary>Seconds the current flush has been waiting for the peer (0 when not blocked).</summary>
    public double FlushBlockedSeconds
    {
        get
        {
            var started = Interlocked.Read(ref _flushStartedTicks);
            return started == 0 ? 0 : TimeSpan.FromTicks(Environment.TickCount64 * TimeSpan.TicksPerMillisecond - started).TotalSeconds;
        }
    }

    /// <summary>Queues a line (CR LF appended).</summary>
    public void Send(string line, double now)
    {
        if (Closing)
        {
            return;
        }

        var bytes = ClacksWire.EncodeLine(line);
        Interlocked.Add(ref _pendingBytes, bytes.Length);
        LastSent = now;
        _output.Writer.TryWrite(bytes);
    }

    /// <summary>Queues a line to be sent after the current batch's direct replies (spec 3.4 ordering quirk Q3).</summary>
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
            if (Closing)
            {
                break;
            }

            Interlocked.Add(ref _pendingBytes, bytes.Length);
            LastSent = now;
            _output.Writer.TryWrite(bytes);
        }

        _deferred.Clear();
    }

    /// <summary>Stops processing; queued output is still sent, then the connection is closed.</summary>
    public void CloseAfterFlush()
    {
        if (Closing)
        {
            return;
        }

        Closing = true;
        _deferred.Clear();
        _output.Writer.TryComplete();
        Connection.Transport.Input.CancelPendingRead();
    }

    /// <summary>Drops the connection now; returns the number of unsent bytes discarded.</summary>
    public long Abort(string reason)
    {
        Closing = true;
        _output.Writer.TryComplete();
        var discarded = PendingBytes;
        Connection.Abort(reason);
        return discarded;
    }

    /// <summary>Writes queued lines to the socket until the queue is completed, then ends the output side.</summary>
    public async Task RunWriterAsync()
    {
        var output = Connection.Transport.Output;
        var reader = _output.Reader;
        try
        {
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                long batch = 0;
                while (reader.TryRead(out var bytes))
                {
                    output.Write(bytes);
                    batch += bytes.Length;
                    if (batch > 256 * 1024)
                    {
                        break;
                    }
                }

                Interlocked.Exchange(ref _flushStartedTicks, Environment.TickCount64 * TimeSpan.TicksPerMillisecond);
                var result = await output.FlushAsync().ConfigureAwait(false);
                Interlocked.Exchange(ref _flushStartedTicks, 0);
                Interlocked.Add(ref _pendingBytes, -batch);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }

            await output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException
            or System.Net.Sockets.SocketException or ConnectionResetException or ConnectionAbortedException)
        {
            // The peer is gone; the read side notices too.
        }
        finally
        {
            Connection.Transport.Input.CancelPendingRead();
        }
    }

    /// <summary>One CLIENT line of CLIENTLIST (spec 5.2).</summary>
    public string ClientListLine() =>
        $"CLIENT CID={Cid};HOST={Host};PORT={Port};CLIENTINFO={ClientInfo};OUTBUFFER_LENGTH={PendingBytes};INBUFFER_LENGTH=0;" +
        $"INTERCLACKS={(IsLink ? 1 : 0)};MONITOR={(Monitor ? 1 : 0)};LASTPING={PerlNumber.FormatTime(LastPing)};" +
        $"LASTINTERCLACKSPING={PerlNumber.FormatTime(LastInterclacksPingSent)};WRITEFAILTIME=0;";
}
