using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd.Notify;

/// <summary>
/// sd_notify: one AF_UNIX datagram per state change to $NOTIFY_SOCKET (a path, or <c>@name</c> for an
/// abstract socket), newline-separated KEY=VALUE assignments (ecosystem.md 1.7). Replaces
/// SystemdNotifier from Microsoft.Extensions.Hosting.Systemd, which is missing from the package mirror.
/// A send failure is logged and ignored: notification must never break start-up or shutdown.
/// </summary>
public sealed class SystemdNotifier : IDisposable
{
    // systemd reads at most PIPE_BUF bytes per datagram (NOTIFY_BUFFER_MAX).
    private const int MaxDatagram = 4096;

    private readonly UnixDomainSocketEndPoint? _endPoint;
    private readonly ILogger<SystemdNotifier> _logger;
    private readonly Lock _lock = new();
    private Socket? _socket;

    /// <summary>Creates the notifier for the captured NOTIFY_SOCKET (disabled when unset).</summary>
    public SystemdNotifier(SystemdEnvironment environment, ILogger<SystemdNotifier> logger)
    {
        _logger = logger;
        var address = environment.NotifySocket;
        if (address is null)
        {
            return;
        }

        try
        {
            if (address[0] == '/')
            {
                _endPoint = new UnixDomainSocketEndPoint(address);
            }
            else if (address[0] == '@' && address.Length > 1)
            {
                // Abstract name: NUL then the rest, no trailing NUL (.NET computes exactly that length).
                _endPoint = new UnixDomainSocketEndPoint("\0" + address[1..]);
            }
            else if (address.StartsWith("vsock", StringComparison.Ordinal))
            {
                SystemdLog.NotifySocketUnsupported(logger, address, "vsock addresses are not supported");
            }
            else
            {
                SystemdLog.NotifySocketUnsupported(logger, address, "not an absolute path or @abstract name");
            }
        }
        catch (ArgumentException ex)
        {
            SystemdLog.NotifySocketUnsupported(logger, address, ex.Message);
        }
    }

    /// <summary>True when NOTIFY_SOCKET named a usable socket.</summary>
    public bool IsEnabled => _endPoint is not null;

    /// <summary>Sends the assignments (e.g. "READY=1", "STATUS=…") as one datagram. Returns false if not sent.</summary>
    public bool Notify(params ReadOnlySpan<string> assignments)
    {
        if (_endPoint is null)
        {
            return false;
        }

        var text = string.Join('\n', assignments.ToArray());
        var bytes = Encoding.UTF8.GetBytes(text);
        if (bytes.Length > MaxDatagram)
        {
            bytes = bytes.AsSpan(0, MaxDatagram).ToArray();
        }

        lock (_lock)
        {
            try
            {
                _socket ??= new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
                _socket.SendTo(bytes, SocketFlags.None, _endPoint);
                return true;
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // ECONNREFUSED/ENOENT (stale variable) or EAGAIN: log, drop, and open a fresh socket next time.
                SystemdLog.NotifyFailed(_logger, assignments.Length > 0 ? assignments[0] : "", ex.Message);
                _socket?.Dispose();
                _socket = null;
                return false;
            }
        }
    }

    /// <summary>A STATUS= assignment with newlines flattened (STATUS is one line).</summary>
    public static string Status(string text) => "STATUS=" + text.ReplaceLineEndings(" ");

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_lock)
        {
            _socket?.Dispose();
            _socket = null;
        }
    }
}
