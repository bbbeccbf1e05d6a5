using System.Runtime.InteropServices;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd.Notify;

/// <summary>
/// The host lifetime for a systemd service (replaces SystemdLifetime from the missing
/// Microsoft.Extensions.Hosting.Systemd, and ConsoleLifetime): READY=1 with STATUS= once every hosted
/// service has started — roles bind their listeners in StartAsync, so that means "all listeners bound";
/// STOPPING=1 when stopping begins; SIGTERM, SIGINT and SIGQUIT stop the host gracefully (exit 0); SIGHUP
/// reloads configuration. Without NOTIFY_SOCKET only the notifications are skipped.
/// </summary>
/// <remarks>
/// Signal registrations are kept in a field: the runtime holds them weakly and a collected registration
/// silently stops firing. Every handler sets Cancel, otherwise the runtime's default action (terminate)
/// runs after it (ecosystem.md 2.4). Raw Linux numbers are not needed: these four have PosixSignal names.
/// </remarks>
public sealed class SystemdLifetime(
    IHostApplicationLifetime lifetime,
    SystemdNotifier notifier,
    HostStatus status,
    ReloadCoordinator reload,
    ILogger<SystemdLifetime> logger) : IHostLifetime, IDisposable
{
    private readonly List<PosixSignalRegistration> _signals = [];
    private CancellationTokenRegistration _started;
    private CancellationTokenRegistration _stopping;
    private string _stopReason = "host stopping";

    /// <inheritdoc />
    public Task WaitForStartAsync(CancellationToken cancellationToken)
    {
        _started = lifetime.ApplicationStarted.Register(OnStarted);
        _stopping = lifetime.ApplicationStopping.Register(OnStopping);
        _signals.Add(PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnStopSignal));
        _signals.Add(PosixSignalRegistration.Create(PosixSignal.SIGINT, OnStopSignal));
        _signals.Add(PosixSignalRegistration.Create(PosixSignal.SIGQUIT, OnStopSignal));
        _signals.Add(PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnReloadSignal));
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private void OnStarted()
    {
        var line = status.Line();
        SystemdLog.Ready(logger, line);
        notifier.Notify("READY=1", SystemdNotifier.Status(line));
    }

    private void OnStopping()
    {
        SystemdLog.Stopping(logger, _stopReason);
        notifier.Notify("STOPPING=1", SystemdNotifier.Status("stopping: " + _stopReason));
    }

    private void OnStopSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        _stopReason = context.Signal.ToString();
        SystemdLog.SignalReceived(logger, context.Signal.ToString());
        lifetime.StopApplication();
    }

    private void OnReloadSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        SystemdLog.SignalReceived(logger, "SIGHUP");
        _ = reload.ReloadAsync("SIGHUP");
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var registration in _signals)
        {
            registration.Dispose();
        }

        _signals.Clear();
        _started.Dispose();
        _stopping.Dispose();
    }
}
