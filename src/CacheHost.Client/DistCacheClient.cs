using System.Runtime.CompilerServices;
using System.Net.Sockets;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;

namespace CacheHost.Client;

/// <summary>
/// The equivalent of libdistcache's <c>DC_CTX</c> (distcache §8): add/get/remove/has with the C library's
/// result rules, uids from the process-wide counter, one request at a time per context (callers from several
/// threads are serialised by an async lock, so a context is thread-safe), and the connection modes of
/// <see cref="DistCacheClientFlags"/>. On the persistent path an operation allocates nothing besides what the
/// caller asks to be returned.
/// </summary>
public sealed class DistCacheClient : IAsyncDisposable, IDisposable
{
    private readonly TransportAddress _address;
    private readonly DistCacheClientFlags _flags;
    private readonly TransportOptions? _transport;
    private readonly TlsContext? _tls;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private CancellationTokenSource? _operationTimer;
    private DistCacheConnection? _connection;
    private int _pid;
    private bool _lastWasHit;

    private DistCacheClient(TransportAddress address, DistCacheClientFlags flags, TransportOptions? transport, TlsContext? tls, TimeProvider? clock)
    {
        _tls = tls;
        TimeProvider = clock ?? TimeProvider.System;
        _address = address;
        _flags = flags;
        _transport = transport;
        _pid = Environment.ProcessId;
    }

    /// <summary>Time limit per transaction (connect + send + receive). Default 30 s; <see cref="Timeout.InfiniteTimeSpan"/> = none (the C library's behaviour).</summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The clock <see cref="OperationTimeout"/> runs on (default: the system clock; tests pass a fake one).</summary>
    public TimeProvider TimeProvider { get; }

    // One source for every transaction of this context, re-armed per transaction (no allocation per request); built
    // on first use so that it runs on TimeProvider (CancelAfter uses the source's own provider).
    private CancellationTokenSource OperationTimer => _operationTimer ??= new CancellationTokenSource(Timeout.InfiniteTimeSpan, TimeProvider);

    /// <summary>Status of the most recent transaction.</summary>
    public DistCacheTransactionStatus LastStatus { get; private set; }

    /// <summary>Payload of the most recent successful transaction (empty otherwise).</summary>
    public ReadOnlySpan<byte> LastResponse => LastStatus == DistCacheTransactionStatus.Ok && _connection is not null ? _connection.Payload : _lastDetached.AsSpan(0, _lastDetachedLength);

    private byte[] _lastDetached = [];
    private int _lastDetachedLength;

    /// <summary>
    /// DC_CTX_new: creates a context for <paramref name="address"/>. With <see cref="DistCacheClientFlags.Persistent"/>
    /// (and not <see cref="DistCacheClientFlags.Late"/>) it connects now and throws if that fails.
    /// </summary>
    public static ValueTask<DistCacheClient> CreateAsync(string address, DistCacheClientFlags flags, CancellationToken cancellationToken = default) =>
        CreateAsync(address, flags, transport: null, cancellationToken);

    /// <summary>
    /// As <see cref="CreateAsync(string, DistCacheClientFlags, CancellationToken)"/>, with the transport settings of
    /// its connections (null: <see cref="DistCacheConnection.DefaultTransportOptions"/>).
    /// </summary>
    public static ValueTask<DistCacheClient> CreateAsync(string address, DistCacheClientFlags flags, TransportOptions? transport, CancellationToken cancellationToken = default) =>
        CreateAsync(address, flags, transport, tls: null, clock: null, cancellationToken);

    /// <summary>
    /// As above, every connection of the context over TLS with <paramref name="tls"/> (null: plain, as libdistcache).
    /// </summary>
    public static ValueTask<DistCacheClient> CreateAsync(string address, DistCacheClientFlags flags, TransportOptions? transport, TlsContext? tls, CancellationToken cancellationToken = default) =>
        CreateAsync(address, flags, transport, tls, clock: null, cancellationToken);

    /// <summary>
    /// As <see cref="CreateAsync(string, DistCacheClientFlags, TransportOptions?, CancellationToken)"/>, with the clock
    /// that times <see cref="OperationTimeout"/> (null: the system clock).
    /// </summary>
    public static ValueTask<DistCacheClient> CreateAsync(string address, DistCacheClientFlags flags, TransportOptions? transport, TimeProvider? clock, CancellationToken cancellationToken = default) =>
        CreateAsync(address, flags, transport, tls: null, clock, cancellationToken);

    /// <summary>The full form: TLS (null: plain) and the clock of <see cref="OperationTimeout"/> (null: the system clock).</summary>
    public static async ValueTask<DistCacheClient> CreateAsync(string address, DistCacheClientFlags flags, TransportOptions? transport, TlsContext? tls, TimeProvider? clock, CancellationToken cancellationToken = default)
    {
        var client = new DistCacheClient(TransportAddress.Parse(address), flags, transport, tls, clock);
        if (client.IsPersistent && (flags & DistCacheClientFlags.Late) == 0)
        {
            client._connection = await DistCacheConnection.ConnectAsync(client._address, transport, tls, cancellationToken).ConfigureAwait(false);
        }

        return client;
    }

    private bool IsPersistent => (_flags & DistCacheClientFlags.Persistent) != 0;

    /// <summary>ADD: true only for a response of exactly one byte 0x00 (distcache §8).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> AddAsync(ReadOnlyMemory<byte> id, ReadOnlyMemory<byte> data, uint timeoutMs, CancellationToken cancellationToken = default)
    {
        if (DistCacheProtocol.AddPrefixSize + id.Length + data.Length > DistCacheProtocol.MaxPayload)
        {
            throw new ArgumentException($"id and data exceed the {DistCacheProtocol.MaxPayload}-byte payload limit", nameof(data));
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var status = await TransactAsync(DistCacheOperation.Add, id, data, timeoutMs, cancellationToken).ConfigureAwait(false);
            return status == DistCacheTransactionStatus.Ok && IsSingleByte(0x00);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>REMOVE: true only for a response of exactly one byte 0x00.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> RemoveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var status = await TransactAsync(DistCacheOperation.Remove, id, default, 0, cancellationToken).ConfigureAwait(false);
            return status == DistCacheTransactionStatus.Ok && IsSingleByte(0x00);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>HAVE: yes for 0x00; no for 0x01 or a response that is not exactly one byte; error for any other byte or a failed transaction.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<DistCacheHaveResult> HaveAsync(ReadOnlyMemory<byte> id, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var status = await TransactAsync(DistCacheOperation.Have, id, default, 0, cancellationToken).ConfigureAwait(false);
            if (status != DistCacheTransactionStatus.Ok)
            {
                return DistCacheHaveResult.Error;
            }

            return DistCacheResults.Have(LastResponse);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// GET into <paramref name="destination"/>: a hit is a response of at least 5 bytes (shorter ones are misses,
    /// distcache §8 and §13.5). The result reports the session's length even when it did not fit; then (or with an
    /// empty destination) <see cref="ReGet"/> copies it without another round trip.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<DistCacheGetResult> GetAsync(ReadOnlyMemory<byte> id, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var status = await TransactAsync(DistCacheOperation.Get, id, default, 0, cancellationToken).ConfigureAwait(false);
            _lastWasHit = status == DistCacheTransactionStatus.Ok && DistCacheResults.IsHit(LastResponse);
            if (!_lastWasHit)
            {
                return new DistCacheGetResult(false, 0, false);
            }

            var response = LastResponse;
            if (response.Length > destination.Length)
            {
                return new DistCacheGetResult(false, response.Length, true);
            }

            response.CopyTo(destination.Span);
            return new DistCacheGetResult(true, response.Length, true);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// DC_CTX_reget_session: copies the session data of the last GET (if it was a hit) into
    /// <paramref name="destination"/>. Returns false if the last GET was no hit or the buffer is too small;
    /// <paramref name="length"/> is the needed size either way.
    /// </summary>
    public bool ReGet(Span<byte> destination, out int length)
    {
        _gate.Wait();
        try
        {
            length = 0;
            if (!_lastWasHit)
            {
                return false;
            }

            var response = LastResponse;
            length = response.Length;
            if (response.Length > destination.Length)
            {
                return false;
            }

            response.CopyTo(destination);
            return true;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// A raw transaction (any operation, any payload); the payload of the answer is in <see cref="LastResponse"/>.
    /// For tools and tests that need to see exactly what came back (e.g. 0x02 or the empty "no server" reply).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<DistCacheTransactionStatus> TransactAsync(DistCacheOperation operation, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await TransactAsync(operation, payload, default, 0, cancellationToken, raw: true).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    private bool IsSingleByte(byte value) => value == 0 && DistCacheResults.IsSuccess(LastResponse);

    /// <summary>One request/response exchange, under the gate. For ADD (unless <paramref name="raw"/>), <paramref name="idOrPayload"/> is the id.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<DistCacheTransactionStatus> TransactAsync(DistCacheOperation operation, ReadOnlyMemory<byte> idOrPayload, ReadOnlyMemory<byte> data, uint timeoutMs, CancellationToken cancellationToken, bool raw = false)
    {
        var uid = DistCacheUids.Next();
        if ((_flags & DistCacheClientFlags.PidCheck) != 0 && _pid != Environment.ProcessId)
        {
            // After fork the socket is shared with the parent: use a connection of our own.
            CloseConnection();
            _pid = Environment.ProcessId;
        }

        var attempts = IsPersistent && (_flags & DistCacheClientFlags.Retry) != 0 ? 2 : 1;
        var status = DistCacheTransactionStatus.NetworkError;
        var token = cancellationToken;
        CancellationTokenSource? linked = null;
        if (OperationTimeout != Timeout.InfiniteTimeSpan)
        {
            if (!OperationTimer.TryReset())
            {
                if (TimeProvider == TimeProvider.System)
                {
                    throw new InvalidOperationException("the operation timer could not be reset");
                }

                // TryReset resets only the runtime's own timer; over another clock's timer a fresh source is used.
                _operationTimer!.Dispose();
                _operationTimer = new CancellationTokenSource(Timeout.InfiniteTimeSpan, TimeProvider);
            }

            OperationTimer.CancelAfter(OperationTimeout);
            token = OperationTimer.Token;
            if (cancellationToken.CanBeCanceled)
            {
                linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, OperationTimer.Token);
                token = linked.Token;
            }
        }

        try
        {
            for (var attempt = 0; attempt < attempts; attempt++)
            {
                // A connection that was already open may have been closed by the peer since the last use:
                // only such a failure is worth the one resend (RETRY).
                var reused = _connection is not null;
                try
                {
                    _connection ??= await DistCacheConnection.ConnectAsync(_address, _transport, _tls, token).ConfigureAwait(false);
                    var connection = _connection;
                    connection.ClearPending();
                    if (operation == DistCacheOperation.Add && !raw)
                    {
                        connection.AppendAdd(uid, idOrPayload.Span, data.Span, timeoutMs);
                    }
                    else
                    {
                        connection.AppendRequest(uid, operation, idOrPayload.Span);
                    }

                    await connection.SendAsync(token).ConfigureAwait(false);
                    var (responseUid, responseOperation) = await connection.ReceiveAsync(token).ConfigureAwait(false);
                    if (responseUid != uid || responseOperation != operation)
                    {
                        CloseConnection();
                        status = DistCacheTransactionStatus.Mismatch;
                    }
                    else if (connection.Payload.IsEmpty)
                    {
                        status = DistCacheTransactionStatus.EmptyResponse;
                    }
                    else
                    {
                        status = DistCacheTransactionStatus.Ok;
                    }

                    if (!IsPersistent && status == DistCacheTransactionStatus.Ok)
                    {
                        // Keep the answer readable after the per-operation connection is gone.
                        Detach(connection.Payload);
                        CloseConnection();
                    }
                    else if (!IsPersistent)
                    {
                        CloseConnection();
                    }

                    break;
                }
                catch (ConnectionAbortedException)
                {
                    // The transport's "this side closed it" (the context was disposed meanwhile): a network error,
                    // not the caller's cancellation.
                    CloseConnection();
                    status = DistCacheTransactionStatus.NetworkError;
                    break;
                }
                catch (OperationCanceledException) when (OperationTimer.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                {
                    CloseConnection();
                    status = DistCacheTransactionStatus.TimedOut;
                    break;
                }
                catch (OperationCanceledException)
                {
                    // The caller gave up mid-transaction: the stream is out of step, so the connection goes.
                    CloseConnection();
                    throw;
                }
                catch (InvalidDataException)
                {
                    CloseConnection();
                    status = DistCacheTransactionStatus.ProtocolError;
                    break;
                }
                catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException)
                {
                    CloseConnection();
                    status = DistCacheTransactionStatus.NetworkError;
                    if (!reused)
                    {
                        break;
                    }
                }
            }
        }
        finally
        {
            linked?.Dispose();
        }

        LastStatus = status;
        if (status != DistCacheTransactionStatus.Ok)
        {
            _lastDetachedLength = 0;
        }

        return status;
    }

    private void Detach(ReadOnlySpan<byte> payload)
    {
        if (_lastDetached.Length < payload.Length)
        {
            _lastDetached = new byte[Math.Max(payload.Length, 256)];
        }

        payload.CopyTo(_lastDetached);
        _lastDetachedLength = payload.Length;
    }

    private void CloseConnection()
    {
        _connection?.Dispose();
        _connection = null;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        CloseConnection();
        _operationTimer?.Dispose();
        _gate.Dispose();
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
