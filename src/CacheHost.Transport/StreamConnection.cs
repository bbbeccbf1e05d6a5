using System.IO.Pipelines;
using System.Net;

namespace CacheHost.Transport;

/// <summary>
/// A connection over any pair of streams: inherited file descriptors (<c>FD:rd:wr</c>, used with the
/// reference's <c>piper</c> helper), or an authenticated <see cref="System.Net.Security.SslStream"/>.
/// Buffer limits are the same as for sockets.
/// </summary>
public sealed class StreamConnection : TransportConnection
{
    private readonly Stream? _readStream;
    private readonly Stream? _writeStream;
    private readonly DuplexPipe _pipe;
    private readonly CancellationTokenSource _closed = new();
    private readonly EndPoint? _local;
    private readonly EndPoint? _remote;
    private int _aborted;

    /// <summary>Wraps streams; either may be null for a one-directional descriptor pair.</summary>
    public StreamConnection(Stream? readStream, Stream? writeStream, TransportOptions options, EndPoint? local = null, EndPoint? remote = null)
    {
        _readStream = readStream;
        _writeStream = writeStream;
        _local = local;
        _remote = remote;
        var reader = readStream is null
            ? EmptyReader()
            : PipeReader.Create(readStream, new StreamPipeReaderOptions(bufferSize: 16 * 1024, leaveOpen: true));
        var writer = writeStream is null
            ? PipeWriter.Create(Stream.Null)
            : PipeWriter.Create(writeStream, new StreamPipeWriterOptions(leaveOpen: true));
        _ = options;
        _pipe = new DuplexPipe(reader, writer);
    }

    /// <inheritdoc />
    public override IDuplexPipe Transport => _pipe;

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

        _pipe.Input.CancelPendingRead();
        _readStream?.Dispose();
        _writeStream?.Dispose();
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <inheritdoc />
    public override async ValueTask DisposeAsync()
    {
        await _pipe.Input.CompleteAsync().ConfigureAwait(false);
        try
        {
            await _pipe.Output.CompleteAsync().ConfigureAwait(false);
        }
        catch (IOException)
        {
            // The peer went away with data unsent; nothing to do.
        }
        catch (ObjectDisposedException)
        {
        }

        Abort("disposed");
        if (_readStream is not null)
        {
            await _readStream.DisposeAsync().ConfigureAwait(false);
        }

        if (_writeStream is not null && !ReferenceEquals(_writeStream, _readStream))
        {
            await _writeStream.DisposeAsync().ConfigureAwait(false);
        }

        _closed.Dispose();
    }

    private static PipeReader EmptyReader()
    {
        var pipe = new Pipe();
        pipe.Writer.Complete();
        return pipe.Reader;
    }
}
