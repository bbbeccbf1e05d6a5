using CacheHost.Posix;
using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;
using Microsoft.Extensions.Logging;

namespace CacheHost.Transport.Epoll;

/// <summary>
/// A stream socket served by an <see cref="EpollThread"/> instead of the runtime's socket engine; same pipes,
/// limits and semantics as <see cref="SocketConnection"/>.
/// </summary>
/// <remarks>
/// Why it exists: per request the runtime's engine costs a receive that ends in EAGAIN (it reads until the
/// socket is empty), and it registers every socket for EPOLLOUT, so each time a peer reads what we sent our
/// loop is woken for nothing. On this product's workload (small request, small reply) that is two of the five
/// syscalls per request. Here the descriptor is registered edge-triggered for input only: a short read means
/// the socket is empty (a stream socket returns all queued bytes up to the buffer size, and any later arrival
/// raises a new edge), EPOLLOUT is asked for only while a send is blocked, and replies are sent inline with
/// send/sendmsg. The <see cref="Socket"/> object still owns the descriptor (options, credentials, close); its
/// SafeHandle is referenced around every syscall so a concurrent close can never let the number be reused
/// under us. Receiving is serialised by <see cref="_receiveBusy"/>: events arrive on the loop, but a reader
/// that resumes after backpressure, or Abort, may also ask to receive.
/// </remarks>
public sealed class EpollSocketConnection : PipeSocketConnection
{
    private const int MinReceiveBufferSize = 4096;
    private const int MaxReceivesPerEvent = 16;
    private const int MaxIoVecs = 16;
    private const uint ReadInterest = Libc.EPOLLIN | Libc.EPOLLRDHUP | Libc.EPOLLET;

    private readonly SafeSocketHandle _handle;
    private readonly int _fd;
    private readonly TaskCompletionSource _receiveDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly WritableSignal _writable = new();
    private readonly MemoryHandle[] _pins = new MemoryHandle[MaxIoVecs];
    private EpollThread? _thread;
    private Task _sendTask = Task.CompletedTask;
    private int _receiveBusy;
    private int _receiveRequested;
    private int _readToEnd;
    private bool _receivePaused;
    private int _receiveFinished;
    private int _waitingWritable;
    private int _shutdown;
    private int _unregistered;

    private EpollSocketConnection(Socket socket, TransportOptions options, ILogger logger)
        : base(socket, options, logger)
    {
        _handle = socket.SafeHandle;
        _fd = (int)socket.Handle;

        // Sets O_NONBLOCK directly; the runtime's engine never sees this socket.
        socket.Blocking = false;
    }

    /// <summary>The 64-bit epoll data of this connection (set by its loop).</summary>
    internal ulong Token { get; set; }

    /// <summary>Wraps a connected socket that the runtime's socket engine has never seen, and starts serving it.</summary>
    public static EpollSocketConnection Start(Socket socket, TransportOptions options, ILogger logger)
    {
        var connection = new EpollSocketConnection(socket, options, logger);
        var thread = EpollEngine.ThreadFor(options.LoopAffinity);
        connection._thread = thread;
        try
        {
            thread.Register(connection, connection._fd, ReadInterest);
        }
        catch
        {
            socket.Dispose(); // the caller never got a connection to dispose
            throw;
        }

        connection._sendTask = connection.SendLoopAsync();

        // Bytes that arrived before registration raised no edge; look once.
        connection.RequestReceive();
        return connection;
    }

    /// <inheritdoc />
    public override void Abort(string reason)
    {
        RecordAbort(reason);
        Shutdown();
        OutputPipe.Reader.CancelPendingRead();
        WakeWriter(false);
    }

    /// <inheritdoc />
    public override async ValueTask DisposeAsync()
    {
        InputPipe.Reader.Complete();
        OutputPipe.Writer.Complete();
        try
        {
            await _sendTask.ConfigureAwait(false);
            await _receiveDone.Task.ConfigureAwait(false);
        }
        finally
        {
            Shutdown();
            Unregister();
            Socket.Dispose();
            DisposeClosedSignal();
        }
    }

    /// <summary>Readiness reported by the loop (on the loop's thread). Never throws.</summary>
    internal void OnEvents(uint events)
    {
        if ((events & (Libc.EPOLLOUT | Libc.EPOLLERR | Libc.EPOLLHUP)) != 0)
        {
            WakeWriter(true);
        }

        if ((events & (Libc.EPOLLRDHUP | Libc.EPOLLERR | Libc.EPOLLHUP)) != 0)
        {
            // The peer's FIN (or an error) raises no further edge: read on past short reads until recv says so.
            Volatile.Write(ref _readToEnd, 1);
        }

        if ((events & (Libc.EPOLLIN | Libc.EPOLLRDHUP | Libc.EPOLLERR | Libc.EPOLLHUP)) != 0)
        {
            RequestReceive();
        }
    }

    /// <summary>Receives now unless another thread is receiving; then that one goes round once more.</summary>
    private void RequestReceive()
    {
        // Full fences on both flags (Interlocked, not Volatile): a release store followed by a load may be
        // reordered (store-load), and then a request made while the owner was leaving would be lost — the
        // connection would sit on unread bytes with no edge to come (the Dekker pattern).
        Interlocked.Exchange(ref _receiveRequested, 1);
        while (Interlocked.Exchange(ref _receiveBusy, 1) == 0)
        {
            try
            {
                while (Interlocked.Exchange(ref _receiveRequested, 0) == 1)
                {
                    ReceiveAvailable();
                }
            }
            catch (Exception ex)
            {
                FinishReceive(ex);
                TransportLog.ConnectionError(Logger, Id, ex);
            }
            finally
            {
                Interlocked.Exchange(ref _receiveBusy, 0);
            }

            // A request that arrived after the inner loop's last check but before the release.
            if (Volatile.Read(ref _receiveRequested) == 0)
            {
                break;
            }
        }
    }

    private void ReceiveAvailable()
    {
        if (Volatile.Read(ref _receiveFinished) != 0 || _receivePaused)
        {
            return;
        }

        var writer = InputPipe.Writer;
        for (var round = 0; round < MaxReceivesPerEvent; round++)
        {
            var memory = writer.GetMemory(MinReceiveBufferSize);
            var received = Receive(memory.Span, out var errno);
            if (received > 0)
            {
                writer.Advance(received);
                var flush = writer.FlushAsync();
                if (!flush.IsCompleted)
                {
                    // The application has MaxReadBufferSize unread: stop reading until it catches up.
                    _receivePaused = true;
                    _ = ResumeAfterFlushAsync(flush);
                    return;
                }

                var result = flush.Result;
                if (result.IsCompleted || result.IsCanceled)
                {
                    FinishReceive(null); // the application stopped reading
                    return;
                }

                if (received < memory.Length && Volatile.Read(ref _readToEnd) == 0)
                {
                    return; // short read: the socket is empty (see remarks); the next arrival raises an edge
                }

                continue;
            }

            if (received == 0)
            {
                TransportLog.ConnectionReadFin(Logger, Id);
                FinishReceive(null);
                return;
            }

            switch (errno)
            {
                case Libc.EAGAIN:
                    return;
                case Libc.EINTR:
                    continue;
                default:
                    FinishReceive(ErrorFor(errno));
                    return;
            }
        }

        // Still more after MaxReceivesPerEvent buffers: give other connections of this loop a turn, then resume.
        if (EpollEngine.RunAtBatchEnd(static state => ((EpollSocketConnection)state!).RequestReceive(), this))
        {
            return;
        }

        Interlocked.Exchange(ref _receiveRequested, 1);
    }

    private async Task ResumeAfterFlushAsync(ValueTask<FlushResult> flush)
    {
        FlushResult result;
        try
        {
            result = await flush.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            FinishReceive(ex);
            return;
        }

        if (result.IsCompleted || result.IsCanceled)
        {
            FinishReceive(null);
            return;
        }

        // The edge that announced the remaining bytes was consumed while paused: read without waiting for one.
        _receivePaused = false;
        RequestReceive();
    }

    private unsafe int Receive(Span<byte> buffer, out int errno)
    {
        if (!TryReferenceDescriptor())
        {
            errno = Libc.EBADF;
            return -1;
        }

        try
        {
            nint received;
            fixed (byte* p = buffer)
            {
                received = Libc.recv(_fd, p, (nuint)buffer.Length, 0);
            }

            errno = received < 0 ? Marshal.GetLastPInvokeError() : 0;
            return (int)received;
        }
        finally
        {
            _handle.DangerousRelease();
        }
    }

    /// <summary>
    /// Holds the descriptor open (released with DangerousRelease) so a concurrent close cannot free its number
    /// while a syscall uses it; false once the socket is closed.
    /// </summary>
    private bool TryReferenceDescriptor()
    {
        var added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
        }

        return added;
    }

    private void FinishReceive(Exception? error)
    {
        if (Interlocked.Exchange(ref _receiveFinished, 1) != 0)
        {
            return;
        }

        if (error is not null && AbortReason is not null)
        {
            error = new ConnectionAbortedException(AbortReason);
        }

        InputPipe.Writer.Complete(error);

        // FIN, reset or abort: the peer is gone (or going). Pending output is still sent by the send loop.
        SignalClosed();
        _receiveDone.TrySetResult();
    }

    /// <inheritdoc />
    /// <remarks>Synchronous unless the kernel's buffer fills; then waits for EPOLLOUT and goes on.</remarks>
    protected override ValueTask SendAsync(ReadOnlySequence<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            var sent = Send(buffer, out var errno);
            if (sent > 0)
            {
                buffer = buffer.Slice(sent);
                continue;
            }

            switch (errno)
            {
                case Libc.EINTR:
                    continue;
                case Libc.EAGAIN:
                    return SendWhenWritableAsync(buffer);
                default:
                    return ValueTask.FromException(ErrorFor(errno));
            }
        }

        return ValueTask.CompletedTask;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendWhenWritableAsync(ReadOnlySequence<byte> buffer)
    {
        if (!await WaitWritableAsync().ConfigureAwait(false))
        {
            throw new ConnectionAbortedException(AbortReason ?? "connection aborted");
        }

        await SendAsync(buffer).ConfigureAwait(false);
    }

    /// <inheritdoc />
    protected override Exception SendFailed(Exception error)
    {
        switch (error)
        {
            case ConnectionResetException:
                TransportLog.ConnectionReset(Logger, Id, SocketError.ConnectionReset);
                break;
            case ConnectionAbortedException:
                break;
            default:
                TransportLog.ConnectionError(Logger, Id, error);
                break;
        }

        return error;
    }

    /// <summary>One send (single segment) or sendmsg (gathered segments); bytes sent, or -1 with errno.</summary>
    private unsafe int Send(in ReadOnlySequence<byte> buffer, out int errno)
    {
        if (!TryReferenceDescriptor())
        {
            errno = Libc.EBADF;
            return -1;
        }

        try
        {
            nint sent;
            if (buffer.IsSingleSegment)
            {
                fixed (byte* p = buffer.FirstSpan)
                {
                    sent = Libc.send(_fd, p, (nuint)buffer.FirstSpan.Length, Libc.MSG_NOSIGNAL);
                }
            }
            else
            {
                sent = SendGathered(buffer);
            }

            errno = sent < 0 ? Marshal.GetLastPInvokeError() : 0;
            return (int)Math.Min(sent, int.MaxValue);
        }
        finally
        {
            _handle.DangerousRelease();
        }
    }

    private unsafe nint SendGathered(in ReadOnlySequence<byte> buffer)
    {
        var iov = stackalloc Libc.IoVec[MaxIoVecs];
        var count = 0;
        foreach (var segment in buffer)
        {
            if (segment.IsEmpty)
            {
                continue;
            }

            if (count == MaxIoVecs)
            {
                break; // the rest goes with the next call
            }

            _pins[count] = segment.Pin();
            iov[count].Base = _pins[count].Pointer;
            iov[count].Len = (nuint)segment.Length;
            count++;
        }

        try
        {
            var message = default(Libc.MsgHdr);
            message.Iov = iov;
            message.IovLen = (nuint)count;
            return Libc.sendmsg(_fd, &message, Libc.MSG_NOSIGNAL);
        }
        finally
        {
            for (var i = 0; i < count; i++)
            {
                _pins[i].Dispose();
            }
        }
    }

    /// <summary>Asks the loop for EPOLLOUT and waits for it; false when the connection was aborted meanwhile.</summary>
    private ValueTask<bool> WaitWritableAsync()
    {
        var wait = _writable.Arm();
        Interlocked.Exchange(ref _waitingWritable, 1);

        // MOD re-arms the edge: if the socket became writable before this, the event comes at once.
        var errno = _thread!.Modify(_fd, ReadInterest | Libc.EPOLLOUT, Token);
        if (errno != 0 || AbortReason is not null)
        {
            WakeWriter(false);
        }

        return WaitAndDropInterestAsync(wait);
    }

    private async ValueTask<bool> WaitAndDropInterestAsync(ValueTask<bool> wait)
    {
        var writable = await wait.ConfigureAwait(false);

        // Stop the wake-ups for space we no longer wait for.
        _ = _thread!.Modify(_fd, ReadInterest, Token);
        return writable;
    }

    private void WakeWriter(bool writable)
    {
        if (Interlocked.Exchange(ref _waitingWritable, 0) == 1)
        {
            _writable.Set(writable);
        }
    }

    /// <inheritdoc />
    protected override void Shutdown()
    {
        if (Interlocked.Exchange(ref _shutdown, 1) != 0)
        {
            return;
        }

        if (TryReferenceDescriptor())
        {
            // Wakes this loop with EPOLLIN|EPOLLHUP, so the receive side finishes too.
            _ = Libc.shutdown(_fd, Libc.SHUT_RDWR);
            _handle.DangerousRelease();
        }

        // The receive side may already be idle with no edge to come (shutdown of a socket whose peer is gone).
        Volatile.Write(ref _readToEnd, 1);
        RequestReceive();
        SignalClosed();
    }

    private void Unregister()
    {
        if (Interlocked.Exchange(ref _unregistered, 1) != 0 || _thread is null)
        {
            return;
        }

        if (TryReferenceDescriptor())
        {
            _thread.Unregister(this, _fd);
            _handle.DangerousRelease();
        }
    }

    private Exception ErrorFor(int errno)
    {
        if (AbortReason is not null)
        {
            return new ConnectionAbortedException(AbortReason);
        }

        var socketError = Libc.SocketException(errno);
        return errno is Libc.ECONNRESET or Libc.EPIPE or Libc.ECONNABORTED or Libc.ENOTCONN
            or Libc.ETIMEDOUT or Libc.ESHUTDOWN or Libc.EBADF or Libc.EHOSTUNREACH or Libc.ENETUNREACH
            ? new ConnectionResetException(socketError.Message, socketError)
            : socketError;
    }

    /// <summary>The send loop's reusable wait for EPOLLOUT (no allocation per wait).</summary>
    private sealed class WritableSignal : IValueTaskSource<bool>
    {
        private ManualResetValueTaskSourceCore<bool> _core;

        public ValueTask<bool> Arm()
        {
            _core.Reset();
            return new ValueTask<bool>(this, _core.Version);
        }

        public void Set(bool writable) => _core.SetResult(writable);

        public bool GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
            => _core.OnCompleted(continuation, state, token, flags);
    }
}
