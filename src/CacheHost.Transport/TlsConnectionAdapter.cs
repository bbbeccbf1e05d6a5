using System.Net.Security;
using System.Security.Authentication;

namespace CacheHost.Transport;

/// <summary>
/// TLS as a connection adapter: runs the handshake over the accepted (or connected) connection's pipes and hands
/// the protocol a <see cref="StreamConnection"/> over the <see cref="SslStream"/>, with the same
/// <see cref="TransportOptions"/> limits as any connection. The handshake is asynchronous and bounded by a
/// timeout, so a peer that connects and stays silent costs one pending task and never blocks an accept loop or
/// other connections. Protocol-agnostic: one instance per listener (server side) or per dialled link (client side).
/// </summary>
public sealed class TlsConnectionAdapter : IConnectionAdapter
{
    private readonly Func<SslServerAuthenticationOptions>? _server;
    private readonly Func<SslClientAuthenticationOptions>? _client;
    private readonly TimeSpan _handshakeTimeout;
    private readonly TransportOptions _options;
    private readonly TimeProvider _timeProvider;

    private TlsConnectionAdapter(Func<SslServerAuthenticationOptions>? server, Func<SslClientAuthenticationOptions>? client, TimeSpan handshakeTimeout, TransportOptions options, TimeProvider? timeProvider)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(handshakeTimeout, TimeSpan.Zero);
        _server = server;
        _client = client;
        _handshakeTimeout = handshakeTimeout;
        _options = options;
        _timeProvider = timeProvider ?? TimeProvider.System;
    }

    /// <summary>Server side: every accepted connection is TLS from the first byte.</summary>
    public static TlsConnectionAdapter Server(SslServerAuthenticationOptions sslOptions, TimeSpan handshakeTimeout, TransportOptions options, TimeProvider? timeProvider = null) =>
        new(() => sslOptions, null, handshakeTimeout, options, timeProvider);

    /// <summary>
    /// Server side with options taken per handshake (<see cref="TlsContext"/>: a certificate reload reaches the next
    /// handshake) and the handshake limit on <paramref name="timeProvider"/>.
    /// </summary>
    public static TlsConnectionAdapter Server(Func<SslServerAuthenticationOptions> sslOptions, TimeSpan handshakeTimeout, TransportOptions options, TimeProvider? timeProvider) =>
        new(sslOptions, null, handshakeTimeout, options, timeProvider);

    /// <summary>Client side, for connections this process dials.</summary>
    public static TlsConnectionAdapter Client(SslClientAuthenticationOptions sslOptions, TimeSpan handshakeTimeout, TransportOptions options, TimeProvider? timeProvider = null) =>
        new(null, () => sslOptions, handshakeTimeout, options, timeProvider);

    /// <summary>Client side with options taken per handshake and the handshake limit on <paramref name="timeProvider"/>.</summary>
    public static TlsConnectionAdapter Client(Func<SslClientAuthenticationOptions> sslOptions, TimeSpan handshakeTimeout, TransportOptions options, TimeProvider? timeProvider) =>
        new(null, sslOptions, handshakeTimeout, options, timeProvider);

    /// <inheritdoc />
    public string Name => "tls";

    /// <summary>
    /// Runs the handshake. On failure or timeout the exception (AuthenticationException, IOException,
    /// OperationCanceledException, <see cref="TimeoutException"/> when the handshake limit cut it) propagates with
    /// the reason in its message (the one log line of the failed connection) and <paramref name="connection"/> is
    /// left to the caller.
    /// </summary>
    public async ValueTask<TransportConnection> AdaptAsync(TransportConnection connection, CancellationToken cancellationToken)
    {
        var ssl = new SslStream(new DuplexPipeStream(connection.Transport), leaveInnerStreamOpen: false);
        using var limit = new CancellationTokenSource(_handshakeTimeout, _timeProvider);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, connection.ConnectionClosed, limit.Token);
        try
        {
            if (_server is not null)
            {
                await ssl.AuthenticateAsServerAsync(_server(), timeout.Token).ConfigureAwait(false);
            }
            else
            {
                await ssl.AuthenticateAsClientAsync(_client!(), timeout.Token).ConfigureAwait(false);
            }
        }
        catch (Exception ex)
        {
            // The SslStream owns nothing but the pipe stream; the caller disposes the connection.
            connection.Abort("TLS handshake failed");
            await ssl.DisposeAsync().ConfigureAwait(false);
            if (limit.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"TLS handshake not finished within {_handshakeTimeout.TotalSeconds:0.###} s", ex);
            }

            if (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                // Neither the caller nor the limit: the connection closed under the handshake (the peer refused us).
                throw new IOException("TLS handshake failed: the peer closed the connection", ex);
            }

            if (ex is AuthenticationException or IOException && Innermost(ex) is { } inner && !ReferenceEquals(inner, ex))
            {
                // "Authentication failed, see inner exception." says nothing in a log line: name the cause.
                throw new AuthenticationException($"{ex.Message.TrimEnd('.')}: {inner.Message}", ex);
            }

            throw;
        }

        return new StreamConnection(ssl, ssl, _options, inner: connection, clock: _timeProvider);
    }

    private static Exception Innermost(Exception ex)
    {
        while (ex.InnerException is not null)
        {
            ex = ex.InnerException;
        }

        return ex;
    }
}
