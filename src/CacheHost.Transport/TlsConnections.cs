using System.Net.Security;
using System.Net.Sockets;

namespace CacheHost.Transport;

/// <summary>
/// Protocol-agnostic TLS adapter: turns a raw accepted or connected socket into a
/// <see cref="TransportConnection"/> over <see cref="SslStream"/>. The handshake is asynchronous and bounded
/// by a timeout, so a peer that connects and stays silent costs one pending task and never blocks an accept
/// loop or other connections.
/// </summary>
public static class TlsConnections
{
    /// <summary>
    /// Runs the server side of the handshake on <paramref name="socket"/>. On failure or timeout the socket is
    /// closed and the exception (AuthenticationException, IOException, OperationCanceledException) propagates.
    /// </summary>
    public static async Task<TransportConnection> AcceptAsync(Socket socket, SslServerAuthenticationOptions sslOptions, TimeSpan handshakeTimeout, TransportOptions options, CancellationToken cancellationToken)
    {
        var local = socket.LocalEndPoint;
        var remote = socket.RemoteEndPoint;
        if (socket.ProtocolType == ProtocolType.Tcp)
        {
            socket.NoDelay = options.NoDelay;
        }

        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(handshakeTimeout);
        try
        {
            await ssl.AuthenticateAsServerAsync(sslOptions, timeout.Token).ConfigureAwait(false);
        }
        catch
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return new StreamConnection(ssl, ssl, options, local, remote);
    }

    /// <summary>Runs the client side of the handshake on a connected socket (bounded by <paramref name="handshakeTimeout"/>).</summary>
    public static async Task<TransportConnection> ConnectAsync(Socket socket, SslClientAuthenticationOptions sslOptions, TimeSpan handshakeTimeout, TransportOptions options, CancellationToken cancellationToken)
    {
        var local = socket.LocalEndPoint;
        var remote = socket.RemoteEndPoint;
        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(handshakeTimeout);
        try
        {
            await ssl.AuthenticateAsClientAsync(sslOptions, timeout.Token).ConfigureAwait(false);
        }
        catch
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return new StreamConnection(ssl, ssl, options, local, remote);
    }
}
