using CacheHost.Posix;
using System.Net.Sockets;
using CacheHost.Core;
using CacheHost.Transport;
using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd.Activation;

/// <summary>
/// The <see cref="IListenerFactory"/> for systemd: a listener whose name matches a LISTEN_FDNAMES entry
/// (the socket unit's <c>FileDescriptorName=</c>, compared case-insensitively) adopts that inherited socket
/// instead of binding; every other listener binds its configured address. Only descriptors systemd passed
/// to this PID are considered (LISTEN_PID checked in <see cref="SystemdEnvironment"/>), never "whatever is
/// open at fd 3" (ecosystem.md 1.8). Adopted descriptors are made close-on-exec so the supervisor's
/// children do not inherit them.
/// </summary>
public sealed class SocketActivationListenerFactory : IListenerFactory, IDisposable
{
    private readonly ILogger _logger;
    private readonly ILogger _transportLogger;
    private readonly Dictionary<int, string> _unclaimed = [];
    private readonly Lock _lock = new();

    /// <summary>Creates the factory over the captured LISTEN_FDS.</summary>
    public SocketActivationListenerFactory(SystemdEnvironment environment, ILoggerFactory loggerFactory)
    {
        _logger = loggerFactory.CreateLogger<SocketActivationListenerFactory>();
        _transportLogger = loggerFactory.CreateLogger("CacheHost.Transport");
        if (environment.ListenFdsProblem is not null)
        {
            SystemdLog.ListenFdsIgnored(_logger, environment.ListenFdsProblem);
        }

        foreach (var (fd, name) in environment.ListenFds)
        {
            // Close-on-exec at once, before any role could spawn a child.
            Libc.SetCloseOnExec(fd);
            _unclaimed[fd] = name;
        }
    }

    /// <summary>Inherited descriptors no listener has claimed yet.</summary>
    public IReadOnlyCollection<(int Fd, string Name)> Unclaimed
    {
        get
        {
            lock (_lock)
            {
                return _unclaimed.Select(kv => (kv.Key, kv.Value)).ToArray();
            }
        }
    }

    /// <inheritdoc />
    public ConnectionListener Bind(string name, TransportAddress address, TransportOptions options, Action<string>? prepareUnixSocket = null)
    {
        int fd = -1;
        lock (_lock)
        {
            foreach (var (candidate, fdName) in _unclaimed)
            {
                if (string.Equals(fdName, name, StringComparison.OrdinalIgnoreCase))
                {
                    fd = candidate;
                    break;
                }
            }

            if (fd >= 0)
            {
                _unclaimed.Remove(fd);
            }
        }

        if (fd < 0)
        {
            return ConnectionListener.Bind(address, options, _transportLogger, prepareUnixSocket);
        }

        if (!UnixSocketFile.IsListening(fd))
        {
            throw new IOException($"socket-activated fd {fd} ('{name}') is not a listening stream socket (Accept=yes is not supported)");
        }

        var socket = new Socket(new SafeSocketHandle(fd, ownsHandle: true));
        var actual = socket.LocalEndPoint is UnixDomainSocketEndPoint unix && unix.ToString() is { Length: > 0 } path && path[0] == '/'
            ? TransportAddress.Parse("UNIX:" + path)
            : address;
        SystemdLog.ListenFdAdopted(_logger, fd, name, socket.LocalEndPoint?.ToString() ?? address.Text);
        return ConnectionListener.Adopt(actual, socket, options, _transportLogger);
    }

    /// <summary>Closes inherited descriptors that no listener claimed (called once every role has bound).</summary>
    public void CloseUnclaimed()
    {
        lock (_lock)
        {
            foreach (var (fd, name) in _unclaimed)
            {
                SystemdLog.ListenFdUnused(_logger, fd, name);
                _ = Libc.close(fd);
            }

            _unclaimed.Clear();
        }
    }

    /// <inheritdoc />
    public void Dispose() => CloseUnclaimed();
}
