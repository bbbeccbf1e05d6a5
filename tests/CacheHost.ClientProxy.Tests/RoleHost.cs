using System.Collections.Concurrent;
using CacheHost.Core;
using CacheHost.Roles.ClientProxy;
using CacheHost.Roles.Snoop;
using CacheHost.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace CacheHost.ClientProxy.Tests;

/// <summary>A real ClientProxy or Snoop role in a real Generic Host inside the test process, on a fresh unix socket.</summary>
internal sealed class RoleHost : IAsyncDisposable
{
    private RoleHost(IHost host, string address, CapturedLogs logs)
    {
        Host = host;
        Address = address;
        Logs = logs;
    }

    public IHost Host { get; }

    public string Address { get; }

    public CapturedLogs Logs { get; }

    public ClientProxyService Proxy => Host.Services.GetRequiredService<ClientProxyService>();

    public SnoopService Snoop => Host.Services.GetRequiredService<SnoopService>();

    /// <summary>Starts a ClientProxy towards <paramref name="server"/>; waits for the server link unless told not to.</summary>
    public static async Task<RoleHost> StartProxyAsync(string server, IDictionary<string, string?>? extra = null, bool waitForLink = true, TimeProvider? clock = null, ILoggerProvider? logs = null)
    {
        var listen = "UNIX:" + TestPaths.Socket("px");
        var settings = new Dictionary<string, string?>
        {
            ["CacheHost:ClientProxy:Listen"] = listen,
            ["CacheHost:ClientProxy:Server"] = server,
            ["CacheHost:ClientProxy:RetryMs"] = "1000",
            // Most tests talk to CacheHost's own server or to fakes of it; tests of the original's defects say Original.
            ["CacheHost:ClientProxy:ServerKind"] = "CacheHost",
        };
        Merge(settings, extra);
        var host = await StartAsync(settings, b => b.AddClientProxyRole(), out var captured, clock, logs).ConfigureAwait(false);
        var role = new RoleHost(host, listen, captured);
        if (waitForLink)
        {
            await WaitUntilAsync(() => role.Proxy.IsServerConnected, TimeSpan.FromSeconds(10), "the proxy's server link").ConfigureAwait(false);
        }

        return role;
    }

    /// <summary>Starts a Snoop towards <paramref name="server"/>.</summary>
    public static async Task<RoleHost> StartSnoopAsync(string server, IDictionary<string, string?>? extra = null, TimeProvider? clock = null, ILoggerProvider? logs = null)
    {
        var listen = "UNIX:" + TestPaths.Socket("sn");
        var settings = new Dictionary<string, string?>
        {
            ["CacheHost:Snoop:Listen"] = listen,
            ["CacheHost:Snoop:Server"] = server,
        };
        Merge(settings, extra);
        var host = await StartAsync(settings, b => b.AddSnoopRole(), out var captured, clock, logs).ConfigureAwait(false);
        return new RoleHost(host, listen, captured);
    }

    /// <summary>
    /// Advances <paramref name="clock"/> by <paramref name="step"/> until <paramref name="condition"/> holds, bounded in
    /// real time: a wait the role arms on the clock (a retry pause) may not exist yet when the clock first moves.
    /// </summary>
    public static async Task AdvanceUntilAsync(FakeTimeProvider clock, TimeSpan step, Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"timed out advancing the clock for {what}");
            }

            clock.Advance(step);
            await Task.Delay(10).ConfigureAwait(false);
        }
    }

    public static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"timed out waiting for {what}");
            }

            await Task.Delay(10).ConfigureAwait(false);
        }
    }

    private static void Merge(Dictionary<string, string?> settings, IDictionary<string, string?>? extra)
    {
        if (extra is not null)
        {
            foreach (var (key, value) in extra)
            {
                settings[key] = value;
            }
        }
    }

    private static Task<IHost> StartAsync(Dictionary<string, string?> settings, Action<IHostApplicationBuilder> addRole, out CapturedLogs logs,
        TimeProvider? clock = null, ILoggerProvider? extraLogs = null)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddSingleton<RoleFailures>();
        builder.Services.AddSingleton<IListenerFactory, DefaultListenerFactory>();
        var captured = new CapturedLogs();
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Debug);
        builder.Logging.AddProvider(captured);
        if (extraLogs is not null)
        {
            builder.Logging.AddProvider(extraLogs);
        }

        if (clock is not null)
        {
            builder.Services.AddSingleton(clock);
        }

        addRole(builder);
        logs = captured;
        return StartHostAsync(builder.Build());
    }

    private static async Task<IHost> StartHostAsync(IHost host)
    {
        await host.StartAsync().ConfigureAwait(false);
        return host;
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await Host.StopAsync(timeout.Token).ConfigureAwait(false);
        Host.Dispose();
    }
}

/// <summary>Collects formatted log messages (with their event ids) for assertions.</summary>
internal sealed class CapturedLogs : ILoggerProvider
{
    private readonly ConcurrentQueue<(int EventId, LogLevel Level, string Message)> _entries = new();

    public IReadOnlyList<(int EventId, LogLevel Level, string Message)> Entries => [.. _entries];

    public IEnumerable<string> Messages(int eventId) => _entries.Where(e => e.EventId == eventId).Select(e => e.Message);

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void Dispose()
    {
    }

    private sealed class Logger(CapturedLogs owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._entries.Enqueue((eventId.Id, logLevel, formatter(state, exception)));
    }
}
