using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace CacheHost.Transport;

/// <summary>
/// What both socket engines share (<see cref="SocketConnection"/>, <see cref="Epoll.EpollSocketConnection"/>): the
/// socket, the input and output pipes built from <see cref="TransportOptions"/>, the endpoints, the first abort
/// reason, the <see cref="ConnectionClosed"/> signal and the send loop. The engines differ only in how bytes move.
/// </summary>
public abstract class PipeSocketConnection : TransportConnection
{
    private readonly DuplexPipe _application;
    private readonly CancellationTokenSource _closed = new();
    private readonly EndPoint? _localEndPoint;
    private readonly EndPoint? _remoteEndPoint;
    private volatile string? _abortReason;
    private int _closedSignalled;

    /// <summary>Builds the pipes and reads the endpoints once (they are gone after a reset).</summary>
    protected PipeSocketConnection(Socket socket, TransportOptions options, ILogger logger)
    {
        Socket = socket;
        Logger = logger;
        InputPipe = new Pipe(options.InputPipeOptions);
        OutputPipe = new Pipe(options.OutputPipeOptions);
        _application = new DuplexPipe(InputPipe.Reader, OutputPipe.Writer);
        _localEndPoint = SafeEndPoint(static s => s.LocalEndPoint, socket);
        _remoteEndPoint = SafeEndPoint(static s => s.RemoteEndPoint, socket);
        if (options.NoDelay && socket.ProtocolType == ProtocolType.Tcp)
        {
            socket.NoDelay = true;
        }
    }

    /// <summary>The underlying socket (for peer credentials and similar options).</summary>
    public Socket Socket { get; }

    /// <inheritdoc />
    public override IDuplexPipe Transport => _application;

    /// <inheritdoc />
    public override EndPoint? LocalEndPoint => _localEndPoint;

    /// <inheritdoc />
    public override EndPoint? RemoteEndPoint => _remoteEndPoint;

    /// <summary>Fires when the peer closes its side (FIN), resets, or the connection is aborted or shut down.</summary>
    public override CancellationToken ConnectionClosed => _closed.Token;

    /// <summary>The transport's logger.</summary>
    protected ILogger Logger { get; }

    /// <summary>Received bytes: the transport writes, the application reads.</summary>
    protected Pipe InputPipe { get; }

    /// <summary>Bytes to send: the application writes, the transport reads.</summary>
    protected Pipe OutputPipe { get; }

    /// <summary>The first reason given to <see cref="TransportConnection.Abort"/>, or null.</summary>
    protected string? AbortReason => _abortReason;

    /// <summary>Keeps the first abort reason (the one reported) and logs the abort.</summary>
    protected void RecordAbort(string reason)
    {
        _abortReason ??= reason;
        TransportLog.ConnectionAborted(Logger, Id, reason);
    }

    /// <summary>Fires <see cref="ConnectionClosed"/> once, on the thread pool.</summary>
    protected void SignalClosed()
    {
        if (Interlocked.Exchange(ref _closedSignalled, 1) != 0)
        {
            return;
        }

        CancelOnThreadPool(_closed);
    }

    /// <summary>
    /// Drains the output pipe into the socket until the application completes it or the connection is aborted,
    /// then shuts the connection down in both directions (none of our protocols half-close). With the output
    /// pipe's inline reader scheduler this runs straight from the application's FlushAsync.
    /// </summary>
    protected async Task SendLoopAsync()
    {
        Exception? error = null;
        var reader = OutputPipe.Reader;
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
                    await SendAsync(buffer).ConfigureAwait(false);
                }

                reader.AdvanceTo(buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception ex)
        {
            error = SendFailed(ex);
        }
        finally
        {
            await reader.CompleteAsync(error).ConfigureAwait(false);
            Shutdown();

            // A receive side waiting on a full input pipe must notice.
            InputPipe.Writer.CancelPendingFlush();
        }
    }

    /// <summary>Sends all of <paramref name="buffer"/>, or throws.</summary>
    protected abstract ValueTask SendAsync(ReadOnlySequence<byte> buffer);

    /// <summary>Logs a send failure and returns the exception the output pipe completes with.</summary>
    protected abstract Exception SendFailed(Exception error);

    /// <summary>Shuts the socket down in both directions, once; later calls do nothing.</summary>
    protected abstract void Shutdown();

    /// <summary>Releases the closed signal (last step of DisposeAsync).</summary>
    protected void DisposeClosedSignal() => _closed.Dispose();

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
