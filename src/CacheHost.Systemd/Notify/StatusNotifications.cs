// Microsoft.Extensions.Hosting.Systemd lacks this: its SystemdLifetime sends READY=1 and STOPPING=1 without
// STATUS=. This service adds the one-line status (HostStatus.Line) at both moments, and the log lines.
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd.Notify;

/// <summary>
/// STATUS= when the host has started (every hosted service's StartAsync has returned; roles bind their
/// listeners there, so the line lists bound listeners) and STATUS=stopping when stopping begins. The
/// package's lifetime sends READY=1 / STOPPING=1 from the same two events, in separate datagrams.
/// </summary>
public sealed class StatusNotifications(
    IHostApplicationLifetime lifetime,
    ISystemdNotifier notifier,
    HostStatus status,
    ILogger<StatusNotifications> logger) : IHostedService, IDisposable
{
    private CancellationTokenRegistration _started;
    private CancellationTokenRegistration _stopping;

    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _started = lifetime.ApplicationStarted.Register(OnStarted);
        _stopping = lifetime.ApplicationStopping.Register(OnStopping);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private void OnStarted()
    {
        var line = status.Line();
        SystemdLog.Ready(logger, line);
        notifier.Send(logger, NotifierExtensions.Status(line));
    }

    private void OnStopping()
    {
        SystemdLog.Stopping(logger, "stop requested");
        notifier.Send(logger, NotifierExtensions.Status("stopping"));
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _started.Dispose();
        _stopping.Dispose();
    }
}
