using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;
using Microsoft.Extensions.Logging.Abstractions;

namespace CacheHost.Client;

/// <summary>
/// One client connection to a distcache peer (server or proxy) on the shared socket transport (the epoll engine
/// on Linux, see docs/transport.md). Requests are appended to a reusable send buffer and leave in one write
/// (distcache §13.1: whole messages per write keep C peers safe); responses are parsed straight from the transport's
/// input pipe. Several requests may be outstanding (pipelining): append N, <see cref="SendAsync"/>, then
/// <see cref="ReceiveAsync"/> N times. Not thread-safe; <see cref="DistCacheClient"/> adds the locking. No
/// allocation per request once the buffers have grown.
/// </summary>
/// <remarks>
/// Why the transport and not a bare <see cref="System.Net.Sockets.Socket"/>: the runtime's engine reads until
/// EAGAIN and is woken on EPOLLOUT each time the peer drains what we sent, so a request/response costs the client
/// two extra syscalls and a spurious wake-up. Through a proxy (where the answer takes longer) that doubled the
/// load tool's CPU per request and hid the proxy's own cost.
/// </remarks>
public sealed class DistCacheConnection : IDisposable, IAsyncDisposable
{
    private readonly TransportConnection _connection;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly ArrayBufferWriter<byte> _send = new(DistCacheProtocol.MaxMessageWireSize);
    private readonly byte[] _payload = new byte[DistCacheProtocol.MaxPayload];
    private int _payloadLength;
    private int _disposed;

    private DistCacheConnection(TransportConnection connection)
    {
        _connection = connection;
        _input = connection.Transport.Input;
        _output = connection.Transport.Output;
    }

    /// <summary>
    /// Transport settings used when none are given: continuations resume on the thread pool, so code awaiting a
    /// response may block without stalling the socket loop that serves other connections.
    /// </summary>
    public static TransportOptions DefaultTransportOptions => new() { InlineScheduling = false };

    /// <summary>Connects to <paramref name="address"/> (<c>UNIX:/path</c>, <c>IP:host:port</c>, ...).</summary>
    public static ValueTask<DistCacheConnection> ConnectAsync(TransportAddress address, CancellationToken cancellationToken = default) =>
        ConnectAsync(address, transport: null, cancellationToken);

    /// <summary>
    /// Connects with explicit transport settings. <see cref="TransportOptions.InlineScheduling"/> = true resumes
    /// the awaiting code on the socket loop itself (cheapest; only for code that never blocks, like the load tool).
    /// </summary>
    public static ValueTask<DistCacheConnection> ConnectAsync(TransportAddress address, TransportOptions? transport, CancellationToken cancellationToken = default) =>
        ConnectAsync(address, transport, tls: null, cancellationToken);

    /// <summary>
    /// Connects and, with <paramref name="tls"/> (a client-side <see cref="TlsContext"/>: CA, client certificate for
    /// mutual TLS), runs the TLS handshake before the first request; a failed handshake throws and leaves nothing open.
    /// </summary>
    public static async ValueTask<DistCacheConnection> ConnectAsync(TransportAddress address, TransportOptions? transport, TlsContext? tls, CancellationToken cancellationToken = default)
    {
        var options = transport ?? DefaultTransportOptions;
        var connection = await OutboundConnector.ConnectAsync(address, options, NullLogger.Instance, tls?.CreateClientAdapter(address, options), cancellationToken).ConfigureAwait(false);
        return new DistCacheConnection(connection);
    }

    /// <summary>Payload of the last response read by <see cref="ReceiveAsync"/>.</summary>
    public ReadOnlySpan<byte> Payload => _payload.AsSpan(0, _payloadLength);

    /// <summary>Bytes appended but not yet sent.</summary>
    public int PendingBytes => _send.WrittenCount;

    /// <summary>Appends a request whose payload is <paramref name="payload"/>.</summary>
    public void AppendRequest(uint uid, DistCacheOperation operation, ReadOnlySpan<byte> payload) =>
        DistCacheMessageWriter.Write(_send, isResponse: false, uid, operation, payload);

    /// <summary>Appends an ADD request (timeout in milliseconds, distcache §5.1 and §13.6).</summary>
    public void AppendAdd(uint uid, ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint timeoutMs)
    {
        if (DistCacheProtocol.AddPrefixSize + id.Length + data.Length > DistCacheProtocol.MaxPayload)
        {
            throw new ArgumentException($"id and data exceed the {DistCacheProtocol.MaxPayload}-byte payload limit", nameof(data));
        }

        var length = AddRequest.Write(_payload, timeoutMs, id, data);
        AppendRequest(uid, DistCacheOperation.Add, _payload.AsSpan(0, length));
    }

    /// <summary>
    /// Sends everything appended so far in one write. Throws <see cref="IOException"/> when the connection is
    /// gone (the peer closed or reset it).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SendAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        _output.Write(_send.WrittenSpan);
        _send.ResetWrittenCount();
        var flush = await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (flush.IsCompleted)
        {
            throw new IOException("the distcache peer closed the connection");
        }

        if (flush.IsCanceled)
        {
            throw new OperationCanceledException(cancellationToken);
        }
    }

    /// <summary>Discards appended, unsent requests.</summary>
    public void ClearPending() => _send.ResetWrittenCount();

    /// <summary>
    /// Reads the next response message. Returns its uid and operation; the payload is in <see cref="Payload"/>.
    /// Throws <see cref="IOException"/> when the peer closes and <see cref="InvalidDataException"/> on a framing
    /// error (distcache §4.2; a foreign protocol level closes only this connection, 13.2).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<(uint Uid, DistCacheOperation Operation)> ReceiveAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        while (true)
        {
            var result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var status = DistCacheMessageReader.TryRead(buffer, expectResponse: true, out var message, out var error, out var header);
            if (status == OperationStatus.Done)
            {
                var frames = buffer.Slice(0, message.WireLength);
                message.CopyPayloadTo(frames, _payload);
                _payloadLength = message.PayloadLength;
                _input.AdvanceTo(frames.End);
                return (message.Uid, message.Operation);
            }

            _input.AdvanceTo(buffer.Start, buffer.End);
            if (status == OperationStatus.InvalidData)
            {
                throw new InvalidDataException(error == DistCacheProtocolError.ProtocolLevel
                    ? $"protocol incompatibility; my level is {DistCacheProtocol.ProtocolLevel:x8}, the peer's is {header.ProtocolLevel:x8}"
                    : $"malformed distcache response: {error}");
            }

            if (result.IsCanceled)
            {
                throw new OperationCanceledException(cancellationToken);
            }

            if (result.IsCompleted)
            {
                throw new IOException(buffer.IsEmpty
                    ? "the distcache peer closed the connection"
                    : "the distcache peer closed the connection in the middle of a response");
            }
        }
    }

    /// <summary>
    /// Closes the connection without waiting: unsent requests are dropped and the socket is released once the
    /// transport has stopped (never blocks, so it is safe on a socket loop).
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _ = _connection.AbortAndReleaseAsync("closed by the client");
        }
    }

    /// <summary>Closes the connection and waits until the socket is released.</summary>
    public ValueTask DisposeAsync() =>
        Interlocked.Exchange(ref _disposed, 1) == 0 ? new ValueTask(_connection.AbortAndReleaseAsync("closed by the client")) : ValueTask.CompletedTask;
}
