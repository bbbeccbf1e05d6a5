using CacheHost.Core;
using CacheHost.Transport;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using CacheHost.Systemd;

namespace CacheHost;

/// <summary>Builds the Generic Host: configuration, logging, and the roles listed in CacheHost:Roles.</summary>
internal static class HostFactory
{
    /// <summary>
    /// Builds the host. <paramref name="overrides"/> (from drop-in command lines such as
    /// <c>cachehost server -listen …</c>) take precedence over appsettings, environment and --Key=Value.
    /// <paramref name="catalog"/>: the roles <c>CacheHost:Roles</c> may name, default the shipped <see cref="RoleCatalog.Roles"/>.
    /// </summary>
    public static IHost Build(string[] args, IReadOnlyDictionary<string, string?>? overrides = null, bool useAppSettings = true,
        IReadOnlyDictionary<string, Action<IHostApplicationBuilder>>? catalog = null)
    {
        catalog ??= RoleCatalog.Roles;
        // Content root is the executable's folder, not the working directory: a unit started from / would
        // otherwise look for /appsettings.json and watch the whole file system for changes. Defaults are
        // disabled so that each configuration source below is deliberate.
        // No file watching: configuration is re-read on SIGHUP or the control command config.reload
        // (docs/systemd.md), so a watcher can never end up on / and a half-written file is never picked up.
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            Args = args,
            ContentRootPath = AppContext.BaseDirectory,
            ApplicationName = "cachehost",
            DisableDefaults = true,
        });

        // Drop-in command lines (dc_server …) behave like the originals: their flags are the whole
        // configuration, so a role list or listener in appsettings.json cannot leak into them.
        if (useAppSettings)
        {
            AddJsonFile(builder.Configuration, Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true, source: null);
            var extraConfig = Environment.GetEnvironmentVariable("CACHEHOST_CONFIG");
            if (!string.IsNullOrEmpty(extraConfig))
            {
                AddJsonFile(builder.Configuration, Path.GetFullPath(extraConfig), optional: false, source: "CACHEHOST_CONFIG");
            }
        }

        builder.Configuration.AddEnvironmentVariables();
        builder.Configuration.AddCommandLine(args);
        if (overrides is { Count: > 0 })
        {
            builder.Configuration.AddInMemoryCollection(overrides);
        }

        // Last source: a single string at a list key becomes the list's first item.
        builder.Configuration.AddSingleValueLists(RoleCatalog.AddressListKeys);

        builder.Services.AddSingleton<RoleFailures>();
        // The one clock (issue 16): every timeout, retry, idle limit, drain, tick and watchdog beat of every role
        // reads this TimeProvider; tests substitute a FakeTimeProvider here.
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddValidatedOptions<ProcessOptions>(ProcessOptions.SectionName, static (section, o) => section.Bind(o, RoleOptionsExtensions.RejectUnknownKeys));
        // Logging (journald-aware), sd_notify lifetime, watchdog, reload, socket activation (the
        // IListenerFactory), control socket.
        var levels = builder.AddSystemdIntegration();
        SocketEngineSettings.Apply(builder.Configuration.GetValue("CacheHost:Transport:InlineCompletions", true));
        SocketEngineSettings.ApplyEngine(builder.Configuration["CacheHost:Transport:Engine"], builder.Configuration.GetValue("CacheHost:Transport:EngineThreads", 0));
        var shutdownTimeout = HostShutdownTimeout(builder.Configuration);
        builder.Services.Configure<HostOptions>(o =>
        {
            o.ShutdownTimeout = shutdownTimeout;
            o.BackgroundServiceExceptionBehavior = BackgroundServiceExceptionBehavior.StopHost;
        });

        var roles = RoleOptionsExtensions.ReadRoles(builder.Configuration);
        if (roles.Count == 0)
        {
            throw new ConfigurationException("CacheHost:Roles: no role is enabled; list at least one of " + string.Join(", ", catalog.Keys));
        }

        foreach (var role in roles)
        {
            if (!catalog.TryGetValue(role, out var add))
            {
                throw new ConfigurationException($"CacheHost:Roles: unknown role '{role}'; known roles are {string.Join(", ", catalog.Keys)}");
            }

            add(builder);
        }

        // Meters and their export (CacheHost:Metrics, off by default): after the roles, which register their meters.
        builder.AddMetrics();

        // After the roles: -pidfile and -user run once every listener is bound, before READY.
        builder.Services.AddProcessControl();

        // A failed start is reported by CommandDispatcher in one line; the host's own "Hosting failed to
        // start" error carries the whole stack trace: only at debug level. Once started, the host's errors
        // (a crashed role's "BackgroundService failed" with its trace) are logged as before.
        levels.QuietUntilStarted = HostLogCategory;

        var host = builder.Build();
        host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStarted.Register(levels.MarkStarted);
        return host;
    }

    /// <summary>The Generic Host's own logger category.</summary>
    public const string HostLogCategory = "Microsoft.Extensions.Hosting.Internal.Host";

    // A JSON file that cannot be read is one line naming the file and the reason (README: exit 1), not an
    // unhandled InvalidDataException with its stack.
    private static void AddJsonFile(ConfigurationManager configuration, string path, bool optional, string? source)
    {
        var name = source is null ? path : $"{source}={path}";
        if (!optional && !File.Exists(path))
        {
            throw new ConfigurationException(Directory.Exists(path)
                ? $"{name}: is a directory, not a JSON file"
                : $"{name}: no such file" + (Directory.Exists(Path.GetDirectoryName(path)) ? "" : " (no such directory)"));
        }

        try
        {
            configuration.AddJsonFile(path, optional, reloadOnChange: false);
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException or UnauthorizedAccessException or FormatException)
        {
            var reason = ex;
            while (reason.InnerException is not null)
            {
                reason = reason.InnerException;
            }

            throw new ConfigurationException($"{name}: {reason.Message}", ex);
        }
    }

    /// <summary>The host's shutdown timeout when no role asks for more: above the transport's default 5 s budget.</summary>
    internal static readonly TimeSpan DefaultShutdownTimeout = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Time the host gives the roles to stop after a graceful connection budget ran out: aborting what is left
    /// and waiting for it (ConnectionServer.StopAsync allows 5 s), saving state.
    /// </summary>
    internal static readonly TimeSpan ShutdownMargin = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Derives HostOptions.ShutdownTimeout from the roles' <c>CacheHost:&lt;Role&gt;:Transport:ShutdownTimeout</c>
    /// (up to 10 min each): the largest budget plus <see cref="ShutdownMargin"/>, at least 15 s. A fixed host
    /// timeout below a role's budget would cut that role's graceful close short (the host stops waiting and
    /// the process exits with connections still open). Values that do not parse are left to the role's own
    /// validation, which names the key.
    /// </summary>
    internal static TimeSpan HostShutdownTimeout(IConfiguration configuration)
    {
        var longest = TimeSpan.Zero;
        foreach (var (key, value) in configuration.GetSection("CacheHost").AsEnumerable())
        {
            if (value is not null && key.EndsWith(":Transport:ShutdownTimeout", StringComparison.OrdinalIgnoreCase)
                && TimeSpan.TryParse(value, System.Globalization.CultureInfo.InvariantCulture, out var budget) && budget > longest)
            {
                longest = budget;
            }
        }

        var derived = longest + ShutdownMargin;
        return derived > DefaultShutdownTimeout ? derived : DefaultShutdownTimeout;
    }
}

/// <summary>A configuration problem found while composing the host; the message names the key.</summary>
internal sealed class ConfigurationException(string message, Exception? inner = null) : Exception(message, inner);
