// Microsoft.Extensions.Hosting.Systemd's ISystemdNotifier lacks this: it sends one ServiceState per call and
// throws on a failed send. STATUS=, WATCHDOG=1 and RELOADING=1 go out through it here, several assignments in
// one datagram, and a failure is logged and dropped: notification must never break start-up or shutdown.
using System.Net.Sockets;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd.Notify;

/// <summary>sd_notify messages of several newline-separated KEY=VALUE assignments (ecosystem.md 1.7).</summary>
public static class NotifierExtensions
{
    // systemd reads at most this many bytes per datagram (NOTIFY_BUFFER_MAX).
    private const int MaxDatagram = 4096;

    /// <summary>Sends the assignments (e.g. "WATCHDOG=1", "STATUS=…") as one datagram; false if not sent.</summary>
    public static bool Send(this ISystemdNotifier notifier, ILogger logger, params ReadOnlySpan<string> assignments)
    {
        if (!notifier.IsEnabled || assignments.IsEmpty)
        {
            return false;
        }

        var text = string.Join('\n', assignments.ToArray());
        if (text.Length > MaxDatagram)
        {
            text = text[..MaxDatagram];
        }

        while (System.Text.Encoding.UTF8.GetByteCount(text) > MaxDatagram)
        {
            text = text[..^1];
        }

        try
        {
            notifier.Notify(new ServiceState(text));
            return true;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException)
        {
            // ECONNREFUSED/ENOENT (a stale variable) or EAGAIN: the package opens a fresh socket per send.
            SystemdLog.NotifyFailed(logger, assignments[0], ex.Message);
            return false;
        }
    }

    /// <summary>A STATUS= assignment with newlines flattened (STATUS is one line).</summary>
    public static string Status(string text) => "STATUS=" + text.ReplaceLineEndings(" ");
}
