using CacheHost.Core;
using CacheHost.Core.Metrics;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer.Storage;
using CacheHost.Transport;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
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
                if (o.Listen.Count == 0)
                {
                    o.Listen.Add(CacheServerOptions.DefaultListen);
                }
            });
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<CacheServerStatistics>();
        builder.Services.AddSingleton(sp => new SessionStore(
            sp.GetRequiredService<IOptions<CacheServerOptions>>().Value.Capacity,
            sp.GetRequiredService<TimeProvider>()));
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

        // A legal message must fit under the read pause threshold, or the reader would wait for bytes the
        // paused transport never delivers (the Pipelines backpressure deadlock).
        if (options.Transport.MaxReadBufferSize < DistCacheProtocol.MaxMessageWireSize)
        {
            yield return $"Transport:MaxReadBufferSize: must be at least {DistCacheProtocol.MaxMessageWireSize} bytes (one maximal distcache message)";
        }
    }
}
