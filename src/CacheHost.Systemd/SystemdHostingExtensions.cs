using CacheHost.Core;
using CacheHost.Core.Control;
using CacheHost.Systemd.Activation;
using CacheHost.Systemd.Control;
using CacheHost.Systemd.Logging;
using CacheHost.Systemd.Notify;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;

namespace CacheHost.Systemd;

/// <summary>
/// Wires the systemd integration into the host. This project replaces Microsoft.Extensions.Hosting.Systemd,
/// which is not on the package mirror, and adds what that package never did: watchdog, reload, STATUS,
/// socket activation, journald line prefixes and the control socket (docs/systemd.md).
/// </summary>
public static class SystemdHostingExtensions
{
    /// <summary>
    /// Logging (journald or console, levels per namespace), the systemd lifetime (READY/STOPPING/RELOADING,
    /// signals), the watchdog heartbeat, the socket-activation listener factory and the control socket.
    /// Call before the roles are added. Reads (and removes) the systemd environment variables.
    /// </summary>
    public static void AddSystemdIntegration(this HostApplicationBuilder builder)
    {
        var environment = SystemdEnvironment.Current;
        SystemdLogging.Configure(builder);

        var services = builder.Services;
        services.AddSingleton(environment);
        services.TryAddSingleton<RoleFailures>();
        services.AddSingleton<SystemdNotifier>();
        services.AddSingleton<HostStatus>();
        services.AddSingleton<ReloadCoordinator>();
        services.AddSingleton<IHostLifetime, SystemdLifetime>();
        services.AddHostedService<WatchdogHeartbeat>();

        services.AddSingleton<SocketActivationListenerFactory>();
        services.RemoveAll<IListenerFactory>();
        services.AddSingleton<IListenerFactory>(sp => sp.GetRequiredService<SocketActivationListenerFactory>());

        services.AddOptions<ControlOptions>()
            .BindConfiguration(ControlOptions.Section, o => o.ErrorOnUnknownConfiguration = true)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddSingleton<HostControlCommands>();
        services.AddSingleton<ControlDispatcher>();
        services.AddSingleton<ControlServer>();
        services.AddSingleton<IControlEvents>(sp => sp.GetRequiredService<ControlServer>());
        services.AddHostedService(sp => sp.GetRequiredService<ControlServer>());
        services.AddHostedService<ActivationCleanup>();
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
