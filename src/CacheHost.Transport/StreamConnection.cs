using System.IO.Pipelines;
using System.Net;

namespace CacheHost.Transport;

/// <summary>
/// A connection over any pair of streams: inherited file descriptors (<c>FD:rd:wr</c>, used with the
/// reference's <c>piper</c> helper), or the <see cref="System.Net.Security.SslStream"/> a
/// <see cref="TlsConnectionAdapter"/> puts over another connection. It has the same input and output pipes as a
/// socket connection, built from the same <see cref="TransportOptions"/>: reading from the stream stops while
/// <see cref="TransportOptions.MaxReadBufferSize"/> bytes wait for the protocol, and the protocol's FlushAsync
/// waits while <see cref="TransportOptions.MaxWriteBufferSize"/> bytes wait for the stream. A receive loop and a
/// send loop move the bytes, as the socket engines do.
/// </summary>
public sealed class StreamConnection : TransportConnection
{
    private const int ReadChunk = 16 * 1024;

    // How long DisposeAsync lets each loop finish before giving up on the peer.
    private static readonly TimeSpan DrainLimit = TimeSpan.FromSeconds(5);

    private readonly Stream? _readStream;
    private readonly Stream? _writeStream;
    private readonly TransportConnection? _inner;
    private readonly Pipe _input;
    private readonly Pipe _output;
    private readonly DuplexPipe _application;
    private readonly CancellationTokenSource _closed = new();
    private readonly CancellationTokenRegistration _innerClosed;
    private readonly EndPoint? _local;
    private readonly EndPoint? _remote;
    private readonly Task _receiving;
    private readonly Task _sending;
    private readonly TimeProvider _clock;
    private int _aborted;

    /// <summary>
    /// Wraps streams; either may be null for a one-directional descriptor pair. <paramref name="inner"/> is the
    /// connection the streams run over (an adapter's input), aborted and disposed with this one. The drain limit
    /// of <see cref="DisposeAsync"/> runs on <paramref name="clock"/> (default: the system clock).
    /// </summary>
    public StreamConnection(Stream? readStream, Stream? writeStream, TransportOptions options, EndPoint? local = null, EndPoint? remote = null, TransportConnection? inner = null, TimeProvider? clock = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _clock = clock ?? TimeProvider.System;
        _readStream = readStream;
        _writeStream = writeStream;
        _inner = inner;
        _local = local ?? inner?.LocalEndPoint;
        _remote = remote ?? inner?.RemoteEndPoint;
        _input = new Pipe(options.InputPipeOptions);
        _output = new Pipe(options.OutputPipeOptions);
        _application = new DuplexPipe(_input.Reader, _output.Writer);
        if (inner is not null)
        {
            _innerClosed = inner.ConnectionClosed.Register(static state => ((StreamConnection)state!).SignalClosed(), this);
        }

        _receiving = ReceiveLoopAsync();
        _sending = SendLoopAsync();
    }

    /// <inheritdoc />
    public override IDuplexPipe Transport => _application;

    /// <summary>The connection the streams run over (an adapter's input), or null for plain streams.</summary>
    public TransportConnection? Inner => _inner;

    /// <inheritdoc />
    public override EndPoint? LocalEndPoint => _local;

    /// <inheritdoc />
    public override EndPoint? RemoteEndPoint => _remote;

    /// <inheritdoc />
    public override CancellationToken ConnectionClosed => _closed.Token;

    /// <inheritdoc />
    public override void Abort(string reason)
    {
        if (Interlocked.Exchange(ref _aborted, 1) != 0)
        {
            return;
        }

        if (_inner is not null)
        {
            // The inner connection's end ends the streams over it; disposing an SslStream under a pending
            // read is not safe.
            _inner.Abort(reason);
        }
        else
        {
            _readStream?.Dispose();
            _writeStream?.Dispose();
        }

        _input.Writer.CancelPendingFlush();
        _output.Reader.CancelPendingRead();
        SignalClosed();
    }

    /// <inheritdoc />
    public override async ValueTask DisposeAsync()
    {
        // The application has completed (or abandoned) its ends; the send loop drains what is left and ends.
        await _input.Reader.CompleteAsync().ConfigureAwait(false);
        await _output.Writer.CompleteAsync().ConfigureAwait(false);
        try
        {
            await _sending.WaitAsync(DrainLimit, _clock).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            Abort("peer does not take the last bytes");
        }

        // Stop the receive loop: over a connection by cancelling its read (the inner connection sends what this
        // one wrote before it closes); over descriptors by closing them, as a blocked read(2) cannot be cancelled.
        if (_inner is not null)
        {
            _inner.Transport.Input.CancelPendingRead();
        }
        else
        {
            Abort("disposed");
        }

        try
        {
            await _receiving.WaitAsync(DrainLimit, _clock).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }

        if (_readStream is not null)
        {
            await _readStream.DisposeAsync().ConfigureAwait(false);
        }

        if (_writeStream is not null && !ReferenceEquals(_writeStream, _readStream))
        {
            await _writeStream.DisposeAsync().ConfigureAwait(false);
        }

        await _innerClosed.DisposeAsync().ConfigureAwait(false);
        if (_inner is not null)
        {
            await _inner.DisposeAsync().ConfigureAwait(false);
        }

        SignalClosed();
    }

    private async Task ReceiveLoopAsync()
    {
        // Leave the constructor before the first (possibly synchronous) read.
        await Task.Yield();
        var writer = _input.Writer;
        Exception? error = null;
        try
        {
            if (_readStream is null)
            {
                return;
            }

            while (true)
            {
                var memory = writer.GetMemory(ReadChunk);
                var read = await _readStream.ReadAsync(memory).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                writer.Advance(read);

                // Waits while MaxReadBufferSize bytes are unconsumed: the stream is not read meanwhile.
                var flush = await writer.FlushAsync().ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException or InvalidOperationException
            or System.Net.Sockets.SocketException or System.Security.Authentication.AuthenticationException)
        {
            error = Volatile.Read(ref _aborted) != 0 ? new ConnectionAbortedException("connection aborted") : new ConnectionResetException(ex.Message, ex);
        }
        finally
        {
            await writer.CompleteAsync(error).ConfigureAwait(false);
            SignalClosed();
        }
    }

    private async Task SendLoopAsync()
    {
        var reader = _output.Reader;
        Exception? error = null;
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
                if (_writeStream is not null && !buffer.IsEmpty)
                {
                    foreach (var segment in buffer)
                    {
                        await _writeStream.WriteAsync(segment).ConfigureAwait(false);
                    }

                    await _writeStream.FlushAsync().ConfigureAwait(false);
                }

                reader.AdvanceTo(buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException or InvalidOperationException
            or NotSupportedException or System.Net.Sockets.SocketException)
        {
            error = new ConnectionResetException(ex.Message, ex);
        }
        finally
        {
            await reader.CompleteAsync(error).ConfigureAwait(false);

            // A receive side waiting on a full input pipe must notice.
            _input.Writer.CancelPendingFlush();
            if (error is not null)
            {
                SignalClosed();
            }
        }
    }

    private void SignalClosed() => CancelOnThreadPool(_closed);
}
