using CacheHost.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost;

/// <summary>
/// Chooses what to run from the subcommand or from the name the program was started under
/// (<c>dc_server</c> = <c>cachehost server</c>, …). Every path ends in the same Generic Host.
/// Exit codes: 0 clean stop; 1 usage error, failed start-up or crashed role.
/// </summary>
internal static class CommandDispatcher
{
    /// <param name="args">The command line.</param>
    /// <param name="roles">The roles <c>CacheHost:Roles</c> may name; default the shipped <see cref="RoleCatalog.Roles"/>.
    /// A test executable passes the shipped roles plus its fixture role (tests/CacheHost.ProbeHost).</param>
    public static int Run(string[] args, IReadOnlyDictionary<string, Action<IHostApplicationBuilder>>? roles = null)
    {
        var invokedAs = InvocationName.Get();
        var (command, rest) = DropInCommands.Resolve(invokedAs, args);
        if (command is null)
        {
            return RunHost(rest, overrides: null, childArguments: args, roles);
        }

        return DropInCommands.Run(command, rest, asSubcommand: !DropInCommands.IsProgramName(invokedAs));
    }

    private static bool ControlSocketRequested(string[] args) =>
        args.Any(a => a.Contains("CacheHost:Control:", StringComparison.OrdinalIgnoreCase))
        || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("RUNTIME_DIRECTORY"))
        || Environment.GetEnvironmentVariables().Keys.Cast<string>().Any(k => k.StartsWith("CacheHost__Control__", StringComparison.OrdinalIgnoreCase));

    /// <summary>Runs the host until it stops; maps start-up problems to one clear line and exit 1.</summary>
    /// <param name="args">Host arguments (--Key=Value).</param>
    /// <param name="overrides">Configuration from a drop-in command line; when set, appsettings.json is not read.</param>
    /// <param name="childArguments">The arguments that start this same configuration again (for -daemon).</param>
    /// <param name="roles">The roles <c>CacheHost:Roles</c> may name; default <see cref="RoleCatalog.Roles"/>.</param>
    public static int RunHost(string[] args, IReadOnlyDictionary<string, string?>? overrides, IReadOnlyList<string> childArguments,
        IReadOnlyDictionary<string, Action<IHostApplicationBuilder>>? roles = null)
    {
        roles ??= RoleCatalog.Roles;
        ProcessControl.BeginDaemonChild();
        if (overrides is not null && !ControlSocketRequested(args))
        {
            // The original tools have no control socket, and two dc_server instances on one machine must not
            // contend for a default path. Under systemd (RUNTIME_DIRECTORY) or when configured, it is served.
            overrides = new Dictionary<string, string?>(overrides) { ["CacheHost:Control:Enabled"] = "false" };
        }

        IHost host;
        try
        {
            host = HostFactory.Build(args, overrides, useAppSettings: overrides is null, roles);
        }
        catch (Exception ex) when (ex is ConfigurationException or InvalidOperationException or FormatException or ArgumentException)
        {
            CacheHost.Systemd.Logging.JournalStream.WriteError($"cachehost: configuration error: {ex.Message}");
            return 1;
        }

        var failures = host.Services.GetRequiredService<RoleFailures>();
        var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("CacheHost");
        BackgroundService[] backgroundServices = [];
        try
        {
            // Options are validated here, before the host starts, so that an invalid key is one line and not
            // the host's "Hosting failed to start" with a stack trace (README: one line, exit 1).
            ConfigurationKeyCheck.Warn(host.Services.GetRequiredService<Microsoft.Extensions.Configuration.IConfiguration>(), logger, roles.Keys);
            host.Services.GetService<IStartupValidator>()?.Validate();
            var process = host.Services.GetRequiredService<IOptions<ProcessOptions>>().Value;
            if (process.Daemon && !ProcessControl.IsDaemonChild)
            {
                host.Dispose();
                return ProcessControl.StartDaemonChild(childArguments, CacheHost.Systemd.Notify.DaemonHandoff.ChildEnvironment(), CacheHost.Systemd.Notify.DaemonHandoff.AnnounceMainPid);
            }

            // A first run in a terminal says how to stop it (under systemd, systemctl does).
            if (host.Services.GetRequiredService<CacheHost.Systemd.SystemdEnvironment>().NotifySocket is null && !Console.IsInputRedirected)
            {
                host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStarted.Register(
                    () => logger.LogInformation("Running; press Ctrl+C (or send SIGTERM) to stop"));
            }

            // Resolved now: the host disposes its services when Run returns.
            backgroundServices = host.Services.GetServices<IHostedService>().OfType<BackgroundService>().ToArray();
            host.Run();
        }
        catch (Exception ex)
        {
            // The stack trace only at debug level (Serilog:MinimumLevel:Override:CacheHost = Debug).
            logger.LogDebug(ex, "Start-up failed");
            CacheHost.Systemd.Logging.JournalStream.WriteError("cachehost: " + StartFailure(ex));
            return 1;
        }
        finally
        {
            Serilog.Log.CloseAndFlush();
        }

        var failed = false;
        foreach (var (role, error) in failures.Snapshot())
        {
            CacheHost.Systemd.Logging.JournalStream.WriteError($"cachehost: role {role} failed: {error.Message}");
            failed = true;
        }

        // A background service that is not a role (watchdog, supervisor work) and crashed stops the host
        // (BackgroundServiceExceptionBehavior.StopHost) without an exit code: report it, exit 1.
        foreach (var service in backgroundServices)
        {
            if (service.ExecuteTask is { IsFaulted: true } task && !(service is ListenerRoleService role && failures.Snapshot().Any(f => f.Role == role.RoleName)))
            {
                CacheHost.Systemd.Logging.JournalStream.WriteError($"cachehost: {service.GetType().Name} failed: {task.Exception!.GetBaseException().Message}");
                failed = true;
            }
        }

        return failed ? 1 : 0;
    }

    /// <summary>One line for an exception that stopped start-up.</summary>
    private static string StartFailure(Exception ex) => ex switch
    {
        OptionsValidationException validation => "invalid configuration: " + string.Join("; ", validation.Failures),
        AggregateException aggregate when aggregate.InnerExceptions.All(e => e is OptionsValidationException) =>
            "invalid configuration: " + string.Join("; ", aggregate.InnerExceptions.Cast<OptionsValidationException>().SelectMany(e => e.Failures)),
        AggregateException aggregate => string.Join("; ", aggregate.InnerExceptions.Select(StartFailure)),
        // Binder errors name the key, e.g. "Failed to convert configuration value at 'CacheHost:CacheServer:Capacity'".
        InvalidOperationException when ex.Message.Contains("configuration", StringComparison.OrdinalIgnoreCase) => "invalid configuration: " + ex.Message,
        ProcessControlException => ex.Message,
        _ => "failed: " + ex.Message,
    };
}
