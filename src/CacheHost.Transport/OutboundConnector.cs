using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace CacheHost.Transport;

/// <summary>Opens outbound connections (for proxies, clients and the load tool) on any address form.</summary>
public static class OutboundConnector
{
    /// <summary>
    /// Connects to <paramref name="address"/>. <c>IP:&lt;port&gt;</c> without a host cannot be connected to,
    /// as in the reference (distcache §2.1).
    /// </summary>
    public static async ValueTask<TransportConnection> ConnectAsync(TransportAddress address, TransportOptions options, ILogger logger, CancellationToken cancellationToken = default)
    {
        if (address.Kind == TransportAddressKind.FileDescriptor)
        {
            return OpenDescriptors(address, options);
        }

        var socket = await ConnectSocketAsync(address, cancellationToken, forTransport: true).ConfigureAwait(false);
        return SocketTransport.Start(socket, options, logger);
    }

    /// <summary>
    /// Connects and, when <paramref name="adapter"/> is given (TLS), runs it over the new connection before
    /// returning; if the adapter fails the connection is released and its exception propagates.
    /// </summary>
    public static async ValueTask<TransportConnection> ConnectAsync(TransportAddress address, TransportOptions options, ILogger logger, IConnectionAdapter? adapter, CancellationToken cancellationToken = default)
    {
        var connection = await ConnectAsync(address, options, logger, cancellationToken).ConfigureAwait(false);
        if (adapter is null)
        {
            return connection;
        }

        try
        {
            return await adapter.AdaptAsync(connection, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Connects and returns the raw socket (for clients that do their own framing or TLS).</summary>
    public static ValueTask<Socket> ConnectSocketAsync(TransportAddress address, CancellationToken cancellationToken = default) =>
        ConnectSocketAsync(address, cancellationToken, forTransport: false);

    private static async ValueTask<Socket> ConnectSocketAsync(TransportAddress address, CancellationToken cancellationToken, bool forTransport)
    {
        EndPoint endPoint;
        Socket socket;
        switch (address.Kind)
        {
            case TransportAddressKind.Unix:
                endPoint = new UnixDomainSocketEndPoint(address.Path!);
                socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                break;
            case TransportAddressKind.Tcp4:
            case TransportAddressKind.Tcp6:
                if (address.Host is null)
                {
                    throw new ArgumentException($"can't connect to '{address.Text}': a host is required", nameof(address));
                }

                var ip = ListenerHost(address);
                endPoint = new IPEndPoint(ip, address.Port);
                socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                break;
            default:
                throw new ArgumentException($"can't open a socket for '{address.Text}'", nameof(address));
        }

        try
        {
            if (forTransport)
            {
                await SocketTransport.ConnectAsync(socket, endPoint, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
            }

            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    internal static TransportConnection OpenDescriptors(TransportAddress address, TransportOptions options)
    {
        Stream? read = address.ReadFd >= 0 ? new FileStream(ConnectionListener.DescriptorHandle(address.ReadFd), FileAccess.Read, 1, isAsync: false) : null;
        Stream? write = address.WriteFd >= 0
            ? (address.WriteFd == address.ReadFd
                ? new FileStream(ConnectionListener.DescriptorHandle(DuplicateDescriptor(address.WriteFd)), FileAccess.Write, 1, isAsync: false)
                : new FileStream(ConnectionListener.DescriptorHandle(address.WriteFd), FileAccess.Write, 1, isAsync: false))
            : null;
        return new StreamConnection(read, write, options);
    }

    private static IPAddress ListenerHost(TransportAddress address) =>
        ConnectionListener.ResolveHost(address, address.Kind == TransportAddressKind.Tcp6);

    private static int DuplicateDescriptor(int fd)
    {
        var copy = CacheHost.Posix.Libc.dup(fd);
        if (copy < 0)
        {
            throw new IOException($"dup({fd}) failed: {CacheHost.Posix.Libc.ErrnoName(CacheHost.Posix.Libc.Errno)}");
        }

        return copy;
    }
}
