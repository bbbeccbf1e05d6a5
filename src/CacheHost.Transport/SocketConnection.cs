using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace CacheHost.Transport;

/// <summary>
/// A socket with a receive loop feeding the application's input pipe and a send loop draining its output
/// pipe (Kestrel's SocketConnection shape). Backpressure: the receive loop stops reading when the input
/// pipe holds MaxReadBufferSize unconsumed bytes; the application's flush waits when MaxWriteBufferSize
/// bytes are unsent.
/// </summary>
public sealed class SocketConnection : TransportConnection
{
    private const int MinReceiveBufferSize = 4096;

    private readonly Socket _socket;
    private readonly Pipe _input;
    private readonly Pipe _output;
    private readonly DuplexPipe _application;
    private readonly SocketSender _sender = new();
    private readonly CancellationTokenSource _closed = new();
    private readonly ILogger _logger;
    private readonly EndPoint? _localEndPoint;
    private readonly EndPoint? _remoteEndPoint;
    private Task _receiveTask = Task.CompletedTask;
    private Task _sendTask = Task.CompletedTask;
    private volatile string? _abortReason;
    private int _shutdown;
    private int _closedSignalled;

    private SocketConnection(Socket socket, TransportOptions options, ILogger logger)
    {
        _socket = socket;
        _logger = logger;
        _input = new Pipe(options.InputPipeOptions);
        _output = new Pipe(options.OutputPipeOptions);
        _application = new DuplexPipe(_input.Reader, _output.Writer);
        _localEndPoint = SafeEndPoint(static s => s.LocalEndPoint, socket);
        _remoteEndPoint = SafeEndPoint(static s => s.RemoteEndPoint, socket);
        if (options.NoDelay && socket.ProtocolType == ProtocolType.Tcp)
        {
            socket.NoDelay = true;
        }
    }

    /// <summary>Wraps a connected socket and starts its transport loops.</summary>
    public static SocketConnection Start(Socket socket, TransportOptions options, ILogger logger)
    {
        var connection = new SocketConnection(socket, options, logger);
        connection._receiveTask = connection.ReceiveLoopAsync();
        connection._sendTask = connection.SendLoopAsync();
        return connection;
    }

    /// <inheritdoc />
    public override IDuplexPipe Transport => _application;

    /// <inheritdoc />
    public override EndPoint? LocalEndPoint => _localEndPoint;

    /// <inheritdoc />
    public override EndPoint? RemoteEndPoint => _remoteEndPoint;

    /// <summary>Fires when the peer closes its side (FIN), resets, or the connection is aborted or shut down.</summary>
    public override CancellationToken ConnectionClosed => _closed.Token;

    /// <summary>The underlying socket (for peer credentials and similar options).</summary>
    public Socket Socket => _socket;

    /// <inheritdoc />
    public override void Abort(string reason)
    {
        _abortReason ??= reason;
        TransportLog.ConnectionAborted(_logger, Id, reason);
        Shutdown();
        // Wake the send loop even if nothing is buffered.
        _output.Reader.CancelPendingRead();
    }

    /// <inheritdoc />
    public override async ValueTask DisposeAsync()
    {
        _input.Reader.Complete();
        _output.Writer.Complete();
        try
        {
            await Task.WhenAll(_receiveTask, _sendTask).ConfigureAwait(false);
        }
        finally
        {
            Shutdown();
            _sender.Dispose();
            _closed.Dispose();
        }
    }

    private async Task ReceiveLoopAsync()
    {
        Exception? error = null;
        var writer = _input.Writer;
        try
        {
            while (true)
            {
                var memory = writer.GetMemory(MinReceiveBufferSize);
                var received = await _socket.ReceiveAsync(memory, SocketFlags.None).ConfigureAwait(false);
                if (received == 0)
                {
                    TransportLog.ConnectionReadFin(_logger, Id);
                    break;
                }

                writer.Advance(received);
                var flush = await writer.FlushAsync().ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    // The application stopped reading.
                    break;
                }
            }
        }
        catch (SocketException ex) when (IsConnectionGone(ex.SocketErrorCode))
        {
            error = _abortReason is null ? new ConnectionResetException(ex.Message, ex) : new ConnectionAbortedException(_abortReason);
            TransportLog.ConnectionReset(_logger, Id, ex.SocketErrorCode);
        }
        catch (ObjectDisposedException)
        {
            error = new ConnectionAbortedException(_abortReason ?? "connection disposed");
        }
        catch (Exception ex)
        {
            error = ex;
            TransportLog.ConnectionError(_logger, Id, ex);
        }
        finally
        {
            await writer.CompleteAsync(error).ConfigureAwait(false);
            // FIN, reset or abort: the peer is gone (or going), so handlers waiting on ConnectionClosed
            // instead of reading learn it now. Pending output is still sent by the send loop.
            SignalClosed();
        }
    }

    private async Task SendLoopAsync()
    {
        Exception? error = null;
        var reader = _output.Reader;
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync().ConfigureAwait(false);
                if (result.IsCanceled)
                {
                    break;
                }

                var buffer = result.Buffer;
                if (!buffer.IsEmpty)
                {
                    await _sender.SendAsync(_socket, buffer).ConfigureAwait(false);
                }

                reader.AdvanceTo(buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (SocketException ex) when (IsConnectionGone(ex.SocketErrorCode))
        {
            TransportLog.ConnectionReset(_logger, Id, ex.SocketErrorCode);
            error = new ConnectionResetException(ex.Message, ex);
        }
        catch (ObjectDisposedException)
        {
            error = new ConnectionAbortedException(_abortReason ?? "connection disposed");
        }
        catch (Exception ex)
        {
            error = ex;
            TransportLog.ConnectionError(_logger, Id, ex);
        }
        finally
        {
            await reader.CompleteAsync(error).ConfigureAwait(false);
            // Output finished: the connection is over in both directions (none of our protocols half-close).
            Shutdown();
            // Make a receive loop blocked on a full input pipe notice.
            _input.Writer.CancelPendingFlush();
        }
    }

    private void Shutdown()
    {
        if (Interlocked.Exchange(ref _shutdown, 1) != 0)
        {
            return;
        }

        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch
        {
            // Already reset by the peer; closing below is all that is left.
        }

        _socket.Dispose();
        SignalClosed();
    }

    private void SignalClosed()
    {
        if (Interlocked.Exchange(ref _closedSignalled, 1) != 0)
        {
            return;
        }

        // Callbacks registered on ConnectionClosed must not run inside the transport loops.
        ThreadPool.UnsafeQueueUserWorkItem(static cts =>
        {
            try
            {
                cts.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }, _closed, preferLocal: false);
    }

    private static bool IsConnectionGone(SocketError error) => error is SocketError.ConnectionReset
        or SocketError.ConnectionAborted or SocketError.Shutdown or SocketError.OperationAborted
        or SocketError.Interrupted or SocketError.NotConnected;

    private static EndPoint? SafeEndPoint(Func<Socket, EndPoint?> get, Socket socket)
    {
        try
        {
            return get(socket);
        }
        catch (SocketException)
        {
            return null;
        }
    }
}

/// <summary>An IDuplexPipe made of two independent halves.</summary>
public sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
{
    /// <inheritdoc />
    public PipeReader Input { get; } = input;

    /// <inheritdoc />
    public PipeWriter Output { get; } = output;
}

/// <summary>The peer reset the connection.</summary>
public sealed class ConnectionResetException(string message, Exception? inner = null) : IOException(message, inner);

/// <summary>The connection was aborted locally.</summary>
public sealed class ConnectionAbortedException(string message) : OperationCanceledException(message);
