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
    public static int Run(string[] args)
    {
        var invokedAs = InvocationName.Get();
        var (command, rest) = DropInCommands.Resolve(invokedAs, args);
        if (command is null)
        {
            return RunHost(rest, overrides: null, childArguments: args);
        }

        return DropInCommands.Run(command, rest);
    }

    private static bool ControlSocketRequested(string[] args) =>
        args.Any(a => a.Contains("CacheHost:Control:", StringComparison.OrdinalIgnoreCase))
        || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("RUNTIME_DIRECTORY"))
        || Environment.GetEnvironmentVariables().Keys.Cast<string>().Any(k => k.StartsWith("CacheHost__Control__", StringComparison.OrdinalIgnoreCase));

    /// <summary>Runs the host until it stops; maps start-up problems to one clear line and exit 1.</summary>
    /// <param name="args">Host arguments (--Key=Value).</param>
    /// <param name="overrides">Configuration from a drop-in command line; when set, appsettings.json is not read.</param>
    /// <param name="childArguments">The arguments that start this same configuration again (for -daemon).</param>
    public static int RunHost(string[] args, IReadOnlyDictionary<string, string?>? overrides, IReadOnlyList<string> childArguments)
    {
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
            host = HostFactory.Build(args, overrides, useAppSettings: overrides is null);
        }
        catch (Exception ex) when (ex is ConfigurationException or InvalidOperationException or FormatException)
        {
            CacheHost.Systemd.Logging.JournalStream.WriteError($"cachehost: configuration error: {ex.Message}");
            return 1;
        }

        var failures = host.Services.GetRequiredService<RoleFailures>();
        try
        {
            var process = host.Services.GetRequiredService<IOptions<ProcessOptions>>().Value;
            if (process.Daemon && Environment.GetEnvironmentVariable(ProcessControl.DaemonChildVariable) != "1")
            {
                host.Dispose();
                return ProcessControl.StartDaemonChild(childArguments, CacheHost.Systemd.Notify.DaemonHandoff.ChildEnvironment(), CacheHost.Systemd.Notify.DaemonHandoff.AnnounceMainPid);
            }

            ProcessControl.ApplyAfterStart(process, host.Services.GetRequiredService<IHostApplicationLifetime>(),
                host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("CacheHost.Process"));
            host.Run();
        }
        catch (OptionsValidationException ex)
        {
            CacheHost.Systemd.Logging.JournalStream.WriteError($"cachehost: invalid configuration: {string.Join("; ", ex.Failures)}");
            return 1;
        }
        catch (InvalidOperationException ex) when (ex.Message.Contains("configuration", StringComparison.OrdinalIgnoreCase))
        {
            // Binder errors name the key, e.g. "Failed to convert configuration value at 'CacheHost:CacheServer:Capacity'".
            CacheHost.Systemd.Logging.JournalStream.WriteError($"cachehost: invalid configuration: {ex.Message}");
            return 1;
        }
        catch (Exception ex)
        {
            CacheHost.Systemd.Logging.JournalStream.WriteError($"cachehost: failed: {ex.Message}");
            return 1;
        }
        finally
        {
            Serilog.Log.CloseAndFlush();
        }

        if (failures.Any)
        {
            foreach (var (role, error) in failures.Snapshot())
            {
                CacheHost.Systemd.Logging.JournalStream.WriteError($"cachehost: role {role} failed: {error.Message}");
            }

            return 1;
        }

        return 0;
    }
}
