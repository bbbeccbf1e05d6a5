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

    private TlsConnectionAdapter(SslServerAuthenticationOptions? server, SslClientAuthenticationOptions? client, TimeSpan handshakeTimeout, TransportOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(handshakeTimeout, TimeSpan.Zero);
        _server = server;
        _client = client;
        _handshakeTimeout = handshakeTimeout;
        _options = options;
    }

    /// <summary>Server side: every accepted connection is TLS from the first byte.</summary>
    public static TlsConnectionAdapter Server(SslServerAuthenticationOptions sslOptions, TimeSpan handshakeTimeout, TransportOptions options) =>
        new(sslOptions, null, handshakeTimeout, options);

    /// <summary>Client side, for connections this process dials.</summary>
    public static TlsConnectionAdapter Client(SslClientAuthenticationOptions sslOptions, TimeSpan handshakeTimeout, TransportOptions options) =>
        new(null, sslOptions, handshakeTimeout, options);

    /// <inheritdoc />
    public string Name => "tls";

    /// <summary>
    /// Runs the handshake. On failure or timeout the exception (AuthenticationException, IOException,
    /// OperationCanceledException) propagates and <paramref name="connection"/> is left to the caller.
    /// </summary>
    public async ValueTask<TransportConnection> AdaptAsync(TransportConnection connection, CancellationToken cancellationToken)
    {
        var ssl = new SslStream(new DuplexPipeStream(connection.Transport), leaveInnerStreamOpen: false);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, connection.ConnectionClosed);
        timeout.CancelAfter(_handshakeTimeout);
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

        return new StreamConnection(ssl, ssl, _options, inner: connection);
    }
}
