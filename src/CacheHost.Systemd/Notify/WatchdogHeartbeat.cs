// Microsoft.Extensions.Hosting.Systemd lacks this: its SystemdLifetime sends no WATCHDOG=1 (nor STATUS=
// refreshes). Built on the package's ISystemdNotifier.
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd.Notify;

/// <summary>
/// Sends WATCHDOG=1 every half WATCHDOG_USEC (when systemd set it for this PID) and refreshes STATUS= when
/// it changed. The ping is a heartbeat, not a free-running timer: it runs on the thread pool (a starved
/// or deadlocked pool stops it), and it is withheld while any role has crashed, an accept loop has failed,
/// or a role reports itself unhealthy (<see cref="CacheHost.Core.Status.IRoleStatusProvider.IsHealthy"/>),
/// so systemd restarts a wedged daemon. Pinging ends when the host starts stopping (STOPPING=1 was sent;
/// the stop is bounded by TimeoutStopSec instead).
/// </summary>
public sealed class WatchdogHeartbeat(
    SystemdEnvironment environment,
    ISystemdNotifier notifier,
    HostStatus status,
    IHostApplicationLifetime lifetime,
    TimeProvider clock,
    ILogger<WatchdogHeartbeat> logger) : BackgroundService
{
    private static readonly TimeSpan StatusInterval = TimeSpan.FromSeconds(5);

    // STATUS= is refreshed at most this often (a busy status line must not flood systemd).
    private static readonly TimeSpan StatusMinGap = TimeSpan.FromSeconds(1);

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!notifier.IsEnabled)
        {
            return;
        }

        var timeout = environment.WatchdogTimeout;
        var interval = timeout is { } t ? TimeSpan.FromTicks(Math.Max(t.Ticks / 2, TimeSpan.TicksPerMillisecond)) : StatusInterval;
        if (timeout is not null)
        {
            SystemdLog.WatchdogEnabled(logger, interval.TotalMilliseconds, timeout.Value.TotalMilliseconds);
        }

        // Beats start with READY=1; before it systemd does not watch (TimeoutStartSec does).
        try
        {
            await Task.Delay(Timeout.Infinite, lifetime.ApplicationStarted).WaitAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (lifetime.ApplicationStarted.IsCancellationRequested && !stoppingToken.IsCancellationRequested)
        {
        }

        using var timer = new PeriodicTimer(interval, clock);
        var lastStatus = "";
        long? lastStatusAt = null;
        string? withheld = null;
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                if (lifetime.ApplicationStopping.IsCancellationRequested)
                {
                    return;
                }

                var problem = status.UnhealthyReason();
                if (problem is not null)
                {
                    if (problem != withheld)
                    {
                        SystemdLog.WatchdogWithheld(logger, problem);
                        withheld = problem;
                    }

                    continue;
                }

                withheld = null;
                var line = status.Line();
                var now = clock.GetTimestamp();
                var sendStatus = line != lastStatus && (lastStatusAt is not { } at || clock.GetElapsedTime(at, now) >= StatusMinGap);
                if (timeout is not null)
                {
                    if (sendStatus)
                    {
                        notifier.Send(logger, "WATCHDOG=1", NotifierExtensions.Status(line));
                    }
                    else
                    {
                        notifier.Send(logger, "WATCHDOG=1");
                    }
                }
                else if (sendStatus)
                {
                    notifier.Send(logger, NotifierExtensions.Status(line));
                }

                if (sendStatus)
                {
                    lastStatus = line;
                    lastStatusAt = now;
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}
