using CacheHost.Core;
using CacheHost.Core.Metrics;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer.Storage;
using CacheHost.Transport;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.CacheServer;

/// <summary>Registers the CacheServer role.</summary>
public static class CacheServerRole
{
    /// <summary>Role name in CacheHost:Roles.</summary>
    public const string Name = "CacheServer";

    /// <summary>Binds <c>CacheHost:CacheServer</c> (validated at start) and registers the role's hosted service.</summary>
    public static IHostApplicationBuilder AddCacheServerRole(this IHostApplicationBuilder builder)
    {
        builder.Services.AddValidatedOptions<CacheServerOptions, CacheServerOptionsValidator>(CacheServerOptions.SectionName, static (section, o) => section.Bind(o, RoleOptionsExtensions.RejectUnknownKeys), Validate)
            .PostConfigure(o =>
            {
                // Loopback unless told otherwise: the cache has no authentication (memcached and Redis
                // default to loopback too). Not a property initialiser: the binder appends to lists.
                if (o.Listen.Count == 0 && o.TlsListen.Count == 0)
                {
                    o.Listen.Add(CacheServerOptions.DefaultListen);
                }
            });
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<CacheServerStatistics>();
        builder.Services.AddSingleton(sp => new SessionStore(
            sp.GetRequiredService<IOptions<CacheServerOptions>>().Value.Capacity,
            sp.GetRequiredService<TimeProvider>()));
        builder.Services.AddSingleton(sp => new RedisSessionStore(
            sp.GetRequiredService<IOptions<CacheServerOptions>>().Value.Redis,
            sp.GetRequiredService<ILoggerFactory>().CreateLogger<RedisSessionStore>()));
        // The store the role serves (CacheHost:CacheServer:Store); only the chosen one is created.
        builder.Services.AddSingleton<ISessionStore>(sp => sp.GetRequiredService<IOptions<CacheServerOptions>>().Value.Store == SessionStoreKind.Redis
            ? sp.GetRequiredService<RedisSessionStore>()
            : sp.GetRequiredService<SessionStore>());
        builder.Services.AddSingleton<CacheServerService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<CacheServerService>());
        builder.Services.AddRoleMetrics(static sp => new CacheServerMetrics(sp.GetRequiredService<CacheServerService>()));
        return builder;
    }

    private static IEnumerable<string> Validate(CacheServerOptions options)
    {
        for (var i = 0; i < options.Listen.Count; i++)
        {
            if (!TransportAddress.TryParse(options.Listen[i], out _, out var error))
            {
                yield return $"Listen:{i}: {error}";
            }
        }

        for (var i = 0; i < options.TlsListen.Count; i++)
        {
            var tls = options.TlsListen[i];
            if (string.IsNullOrEmpty(tls.Address))
            {
                yield return $"TlsListen:{i}:Address: a TLS listener needs an address (e.g. \"IP:0.0.0.0:9443\")";
            }
            else if (!TransportAddress.TryParse(tls.Address, out _, out var error))
            {
                yield return $"TlsListen:{i}:Address: {error}";
            }

            foreach (var problem in tls.Validate(server: true))
            {
                yield return $"TlsListen:{i}:{problem}";
            }
        }

        if (options.Store == SessionStoreKind.Redis && !string.IsNullOrEmpty(options.SnapshotPath))
        {
            // Redis keeps the sessions itself (its own persistence); a snapshot belongs to the memory store.
            yield return "SnapshotPath: only with Store=Memory (the Redis store's sessions live in Redis)";
        }

        if (options.Store == SessionStoreKind.Redis)
        {
            foreach (var problem in RedisSessionStore.Validate(options.Redis))
            {
                yield return problem;
            }
        }

        // A legal message must fit under the read pause threshold, or the reader would wait for bytes the
        // paused transport never delivers (the Pipelines backpressure deadlock).
        if (options.Transport.MaxReadBufferSize < DistCacheProtocol.MaxMessageWireSize)
        {
            yield return $"Transport:MaxReadBufferSize: must be at least {DistCacheProtocol.MaxMessageWireSize} bytes (one maximal distcache message)";
        }
    }
}
