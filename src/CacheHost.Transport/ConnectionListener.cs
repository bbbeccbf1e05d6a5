using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using CacheHost.Posix;

namespace CacheHost.Transport;

/// <summary>
/// A bound listener for one address. <see cref="AcceptAsync"/> returns null once the listener is unbound,
/// so accept loops end without exceptions (Kestrel's IConnectionListener contract).
/// Accept errors are handled by kind (Garnet's HandleAcceptError tiers): resets of a not-yet-accepted
/// client are skipped at once; every other error is transient (logged, backed off exponentially from 100 ms
/// to 5 s, then accepting goes on), because Linux passes pending network errors of the new socket (ENETDOWN,
/// EPROTO, EHOSTUNREACH, ENETUNREACH, ...) through accept(2), see accept(2) "Error handling". Only the short
/// list in <see cref="IsFatalAcceptError"/>, which says the listening socket itself is unusable, is thrown.
/// </summary>
public sealed class ConnectionListener : IAsyncDisposable
{
    private const int SolSocket = 1, SoReuseAddr = 2; // Linux <asm-generic/socket.h>

    private static readonly TimeSpan MinBackoff = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(5);

    private readonly Socket? _socket;
    private readonly TransportOptions _options;
    private readonly ILogger _logger;
    private readonly string? _unixPathToRemove;
    private TransportConnection? _singleConnection;
    private volatile bool _unbound;

    private ConnectionListener(TransportAddress address, Socket? socket, TransportOptions options, ILogger logger, string? unixPath)
    {
        Address = address;
        _socket = socket;
        _options = options;
        _logger = logger;
        _unixPathToRemove = unixPath;

        // A unix socket is bound under a staging name and renamed into place; the kernel keeps reporting the
        // staging name, so report the path clients connect to.
        EndPoint = unixPath is not null ? new UnixDomainSocketEndPoint(unixPath) : socket?.LocalEndPoint;
    }

    /// <summary>The configured address.</summary>
    public TransportAddress Address { get; }

    /// <summary>The bound endpoint (with the real port when the address asked for port 0).</summary>
    public EndPoint? EndPoint { get; }

    /// <summary>The options connections from this listener get.</summary>
    public TransportOptions Options => _options;

    /// <summary>A display form of the bound address, e.g. <c>IP:127.0.0.1:40123</c> or <c>UNIX:/run/x.sock</c>.</summary>
    public string DisplayAddress => EndPoint switch
    {
        IPEndPoint { AddressFamily: AddressFamily.InterNetworkV6 } ip => $"IPv6:[{ip.Address}]:{ip.Port}",
        IPEndPoint ip => $"IP:{ip.Address}:{ip.Port}",
        UnixDomainSocketEndPoint => Address.Text,
        _ => Address.Text,
    };

    /// <summary>
    /// Binds and starts listening on <paramref name="address"/>. <paramref name="prepareUnixSocket"/> runs on a
    /// new unix socket file (given its current path) after the permission options and before it listens.
    /// </summary>
    public static ConnectionListener Bind(TransportAddress address, TransportOptions options, ILogger logger, Action<string>? prepareUnixSocket = null)
    {
        SocketTransport.Prepare(options);
        switch (address.Kind)
        {
            case TransportAddressKind.Unix:
                return BindUnix(address, options, logger, prepareUnixSocket);
            case TransportAddressKind.Tcp4:
            case TransportAddressKind.Tcp6:
                return BindTcp(address, options, logger);
            case TransportAddressKind.FileDescriptor:
                return AdoptDescriptor(address, options, logger);
            default:
                throw new ArgumentOutOfRangeException(nameof(address));
        }
    }

    /// <summary>
    /// Adopts an already-listening socket (systemd socket activation). The socket must be a listening
    /// stream socket; the caller has already made it close-on-exec.
    /// </summary>
    public static ConnectionListener Adopt(TransportAddress address, Socket listeningSocket, TransportOptions options, ILogger logger)
    {
        TransportLog.AdoptedListener(logger, (int)listeningSocket.Handle, address.Text);
        return new ConnectionListener(address, listeningSocket, options, logger, unixPath: null);
    }

    /// <summary>Waits for the next connection. Returns null once unbound.</summary>
    public async ValueTask<TransportConnection?> AcceptAsync(CancellationToken cancellationToken = default, TimeProvider? clock = null)
    {
        if (_socket is null)
        {
            // FD:<rd>:<wr> with plain descriptors: "accepts" exactly once (distcache §2.1).
            return Interlocked.Exchange(ref _singleConnection, null);
        }

        var socket = await AcceptSocketAsync(cancellationToken, clock).ConfigureAwait(false);
        return socket is null ? null : SocketTransport.Start(socket, _options, _logger);
    }

    /// <summary>
    /// Accepts a raw socket, for adapters (TLS) that wrap it before the protocol sees it. Returns null once
    /// unbound or cancelled. The back-off after a resource error runs on <paramref name="clock"/> (default: the
    /// system clock).
    /// </summary>
    public async ValueTask<Socket?> AcceptSocketAsync(CancellationToken cancellationToken = default, TimeProvider? clock = null)
    {
        if (_socket is null)
        {
            return null;
        }

        var backoff = MinBackoff;
        while (!_unbound)
        {
            try
            {
                var accepted = await (AcceptOverride?.Invoke(_socket, cancellationToken) ?? _socket.AcceptAsync(cancellationToken)).ConfigureAwait(false);
                backoff = MinBackoff;
                return accepted;
            }
            catch (OperationCanceledException)
            {
                return null;
            }
            catch (ObjectDisposedException)
            {
                return null;
            }
            catch (SocketException ex) when (_unbound || ex.SocketErrorCode == SocketError.OperationAborted)
            {
                return null;
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted
                or SocketError.Interrupted or SocketError.TryAgain or SocketError.WouldBlock)
            {
                TransportLog.AcceptTransient(_logger, Address.Text, ex.SocketErrorCode);
            }
            catch (SocketException ex) when (IsFatalAcceptError(ex.SocketErrorCode))
            {
                TransportLog.AcceptFatal(_logger, Address.Text, ex);
                throw;
            }
            catch (SocketException ex)
            {
                // Resource pressure (EMFILE, ENFILE, ENOBUFS, ENOMEM) and every error not known to be fatal.
                TransportLog.AcceptBackoff(_logger, Address.Text, ex.SocketErrorCode, (int)backoff.TotalMilliseconds);
                try
                {
                    await Task.Delay(backoff, clock ?? TimeProvider.System, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return null;
                }

                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
            }
        }

        return null;
    }

    /// <summary>
    /// Errors that say the listening socket itself is unusable (EINVAL: not listening, ENOTSOCK, EOPNOTSUPP,
    /// EFAULT, EBADF surfaces as ObjectDisposedException): accepting again cannot succeed, so the role fails
    /// and the host exits non-zero. Everything else is about one pending connection or a passing shortage.
    /// </summary>
    public static bool IsFatalAcceptError(SocketError error) => error is SocketError.InvalidArgument or SocketError.NotSocket
        or SocketError.OperationNotSupported or SocketError.Fault or SocketError.SocketNotSupported or SocketError.AddressFamilyNotSupported;

    /// <summary>
    /// True when a connection waits in the listen queue (poll(2) for readability, without waiting). Lets a protocol
    /// that must see connections in the order they arrived (clacks §2.1) let pending accepts go first.
    /// </summary>
    public bool HasPendingConnection
    {
        get
        {
            if (_socket is null || _unbound)
            {
                return false;
            }

            try
            {
                return _socket.Poll(0, SelectMode.SelectRead);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return false;
            }
        }
    }

    /// <summary>Test seam: replaces the accept call so tests can inject the errors accept(2) passes through.</summary>
    internal Func<Socket, CancellationToken, ValueTask<Socket>>? AcceptOverride { get; set; }

    /// <summary>Stops listening. Pending and future AcceptAsync calls return null.</summary>
    public void Unbind()
    {
        if (_unbound)
        {
            return;
        }

        _unbound = true;
        _socket?.Dispose();
        if (_unixPathToRemove is not null && UnixSocketFile.IsSocket(_unixPathToRemove))
        {
            try
            {
                File.Delete(_unixPathToRemove);
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        TransportLog.Unbound(_logger, Address.Text);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        Unbind();
        var single = Interlocked.Exchange(ref _singleConnection, null);
        if (single is not null)
        {
            await single.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static ConnectionListener BindUnix(TransportAddress address, TransportOptions options, ILogger logger, Action<string>? prepare)
    {
        var path = address.Path!;
        // The reference unlinks whatever is at the path. We only replace a stale socket: deleting a regular
        // file because of a typo in a config would lose data.
        if (File.Exists(path) || Directory.Exists(path) || UnixSocketFile.IsSocket(path))
        {
            if (!UnixSocketFile.IsSocket(path))
            {
                throw new IOException($"can't listen on '{address.Text}': {path} exists and is not a socket");
            }

            // A socket that still accepts connections belongs to a running process; taking it over (as the
            // reference's unconditional unlink does) would leave that process serving nobody.
            if (UnixSocketFile.IsLive(path))
            {
                throw new IOException($"can't listen on '{address.Text}': another process is listening on {path}");
            }

            File.Delete(path);
        }

        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(directory) && !Directory.Exists(directory))
        {
            // bind(2) says ENOENT, which .NET reports as "Cannot assign requested address".
            throw new IOException($"can't listen on '{address.Text}': no such directory {directory}");
        }

        // The file must be connectable the moment it exists: a client polling for the path would otherwise get
        // ECONNREFUSED between bind(2) and listen(2), and could connect before the mode is applied. So bind under
        // a temporary name in the same directory, apply owner/group/mode (and the role's preparation), listen,
        // then rename(2) it into place (atomic; the listening socket keeps working under its new name).
        var staging = StagingPath(path);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(staging ?? path));
            UnixSocketPermissions.Apply(staging ?? path, options.SocketOwner, options.SocketGroup, options.SocketMode, logger);
            prepare?.Invoke(staging ?? path);
            socket.Listen(options.Backlog);
            if (staging is not null && PosixFiles.Rename(staging, path) is var errno and not 0)
            {
                throw new IOException($"rename {staging} to {path}: {Libc.ErrnoName(errno)}");
            }
        }
        catch (Exception ex)
        {
            socket.Dispose();
            if (staging is not null)
            {
                _ = PosixFiles.Unlink(staging);
            }

            throw new IOException($"can't listen on '{address.Text}': {ex.Message}", ex);
        }

        var listener = new ConnectionListener(address, socket, options, logger, path);
        TransportLog.Listening(logger, listener.DisplayAddress);
        return listener;
    }

    private static ConnectionListener BindTcp(TransportAddress address, TransportOptions options, ILogger logger)
    {
        var v6 = address.Kind == TransportAddressKind.Tcp6;
        IPAddress ip;
        if (address.Host is null)
        {
            ip = v6 ? IPAddress.IPv6Any : IPAddress.Any;
        }
        else
        {
            ip = ResolveHost(address, v6);
        }

        var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (v6)
            {
                socket.DualMode = false;
            }

            // SO_REUSEADDR only (restart while old connections sit in TIME_WAIT). Not
            // SetSocketOption(ReuseAddress): on Linux .NET sets SO_REUSEPORT with it, and a second daemon
            // would then bind the same port and silently get half of the clients, with its own cache.
            socket.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
            socket.Bind(new IPEndPoint(ip, address.Port));
            socket.Listen(options.Backlog);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            socket.Dispose();
            throw new IOException($"can't listen on '{address.Text}': address already in use (another process is listening on it)", ex);
        }
        catch (Exception ex)
        {
            socket.Dispose();
            throw new IOException($"can't listen on '{address.Text}': {ex.Message}", ex);
        }

        var listener = new ConnectionListener(address, socket, options, logger, unixPath: null);
        TransportLog.Listening(logger, listener.DisplayAddress);
        return listener;
    }

    private static ConnectionListener AdoptDescriptor(TransportAddress address, TransportOptions options, ILogger logger)
    {
        // A listening socket passed by number (e.g. by a supervisor) is accepted on; any other descriptor
        // (a pipe, a connected socket) is the one and only connection.
        if (address.ReadFd == address.WriteFd && UnixSocketFile.IsListening(address.ReadFd))
        {
            var socket = new Socket(new SafeSocketHandle(address.ReadFd, ownsHandle: true));
            return Adopt(address, socket, options, logger);
        }

        var listener = new ConnectionListener(address, socket: null, options, logger, unixPath: null)
        {
            _singleConnection = OutboundConnector.OpenDescriptors(address, options),
        };
        return listener;
    }

    internal static IPAddress ResolveHost(TransportAddress address, bool v6)
    {
        if (IPAddress.TryParse(address.Host, out var literal))
        {
            return literal;
        }

        var family = v6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork;
        IPAddress[] found;
        try
        {
            found = Dns.GetHostAddresses(address.Host!, family);
        }
        catch (SocketException ex)
        {
            throw new IOException($"'{address.Text}': cannot resolve host '{address.Host}': {ex.Message}", ex);
        }

        if (found.Length == 0)
        {
            throw new IOException($"'{address.Text}': host '{address.Host}' has no {(v6 ? "IPv6" : "IPv4")} address");
        }

        return found[0];
    }

    /// <summary>
    /// A temporary name next to <paramref name="path"/> (same directory, so rename is atomic), or null when it
    /// would not fit in sun_path (107 bytes); then the socket is bound at its final path directly.
    /// </summary>
    private static string? StagingPath(string path)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path)) ?? "/";
        var staging = Path.Combine(directory, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Random.Shared.Next(0x10000):x4}");
        if (System.Text.Encoding.UTF8.GetByteCount(staging) > 107)
        {
            staging = Path.Combine(directory, $".s{Environment.ProcessId}{Random.Shared.Next(0x10000):x4}");
        }

        return System.Text.Encoding.UTF8.GetByteCount(staging) <= 107 ? staging : null;
    }


    internal static SafeFileHandle DescriptorHandle(int fd) => new(fd, ownsHandle: true);
}
