using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

namespace CacheHost.Transport;

/// <summary>
/// A socket with a receive loop feeding the application's input pipe and a send loop draining its output
/// pipe (Kestrel's SocketConnection shape). Backpressure: the receive loop stops reading when the input
/// pipe holds MaxReadBufferSize unconsumed bytes; the application's flush waits when MaxWriteBufferSize
/// bytes are unsent.
/// </summary>
public sealed class SocketConnection : PipeSocketConnection
{
    private const int MinReceiveBufferSize = 4096;

    private readonly SocketSender _sender = new();
    private Task _receiveTask = Task.CompletedTask;
    private Task _sendTask = Task.CompletedTask;
    private int _shutdown;

    private SocketConnection(Socket socket, TransportOptions options, ILogger logger)
        : base(socket, options, logger)
    {
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
    public override void Abort(string reason)
    {
        RecordAbort(reason);
        Shutdown();
        // Wake the send loop even if nothing is buffered.
        OutputPipe.Reader.CancelPendingRead();
    }

    /// <inheritdoc />
    public override async ValueTask DisposeAsync()
    {
        InputPipe.Reader.Complete();
        OutputPipe.Writer.Complete();
        try
        {
            await Task.WhenAll(_receiveTask, _sendTask).ConfigureAwait(false);
        }
        finally
        {
            Shutdown();
            _sender.Dispose();
            DisposeClosedSignal();
        }
    }

    private async Task ReceiveLoopAsync()
    {
        Exception? error = null;
        var writer = InputPipe.Writer;
        try
        {
            while (true)
            {
                var memory = writer.GetMemory(MinReceiveBufferSize);
                var received = await Socket.ReceiveAsync(memory, SocketFlags.None).ConfigureAwait(false);
                if (received == 0)
                {
                    TransportLog.ConnectionReadFin(Logger, Id);
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
            error = AbortReason is null ? new ConnectionResetException(ex.Message, ex) : new ConnectionAbortedException(AbortReason);
            TransportLog.ConnectionReset(Logger, Id, ex.SocketErrorCode);
        }
        catch (ObjectDisposedException)
        {
            error = new ConnectionAbortedException(AbortReason ?? "connection disposed");
        }
        catch (Exception ex)
        {
            error = ex;
            TransportLog.ConnectionError(Logger, Id, ex);
        }
        finally
        {
            await writer.CompleteAsync(error).ConfigureAwait(false);
            // FIN, reset or abort: the peer is gone (or going), so handlers waiting on ConnectionClosed
            // instead of reading learn it now. Pending output is still sent by the send loop.
            SignalClosed();
        }
    }

    /// <inheritdoc />
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected override async ValueTask SendAsync(ReadOnlySequence<byte> buffer) =>
        await _sender.SendAsync(Socket, buffer).ConfigureAwait(false);

    /// <inheritdoc />
    protected override Exception SendFailed(Exception error)
    {
        switch (error)
        {
            case SocketException ex when IsConnectionGone(ex.SocketErrorCode):
                TransportLog.ConnectionReset(Logger, Id, ex.SocketErrorCode);
                return new ConnectionResetException(ex.Message, ex);
            case ObjectDisposedException:
                return new ConnectionAbortedException(AbortReason ?? "connection disposed");
            default:
                TransportLog.ConnectionError(Logger, Id, error);
                return error;
        }
    }

    /// <inheritdoc />
    protected override void Shutdown()
    {
        if (Interlocked.Exchange(ref _shutdown, 1) != 0)
        {
            return;
        }

        try
        {
            Socket.Shutdown(SocketShutdown.Both);
        }
        catch
        {
            // Already reset by the peer; closing below is all that is left.
        }

        Socket.Dispose();
        SignalClosed();
    }

    private static bool IsConnectionGone(SocketError error) => error is SocketError.ConnectionReset
        or SocketError.ConnectionAborted or SocketError.Shutdown or SocketError.OperationAborted
        or SocketError.Interrupted or SocketError.NotConnected;
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
