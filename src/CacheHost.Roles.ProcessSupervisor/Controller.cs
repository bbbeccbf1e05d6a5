using System.Buffers;
using System.Net.Sockets;
using System.Text;
using CacheHost.Protocols.Tsv;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>Controller kinds of daemonproxy §4.1.</summary>
internal enum ControllerKind
{
    Interactive,
    ConfigFile,
    Socket,
    Service,
}

/// <summary>Where a statedump (daemonproxy §9) has got to; it resumes by name so objects changed meanwhile are handled.</summary>
internal sealed class DumpCursor
{
    public int Phase { get; set; }

    public string? Last { get; set; }
}

/// <summary>
/// One command/event connection (daemonproxy §4). Raw non-blocking descriptors, a 1024-byte input buffer framed by
/// <see cref="TsvLineFramer"/>, and a 2048-byte output buffer that only ever holds whole lines, with the
/// overflow rule and write timeouts of daemonproxy §4.4.
/// </summary>
internal sealed unsafe class Controller
{
    /// <summary>Receive buffer: 1023 bytes of command plus its LF (daemonproxy §3.1).</summary>
    public const int InputCapacity = 1024;

    /// <summary>Send buffer per controller (daemonproxy §13).</summary>
    public const int OutputCapacity = 2048;

    /// <summary>Commands pause while more than this is queued (daemonproxy §4.4).</summary>
    public const int CommandThreshold = 1024;

    /// <summary>Received descriptors waiting for their <c>fd.take</c> (daemonproxy §5).</summary>
    public const int MaxReceivedFds = 2;

    private readonly byte[] _in = new byte[InputCapacity];
    private byte[] _out = new byte[OutputCapacity];
    private TsvLineFramer _framer = new(TsvLineFramer.DefaultMaxLineLength);
    private readonly Queue<int> _received = new();
    private int _inLen;
    private int _outLen;
    private bool _closed;

    public Controller(DaemonLog log, int slot, ControllerKind kind, int inFd, int outFd, bool ownsFds, Socket? socket = null)
    {
        Log = log;
        Slot = slot;
        Kind = kind;
        InFd = inFd;
        OutFd = outFd;
        OwnsFds = ownsFds;
        Socket = socket;
        if (slot >= 0)
        {
            Log.Debug($"creating client {slot} with handles {inFd},{outFd}"); // daemonproxy §11 debug texts
        }
    }

    /// <summary>The supervisor log, for the original's per-controller debug and trace lines (daemonproxy §11).</summary>
    public DaemonLog Log { get; }

    public int Slot { get; }

    public ControllerKind Kind { get; }

    /// <summary>Input descriptor, -1 when the controller only receives events.</summary>
    public int InFd { get; private set; }

    /// <summary>Output descriptor, -1 when output is discarded (config file, control.cmd-only services).</summary>
    public int OutFd { get; private set; }

    public bool OwnsFds { get; }

    /// <summary>Keeps an accepted socket object alive; the controller uses its descriptor directly.</summary>
    public Socket? Socket { get; }

    /// <summary>Whether <c>fd.take</c> can work (the input is a socket).</summary>
    public bool CanReceiveFds { get; set; }

    /// <summary>For control.event-only services: no input is read and the connection ends when the peer closes.</summary>
    public bool WatchHangup { get; set; }

    public bool Overflow { get; private set; }

    public long BlockedSinceNs { get; private set; }

    public long LastBlockWarnSec { get; set; } = -1;

    public int ResetTimeout { get; set; } = 15;

    public int CloseTimeout { get; set; } = 30;

    public long SignalMarker { get; set; }

    public DumpCursor? Dump { get; set; }

    public bool InputEof { get; private set; }

    /// <summary>End of input has been acted on (a guarded interactive EOF is handled once).</summary>
    public bool EofHandled { get; set; }

    /// <summary>Set by <c>exit</c>: close once the output is flushed.</summary>
    public bool CloseRequested { get; set; }

    /// <summary>Set when the connection must go (I/O error, EOF handled, timeout).</summary>
    public bool Dead { get; set; }

    public Service? OwnerService { get; set; }

    /// <summary>Host control socket bridge (Supervisor.Host.cs): output is collected here, unlimited, instead of written to a descriptor.</summary>
    public StringBuilder? Capture { get; init; }

    public bool HasOutput => OutFd >= 0 || Capture is not null;

    public int Queued => _outLen;

    public int Unprocessed => _inLen;

    public bool InputFull => _inLen >= InputCapacity;

    /// <summary>Reads what is available (non-blocking). Returns an error text on a read failure.</summary>
    public string? ReadInput()
    {
        if (InFd < 0 || InputEof || WatchHangup || _inLen >= InputCapacity)
        {
            return null;
        }

        nint n;
        fixed (byte* p = _in)
        {
            if (CanReceiveFds)
            {
                n = ReceiveWithRights(p + _inLen, InputCapacity - _inLen);
            }
            else
            {
                n = Libc.read(InFd, p + _inLen, (nuint)(InputCapacity - _inLen));
            }
        }

        if (n > 0)
        {
            _inLen += (int)n;
            if (Log.Enabled(DaemonLogLevel.Trace))
            {
                Log.Trace($"controller[{Slot}] read {n} bytes ({_inLen} in recv buf)");
            }

            return null;
        }

        var errno = n == 0 ? 0 : Libc.Errno;
        // The loop reads every controller on every pass (the original only after select()), so "nothing there
        // yet" is not traced.
        if (errno != Libc.EAGAIN && Log.Enabled(DaemonLogLevel.Trace))
        {
            Log.Trace($"controller[{Slot}] input read failed: {n} {Libc.StrError(errno)}");
        }

        if (n == 0)
        {
            InputEof = true;
            return null;
        }

        if (errno is Libc.EAGAIN or Libc.EINTR)
        {
            return null;
        }

        InputEof = true;
        return Libc.StrError(errno);
    }

    private nint ReceiveWithRights(byte* buffer, int count)
    {
        const int controlSize = 64; // room for a cmsghdr carrying a few ints
        var control = stackalloc byte[controlSize];
        var iov = new Libc.IoVec { Base = buffer, Len = (nuint)count };
        var msg = new Libc.MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = controlSize };
        var n = Libc.recvmsg(InFd, &msg, Libc.MSG_DONTWAIT | Libc.MSG_CMSG_CLOEXEC);
        if (n < 0)
        {
            return n;
        }

        // struct cmsghdr { size_t len; int level; int type; } then the data, 8-byte aligned.
        var offset = 0;
        while (offset + 16 <= (int)msg.ControlLen)
        {
            var len = (int)*(nuint*)(control + offset);
            var level = *(int*)(control + offset + 8);
            var type = *(int*)(control + offset + 12);
            if (len < 16)
            {
                break;
            }

            if (level == Libc.SOL_SOCKET && type == Libc.SCM_RIGHTS)
            {
                for (var p = 16; p + 4 <= len; p += 4)
                {
                    var fd = *(int*)(control + offset + p);
                    if (_received.Count < MaxReceivedFds)
                    {
                        _received.Enqueue(fd);
                    }
                    else
                    {
                        Libc.close(fd);
                    }
                }
            }

            offset += (len + 7) & ~7;
        }

        return n;
    }

    /// <summary>Takes a descriptor received with SCM_RIGHTS, or -1.</summary>
    public int TakeReceivedFd() => _received.Count > 0 ? _received.Dequeue() : -1;

    /// <summary>Frames the next line out of the input buffer.</summary>
    public TsvLineStatus TryReadLine(out string line, out bool overlongIsComment)
    {
        var sequence = new ReadOnlySequence<byte>(_in, 0, _inLen);
        var status = _framer.TryReadLine(ref sequence, out var lineBytes, out overlongIsComment);
        line = status == TsvLineStatus.Line ? Encoding.Latin1.GetString(lineBytes.FirstSpan) : "";
        var consumed = _inLen - (int)sequence.Length;
        if (consumed > 0)
        {
            Buffer.BlockCopy(_in, consumed, _in, 0, _inLen - consumed);
            _inLen -= consumed;
        }

        return status;
    }

    /// <summary>At EOF: the unterminated rest of the input, if any (config files run it, daemonproxy §4.1).</summary>
    public string TakeRemainder()
    {
        var text = Encoding.Latin1.GetString(_in, 0, _inLen);
        _inLen = 0;
        return text;
    }

    /// <summary>
    /// Queues one whole line (daemonproxy §4.4): dropped while in overflow; if it does not fit even after a flush the
    /// controller goes into overflow and the line is dropped.
    /// </summary>
    public void Send(string line, long nowNs)
    {
        if (Capture is not null)
        {
            Capture.Append(line);
            return;
        }

        if (OutFd < 0 || Dead || Overflow)
        {
            return;
        }

        if (_outLen + line.Length > OutputCapacity)
        {
            Flush(nowNs);
            if (OutFd < 0)
            {
                return; // the flush found the peer gone
            }

            if (_outLen + line.Length > OutputCapacity)
            {
                Log.Debug($"client[{Slot}]: can't write msg, {line.Length} > buffer free {OutputCapacity - _outLen}");
                Overflow = true;
                return;
            }
        }

        Append(line);
        if (Log.Enabled(DaemonLogLevel.Debug))
        {
            // The original quotes the event with its LF, which splits the log line; here it stays one line.
            Log.Debug($"client[{Slot}] event: \"{line.AsSpan().TrimEnd('\n')}\"");
        }
    }

    /// <summary>
    /// Queues a statedump chunk if it fits (an oversized chunk is allowed into an empty buffer so a service
    /// with very long fields can still be dumped). False means "try again later".
    /// </summary>
    public bool TrySendChunk(string chunk, long nowNs)
    {
        if (Capture is not null)
        {
            Capture.Append(chunk);
            return true;
        }

        if (OutFd < 0 || Dead || Overflow)
        {
            return true; // discarded like any other output
        }

        if (_outLen + chunk.Length > OutputCapacity && _outLen > 0)
        {
            Flush(nowNs);
            if (_outLen + chunk.Length > OutputCapacity && _outLen > 0)
            {
                return false;
            }
        }

        Append(chunk);
        return true;
    }

    private void Append(string line)
    {
        if (_outLen + line.Length > _out.Length)
        {
            Array.Resize(ref _out, Math.Max(_out.Length * 2, _outLen + line.Length));
        }

        Encoding.Latin1.GetBytes(line, 0, line.Length, _out, _outLen);
        _outLen += line.Length;
    }

    /// <summary>
    /// Writes queued output. A write error (the peer is gone, EPIPE) ends only the output side, as in the
    /// original: input already received, and any still arriving, is read and executed until EOF (issue 14: a
    /// controller's last command must not be lost because its events could not be delivered; the
    /// interactive controller still ends the program at EOF on stdin).
    /// </summary>
    public void Flush(long nowNs)
    {
        if (OutFd < 0 || Dead)
        {
            return;
        }

        while (_outLen > 0)
        {
            nint n;
            fixed (byte* p = _out)
            {
                n = Libc.write(OutFd, p, (nuint)_outLen);
            }

            if (n > 0)
            {
                Buffer.BlockCopy(_out, (int)n, _out, 0, _outLen - (int)n);
                _outLen -= (int)n;
                BlockedSinceNs = 0;
                LastBlockWarnSec = -1;
                if (Log.Enabled(DaemonLogLevel.Trace))
                {
                    Log.Trace($"controller[{Slot}] flushed {n} bytes");
                }

                continue;
            }

            var errno = Libc.Errno;
            if (n < 0 && errno == Libc.EINTR)
            {
                continue;
            }

            if (n < 0 && errno == Libc.EAGAIN)
            {
                if (BlockedSinceNs == 0)
                {
                    BlockedSinceNs = nowNs;
                }

                return;
            }

            Log.Debug($"controller[{Slot}] outbuf write failed: {Libc.StrError(errno)}");
            CloseOutput();
            return;
        }

        BlockedSinceNs = 0;
        if (_out.Length > OutputCapacity)
        {
            _out = new byte[OutputCapacity];
        }

        if (Overflow)
        {
            // The buffer drained after events were dropped: tell the client once (daemonproxy §4.4).
            Overflow = false;
            Append("overflow\n");
            Flush(nowNs);
        }
    }

    /// <summary>Stops all output after a write error; the input side stays (see <see cref="Flush"/>).</summary>
    private void CloseOutput()
    {
        _outLen = 0;
        Overflow = false;
        BlockedSinceNs = 0;
        Dump = null;
        if (OwnsFds && Socket is null && OutFd != InFd)
        {
            Libc.close(OutFd);
        }

        OutFd = -1;
        if (WatchHangup)
        {
            Dead = true; // an event-only controller has nothing left to do
        }
    }

    /// <summary>Reset-timeout rule of daemonproxy §4.4: with a full input buffer, let commands run with output discarded.</summary>
    public void ForceOverflow() => Overflow = true;

    /// <summary>Closes what this controller owns and any received descriptors not taken.</summary>
    public void Close()
    {
        if (Slot >= 0 && !_closed)
        {
            Log.Debug($"destroying client {Slot}");
        }

        _closed = true;
        Dead = true;
        while (_received.Count > 0)
        {
            Libc.close(_received.Dequeue());
        }

        if (Socket is not null)
        {
            Socket.Dispose();
        }
        else if (OwnsFds)
        {
            if (InFd >= 0)
            {
                Libc.close(InFd);
            }

            if (OutFd >= 0 && OutFd != InFd)
            {
                Libc.close(OutFd);
            }
        }

        InFd = -1;
        OutFd = -1;
    }

    /// <summary>Stops reading (interactive EOF while guarded keeps the output side).</summary>
    public void StopInput() => InFd = -1;
}
