using System.Net.Sockets;
using CacheHost.Core;
using CacheHost.Roles.CacheServer;
using CacheHost.Transport;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace CacheHost.Testing;

/// <summary>
/// A real CacheServer role in a real Generic Host, listening on a real socket, inside the test process.
/// Configuration goes through the same options binding and validation as the daemon.
/// </summary>
public sealed class InProcessCacheServer : IAsyncDisposable
{
    private InProcessCacheServer(IHost host, string address)
    {
        Host = host;
        Address = address;
        Service = host.Services.GetRequiredService<CacheServerService>();
    }

    /// <summary>The host.</summary>
    public IHost Host { get; }

    /// <summary>The listen address, e.g. UNIX:/tmp/chtest/x.sock.</summary>
    public string Address { get; }

    /// <summary>The running role.</summary>
    public CacheServerService Service { get; }

    /// <summary>
    /// Starts a server on a fresh unix socket (or <paramref name="listen"/>); <paramref name="services"/> may
    /// replace registrations after the role's (e.g. the ISessionStore).
    /// </summary>
    public static async Task<InProcessCacheServer> StartAsync(int capacity = 512, string? listen = null, IDictionary<string, string?>? extra = null, TimeProvider? clock = null,
        Action<IServiceCollection>? services = null)
    {
        listen ??= "UNIX:" + TestPaths.Socket("dcs");
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        var settings = new Dictionary<string, string?>
        {
            ["CacheHost:Roles:0"] = CacheServerRole.Name,
            ["CacheHost:CacheServer:Listen:0"] = listen,
            ["CacheHost:CacheServer:Capacity"] = capacity.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        if (extra is not null)
        {
            foreach (var (key, value) in extra)
            {
                settings[key] = value;
            }
        }

        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddSingleton<RoleFailures>();
        builder.Services.AddSingleton<IListenerFactory, DefaultListenerFactory>();
        if (clock is not null)
        {
            builder.Services.AddSingleton(clock);
        }

        builder.AddCacheServerRole();
        services?.Invoke(builder.Services);
        var host = builder.Build();
        await host.StartAsync().ConfigureAwait(false);
        var service = host.Services.GetRequiredService<CacheServerService>();
        return new InProcessCacheServer(host, service.ListenerAddresses.First());
    }

    /// <summary>A connected, blocking socket to the server.</summary>
    public Socket Connect() => ConnectTo(Address);

    /// <summary>A connected, blocking socket to any address.</summary>
    public static Socket ConnectTo(string address)
    {
        var parsed = TransportAddress.Parse(address);
        return OutboundConnector.ConnectSocketAsync(parsed).AsTask().GetAwaiter().GetResult();
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await Host.StopAsync(timeout.Token).ConfigureAwait(false);
        Host.Dispose();
    }
}
