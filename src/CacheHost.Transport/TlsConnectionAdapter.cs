using System.Net.Security;

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
    private readonly SslServerAuthenticationOptions? _server;
    private readonly SslClientAuthenticationOptions? _client;
    private readonly TimeSpan _handshakeTimeout;
    private readonly TransportOptions _options;
    private readonly TimeProvider _clock;

    private TlsConnectionAdapter(SslServerAuthenticationOptions? server, SslClientAuthenticationOptions? client, TimeSpan handshakeTimeout, TransportOptions options, TimeProvider? clock)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(handshakeTimeout, TimeSpan.Zero);
        _server = server;
        _client = client;
        _handshakeTimeout = handshakeTimeout;
        _options = options;
        _clock = clock ?? TimeProvider.System;
    }

    /// <summary>
    /// Server side: every accepted connection is TLS from the first byte. The handshake limit runs on
    /// <paramref name="clock"/> (default: the system clock).
    /// </summary>
    public static TlsConnectionAdapter Server(SslServerAuthenticationOptions sslOptions, TimeSpan handshakeTimeout, TransportOptions options, TimeProvider? clock = null) =>
        new(sslOptions, null, handshakeTimeout, options, clock);

    /// <summary>Client side, for connections this process dials.</summary>
    public static TlsConnectionAdapter Client(SslClientAuthenticationOptions sslOptions, TimeSpan handshakeTimeout, TransportOptions options, TimeProvider? clock = null) =>
        new(null, sslOptions, handshakeTimeout, options, clock);

    /// <inheritdoc />
    public string Name => "tls";

    /// <summary>
    /// Runs the handshake. On failure or timeout the exception (AuthenticationException, IOException,
    /// OperationCanceledException) propagates and <paramref name="connection"/> is left to the caller.
    /// </summary>
    public async ValueTask<TransportConnection> AdaptAsync(TransportConnection connection, CancellationToken cancellationToken)
    {
        var ssl = new SslStream(new DuplexPipeStream(connection.Transport), leaveInnerStreamOpen: false);
        using var limit = new CancellationTokenSource(_handshakeTimeout, _clock);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, connection.ConnectionClosed, limit.Token);
        try
        {
            if (_server is not null)
            {
                await ssl.AuthenticateAsServerAsync(_server, timeout.Token).ConfigureAwait(false);
            }
            else
            {
                await ssl.AuthenticateAsClientAsync(_client!, timeout.Token).ConfigureAwait(false);
            }
        }
        catch
        {
            // The SslStream owns nothing but the pipe stream; the caller disposes the connection.
            connection.Abort("TLS handshake failed");
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return new StreamConnection(ssl, ssl, _options, inner: connection, clock: _clock);
    }
}
