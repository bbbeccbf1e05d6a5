using System.Runtime.CompilerServices;
using System.Buffers;
using System.Net.Sockets;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;

namespace CacheHost.Client;

/// <summary>
/// One client connection to a distcache peer (server or proxy) over a raw socket. Requests are appended to a
/// reusable send buffer and leave in one write (spec 13.1: whole messages per write keep C peers safe);
/// responses are read in order into a reusable receive buffer. Several requests may be outstanding
/// (pipelining): append N, <see cref="SendAsync"/>, then <see cref="ReceiveAsync"/> N times. Not thread-safe;
/// <see cref="DistCacheClient"/> adds the locking. No allocation per request once the buffers have grown.
/// </summary>
public sealed class DistCacheConnection : IDisposable
{
    private readonly Socket _socket;
    private readonly ArrayBufferWriter<byte> _send = new(DistCacheProtocol.MaxMessageWireSize);
    private readonly byte[] _payload = new byte[DistCacheProtocol.MaxPayload];
    private byte[] _receive = new byte[2 * DistCacheProtocol.MaxMessageWireSize];
    private int _receiveStart;
    private int _receiveEnd;
    private int _payloadLength;

    private DistCacheConnection(Socket socket)
    {
        _socket = socket;
    }

    /// <summary>Connects to <paramref name="address"/> (<c>UNIX:/path</c>, <c>IP:host:port</c>, ...).</summary>
    public static async ValueTask<DistCacheConnection> ConnectAsync(TransportAddress address, CancellationToken cancellationToken = default)
    {
        var socket = await OutboundConnector.ConnectSocketAsync(address, cancellationToken).ConfigureAwait(false);
        return new DistCacheConnection(socket);
    }

    /// <summary>Payload of the last response read by <see cref="ReceiveAsync"/>.</summary>
    public ReadOnlySpan<byte> Payload => _payload.AsSpan(0, _payloadLength);

    /// <summary>Bytes appended but not yet sent.</summary>
    public int PendingBytes => _send.WrittenCount;

    /// <summary>Appends a request whose payload is <paramref name="payload"/>.</summary>
    public void AppendRequest(uint uid, DistCacheOperation operation, ReadOnlySpan<byte> payload) =>
        DistCacheMessageWriter.Write(_send, isResponse: false, uid, operation, payload);

    /// <summary>Appends an ADD request (timeout in milliseconds, spec 5.1 and 13.6).</summary>
    public void AppendAdd(uint uid, ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint timeoutMs)
    {
        if (DistCacheProtocol.AddPrefixSize + id.Length + data.Length > DistCacheProtocol.MaxPayload)
        {
            throw new ArgumentException($"id and data exceed the {DistCacheProtocol.MaxPayload}-byte payload limit", nameof(data));
        }

        var length = AddRequest.Write(_payload, timeoutMs, id, data);
        AppendRequest(uid, DistCacheOperation.Add, _payload.AsSpan(0, length));
    }

    /// <summary>Sends everything appended so far in one write.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SendAsync(CancellationToken cancellationToken = default)
    {
        var memory = _send.WrittenMemory;
        while (!memory.IsEmpty)
        {
            var sent = await _socket.SendAsync(memory, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            memory = memory[sent..];
        }

        _send.ResetWrittenCount();
    }

    /// <summary>Discards appended, unsent requests.</summary>
    public void ClearPending() => _send.ResetWrittenCount();

    /// <summary>
    /// Reads the next response message. Returns its uid and operation; the payload is in <see cref="Payload"/>.
    /// Throws <see cref="IOException"/> when the peer closes and <see cref="InvalidDataException"/> on a framing
    /// error (spec 4.2; a foreign protocol level closes only this connection, 13.2).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<(uint Uid, DistCacheOperation Operation)> ReceiveAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            var buffer = new ReadOnlySequence<byte>(_receive, _receiveStart, _receiveEnd - _receiveStart);
            var status = DistCacheMessageReader.TryRead(buffer, expectResponse: true, out var message, out var error, out var header);
            if (status == OperationStatus.Done)
            {
                message.CopyPayloadTo(buffer.Slice(0, message.WireLength), _payload);
                _payloadLength = message.PayloadLength;
                _receiveStart += message.WireLength;
                if (_receiveStart == _receiveEnd)
                {
                    _receiveStart = _receiveEnd = 0;
                }

                return (message.Uid, message.Operation);
            }

            if (status == OperationStatus.InvalidData)
            {
                throw new InvalidDataException(error == DistCacheProtocolError.ProtocolLevel
                    ? $"protocol incompatibility; my level is {DistCacheProtocol.ProtocolLevel:x8}, the peer's is {header.ProtocolLevel:x8}"
                    : $"malformed distcache response: {error}");
            }

            if (_receiveEnd == _receive.Length)
            {
                // Compact (a message never exceeds half the buffer, so there is room after moving).
                Buffer.BlockCopy(_receive, _receiveStart, _receive, 0, _receiveEnd - _receiveStart);
                _receiveEnd -= _receiveStart;
                _receiveStart = 0;
            }

            var received = await _socket.ReceiveAsync(_receive.AsMemory(_receiveEnd), SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (received == 0)
            {
                throw new IOException("the distcache peer closed the connection");
            }

            _receiveEnd += received;
        }
    }

    /// <summary>Closes the socket.</summary>
    public void Dispose()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }

        _socket.Dispose();
    }
}
