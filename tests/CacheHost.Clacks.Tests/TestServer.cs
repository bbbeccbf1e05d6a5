using CacheHost.Core;
using CacheHost.Roles.Clacks;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace CacheHost.Clacks.Tests;

/// <summary>A real Clacks role in an in-process host, configured by key/value pairs under CacheHost:Clacks.</summary>
internal sealed class TestServer : IAsyncDisposable
{
    private readonly IHost _host;

    private TestServer(IHost host, string socket)
    {
        _host = host;
        Socket = socket;
    }

    public string Socket { get; }

    public ClacksService Service => _host.Services.GetRequiredService<ClacksService>();

    /// <summary>The TLS port when Ips were configured with port 0.</summary>
    public int TlsPort => int.Parse(Service.ListenerAddresses.First(a => a.StartsWith("IP", StringComparison.Ordinal)).Split(':').Last());

    /// <summary>Starts the role; <paramref name="clock"/> replaces the host's TimeProvider (all of the role's timers).</summary>
    public static async Task<TestServer> StartAsync(string socket, Dictionary<string, string?>? settings = null, TimeProvider? clock = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        var config = new Dictionary<string, string?>
        {
            ["CacheHost:Clacks:Username"] = "admin",
            ["CacheHost:Clacks:Password"] = "adminpass",
            ["CacheHost:Clacks:Sockets:0"] = socket,
            ["CacheHost:Clacks:Users:0:Username"] = "rwuser",
            ["CacheHost:Clacks:Users:0:Password"] = "rwpass",
            ["CacheHost:Clacks:Users:0:Read"] = "true",
            ["CacheHost:Clacks:Users:0:Write"] = "true",
            ["CacheHost:Clacks:Users:1:Username"] = "rouser",
            ["CacheHost:Clacks:Users:1:Password"] = "ropass",
            ["CacheHost:Clacks:Users:1:Read"] = "true",
            ["CacheHost:Clacks:InterclacksReconnectTimeout"] = "0.3",
            ["CacheHost:Clacks:InterclacksReconnectJitter"] = "0",
            ["CacheHost:Clacks:InterclacksPingTimeout"] = "6",
        };
        foreach (var (key, value) in settings ?? [])
        {
            config[key.StartsWith("CacheHost:", StringComparison.Ordinal) ? key : "CacheHost:Clacks:" + key] = value;
        }

        builder.Configuration.AddInMemoryCollection(config);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddSingleton<RoleFailures>();
        builder.Services.AddSingleton<IListenerFactory, DefaultListenerFactory>();
        if (clock is not null)
        {
            builder.Services.AddSingleton(clock);
        }

        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));
        builder.AddClacksRole();
        var host = builder.Build();
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        return new TestServer(host, socket);
    }

    public async Task StopAsync() => await _host.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync();
        }
        catch (ObjectDisposedException)
        {
        }

        _host.Dispose();
    }
}

/// <summary>A scratch directory for sockets and files; short paths because sun_path is 108 bytes.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine("/tmp", "clk" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
