using CacheHost.Core;
using CacheHost.Core.Control;
using CacheHost.Systemd.Activation;
using CacheHost.Systemd.Control;
using CacheHost.Systemd.Logging;
using CacheHost.Systemd.Notify;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;

namespace CacheHost.Systemd;

/// <summary>
/// Wires the systemd integration into the host: Microsoft.Extensions.Hosting.Systemd's notifier and
/// lifetime (READY=1, STOPPING=1, SIGTERM), Serilog through Serilog.Extensions.Hosting, and what those
/// packages lack, each in its own file: STATUS=, the watchdog, reload (RELOADING=1), SIGINT/SIGQUIT/SIGHUP,
/// socket activation, journald line prefixes and the control socket (docs/systemd.md).
/// </summary>
public static class SystemdHostingExtensions
{
    /// <summary>
    /// Logging (journald or console, levels per namespace), the systemd lifetime (READY/STOPPING/RELOADING,
    /// signals), the watchdog heartbeat, the socket-activation listener factory and the control socket.
    /// Call before the roles are added. Reads (and removes) the systemd environment variables. Returns the
    /// log level control the logger uses.
    /// </summary>
    public static LogLevelControl AddSystemdIntegration(this HostApplicationBuilder builder)
    {
        var environment = SystemdEnvironment.Current;
        var levels = SystemdLogging.Configure(builder);

        var services = builder.Services;
        services.AddSingleton(environment);
        services.TryAddSingleton<RoleFailures>();
        services.TryAddSingleton(TimeProvider.System);
        // The package's lifetime is registered directly instead of through AddSystemd(): that one activates
        // only when IsSystemdService() (parent is systemd, or PID 1), so a daemon started by a test, by
        // supervisord or under -daemon with a NOTIFY_SOCKET would send nothing; and its notifier would read
        // NOTIFY_SOCKET after SystemdEnvironment removed it. Without NOTIFY_SOCKET the lifetime still handles
        // SIGTERM and its notifier is disabled.
        services.AddSingleton(environment.Notifier);
        services.AddSingleton<IHostLifetime, Microsoft.Extensions.Hosting.Systemd.SystemdLifetime>();
        services.AddSingleton<HostStatus>();
        services.AddSingleton<ReloadCoordinator>();
        services.AddHostedService<HostSignals>();
        services.AddHostedService<StatusNotifications>();
        services.AddHostedService<WatchdogHeartbeat>();

        services.AddSingleton<SocketActivationListenerFactory>();
        services.RemoveAll<IListenerFactory>();
        services.AddSingleton<IListenerFactory>(sp => sp.GetRequiredService<SocketActivationListenerFactory>());

        services.AddValidatedOptions<ControlOptions, ControlOptionsValidator>(ControlOptions.SectionName, static (section, o) => section.Bind(o, RoleOptionsExtensions.RejectUnknownKeys));
        services.AddSingleton<HostControlCommands>();
        services.AddSingleton<ControlDispatcher>();
        services.AddSingleton<ControlServer>();
        services.AddSingleton<IControlEvents>(sp => sp.GetRequiredService<ControlServer>());
        services.AddHostedService(sp => sp.GetRequiredService<ControlServer>());
        services.AddHostedService<ActivationCleanup>();

        return levels;
    }

    /// <summary>Closes socket-activated descriptors no role claimed, once every role has bound.</summary>
    private sealed class ActivationCleanup(SocketActivationListenerFactory factory, IHostApplicationLifetime lifetime) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            lifetime.ApplicationStarted.Register(factory.CloseUnclaimed);
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
