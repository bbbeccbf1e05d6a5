using Microsoft.Extensions.Logging.Abstractions;

namespace CacheHost.Systemd.Notify;

/// <summary>
/// systemd's side of the <c>-daemon</c> re-exec (ProcessControl.StartDaemonChild): the parent passes
/// NOTIFY_SOCKET (and the watchdog timeout, without a PID) to the detached child, which it had removed
/// from its own environment, and tells systemd <c>MAINPID=&lt;child&gt;</c> right after starting it, so the
/// child's READY=1 and watchdog pings are accepted under NotifyAccess=main. The parent then exits 0 once
/// the child runs.
/// </summary>
public static class DaemonHandoff
{
    /// <summary>Variables the daemon child needs to talk to systemd.</summary>
    public static IReadOnlyDictionary<string, string> ChildEnvironment()
    {
        var environment = SystemdEnvironment.Current;
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (environment.NotifySocket is not null)
        {
            result["NOTIFY_SOCKET"] = environment.NotifySocket;
        }

        if (environment.WatchdogTimeout is { } watchdog)
        {
            result["WATCHDOG_USEC"] = ((long)watchdog.TotalMicroseconds).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        return result;
    }

    /// <summary>Sends MAINPID=<paramref name="childPid"/> (no-op without NOTIFY_SOCKET).</summary>
    public static void AnnounceMainPid(int childPid)
    {
        SystemdEnvironment.Current.Notifier.Send(NullLogger.Instance, "MAINPID=" + childPid.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }
}
