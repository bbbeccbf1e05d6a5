using CacheHost.Posix;
using System.Globalization;
using Microsoft.Extensions.Hosting.Systemd;

namespace CacheHost.Systemd;

/// <summary>
/// What systemd told this process through the environment, read once at start-up. The variables that
/// address "the main process" (NOTIFY_SOCKET, LISTEN_*, WATCHDOG_*) are removed from the environment right
/// away so children (the supervisor's services, -daemon respawns) cannot notify or adopt on our behalf
/// (ecosystem.md 1.7 "Environment hygiene", 1.9 item 4).
/// </summary>
public sealed class SystemdEnvironment
{
    private static readonly string[] Captured =
    [
        "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID", "WATCHDOG_USEC",
    ];

    private static readonly Lazy<SystemdEnvironment> CurrentInstance = new(() =>
    {
        // Microsoft.Extensions.Hosting.Systemd's SystemdNotifier reads NOTIFY_SOCKET when it is constructed,
        // so it is made here, before Capture removes the variable.
        var notifier = new SystemdNotifier();
        var environment = Capture(Environment.GetEnvironmentVariable, Environment.ProcessId, remove: true);
        environment.Notifier = notifier;
        return environment;
    });

    private SystemdEnvironment()
    {
    }

    /// <summary>The process-wide snapshot, taken (and the variables removed) on first use.</summary>
    public static SystemdEnvironment Current => CurrentInstance.Value;

    /// <summary>
    /// The package's sd_notify sender for the captured NOTIFY_SOCKET (path or <c>@abstract</c>); disabled when
    /// the variable was unset, and for snapshots made by <see cref="Capture"/> alone.
    /// </summary>
    public ISystemdNotifier Notifier { get; private set; } = Disabled.Instance;

    /// <summary>NOTIFY_SOCKET as given (path, <c>@abstract</c>, or null).</summary>
    public string? NotifySocket { get; private init; }

    /// <summary>Watchdog timeout for this process, or null when systemd did not ask for pings.</summary>
    public TimeSpan? WatchdogTimeout { get; private init; }

    /// <summary>Inherited listening sockets (fd 3…) with their LISTEN_FDNAMES names; empty unless LISTEN_PID is ours.</summary>
    public IReadOnlyList<(int Fd, string Name)> ListenFds { get; private init; } = [];

    /// <summary>Why LISTEN_FDS was ignored (for a log line), or null.</summary>
    public string? ListenFdsProblem { get; private init; }

    /// <summary>systemd's $RUNTIME_DIRECTORY (first entry), or null.</summary>
    public string? RuntimeDirectory { get; private init; }

    /// <summary>
    /// Reads the variables through <paramref name="get"/>; with <paramref name="remove"/> they are also
    /// removed from the process environment. Exposed for unit tests.
    /// </summary>
    public static SystemdEnvironment Capture(Func<string, string?> get, int pid, bool remove)
    {
        var notify = get("NOTIFY_SOCKET");
        TimeSpan? watchdog = null;
        if (long.TryParse(get("WATCHDOG_USEC"), NumberStyles.None, CultureInfo.InvariantCulture, out var usec) && usec > 0)
        {
            var watchdogPid = get("WATCHDOG_PID");
            if (string.IsNullOrEmpty(watchdogPid) || watchdogPid == pid.ToString(CultureInfo.InvariantCulture))
            {
                watchdog = TimeSpan.FromMicroseconds(usec);
            }
        }

        var (fds, problem) = ReadListenFds(get, pid);
        var runtime = get("RUNTIME_DIRECTORY");
        var result = new SystemdEnvironment
        {
            NotifySocket = string.IsNullOrEmpty(notify) ? null : notify,
            WatchdogTimeout = watchdog,
            ListenFds = fds,
            ListenFdsProblem = problem,
            RuntimeDirectory = string.IsNullOrEmpty(runtime) ? null : runtime.Split(':')[0],
        };

        if (remove)
        {
            foreach (var name in Captured)
            {
                Libc.RemoveEnvironmentVariable(name);
            }
        }

        return result;
    }

    // libsystemd sd_listen_fds order (ecosystem.md 1.8): LISTEN_PID must be ours, then LISTEN_FDS=N gives
    // fds 3..3+N-1, LISTEN_FDNAMES must have exactly N names (missing means all "unknown").
    private static (IReadOnlyList<(int, string)>, string?) ReadListenFds(Func<string, string?> get, int pid)
    {
        var listenPid = get("LISTEN_PID");
        var listenFds = get("LISTEN_FDS");
        if (string.IsNullOrEmpty(listenFds))
        {
            return ([], null);
        }

        if (listenPid != pid.ToString(CultureInfo.InvariantCulture))
        {
            return ([], $"LISTEN_PID={listenPid} is not this process ({pid})");
        }

        if (!int.TryParse(listenFds, NumberStyles.None, CultureInfo.InvariantCulture, out var count) || count <= 0 || count > 4096)
        {
            return ([], $"LISTEN_FDS='{listenFds}' is not a positive count");
        }

        var namesText = get("LISTEN_FDNAMES");
        var names = namesText is null ? Enumerable.Repeat("unknown", count).ToArray() : namesText.Split(':');
        if (names.Length != count)
        {
            return ([], $"LISTEN_FDNAMES has {names.Length} names for {count} descriptors");
        }

        return (names.Select((name, i) => (3 + i, name)).ToArray(), null);
    }

    private sealed class Disabled : ISystemdNotifier
    {
        public static readonly Disabled Instance = new();

        public bool IsEnabled => false;

        public void Notify(ServiceState state)
        {
        }
    }
}
