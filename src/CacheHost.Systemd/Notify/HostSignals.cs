// Microsoft.Extensions.Hosting.Systemd lacks this: its SystemdLifetime handles SIGTERM only. SIGINT and
// SIGQUIT stop the host as SIGTERM does (what ConsoleLifetime would do, and Ctrl+C in a terminal), and SIGHUP
// reloads the configuration (ExecReload=kill -HUP, docs/systemd.md).
using System.Runtime.InteropServices;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd.Notify;

/// <summary>
/// The signals the package's lifetime leaves to the runtime's default action (terminate). Registered when the
/// host starts; every handler sets Cancel, otherwise the default action runs after it (ecosystem.md 2.4).
/// Registrations are kept in a field: the runtime holds them weakly and a collected one stops firing.
/// </summary>
public sealed class HostSignals(IHostApplicationLifetime lifetime, ReloadCoordinator reload, ILogger<HostSignals> logger) : IHostedService, IDisposable
{
    private readonly List<PosixSignalRegistration> _signals = [];

    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _signals.Add(PosixSignalRegistration.Create(PosixSignal.SIGINT, OnStopSignal));
        _signals.Add(PosixSignalRegistration.Create(PosixSignal.SIGQUIT, OnStopSignal));
        _signals.Add(PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnReloadSignal));
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private void OnStopSignal(PosixSignalContext context)
    {
        context.Cancel = true;
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
    }
}
