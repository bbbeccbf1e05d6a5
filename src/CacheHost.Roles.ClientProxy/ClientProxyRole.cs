using CacheHost.Core;
using CacheHost.Core.Metrics;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;

namespace CacheHost.Roles.ClientProxy;

/// <summary>Registers the ClientProxy role.</summary>
public static class ClientProxyRole
{
    /// <summary>Role name in CacheHost:Roles.</summary>
    public const string Name = "ClientProxy";

    /// <summary>Binds <c>CacheHost:ClientProxy</c> (validated at start) and registers the role's hosted service.</summary>
    public static IHostApplicationBuilder AddClientProxyRole(this IHostApplicationBuilder builder)
    {
        builder.Services.AddValidatedOptions<ClientProxyOptions, ClientProxyOptionsValidator>(ClientProxyOptions.SectionName, static (section, o) => section.Bind(o, RoleOptionsExtensions.RejectUnknownKeys), Validate);
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<ClientProxyService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ClientProxyService>());
        builder.Services.AddRoleMetrics(static sp => new ClientProxyMetrics(sp.GetRequiredService<ClientProxyService>()));
        return builder;
    }

    private static IEnumerable<string> Validate(ClientProxyOptions options)
    {
        if (!TransportAddress.TryParse(options.Listen, out _, out var error))
        {
            yield return $"Listen: bad listen address: {error}";
        }

        if (options.ServerList.Count == 0)
        {
            yield return "Server: no server specified (e.g. \"IP:127.0.0.1:9001\" or \"UNIX:/run/cachehost/dc.sock\")";
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < options.ServerList.Count; i++)
        {
            // The key as the user wrote it: Server, or Servers:n.
            var key = options.Server is null ? $"Servers:{i}" : i == 0 ? "Server" : $"Servers:{i - 1}";
            var text = options.ServerList[i];
            if (!TransportAddress.TryParse(text, out var server, out var serverError))
            {
                yield return $"{key}: {serverError}";
            }
            else if (server.Kind is TransportAddressKind.Tcp4 or TransportAddressKind.Tcp6 && server.Host is null)
            {
                // dc_client: "Error, internal initialisation problems" for e.g. IP:9001 (distcache §10.1).
                yield return $"{key}: '{text}' cannot be connected to (a host is required, e.g. IP:127.0.0.1:9001)";
            }
            else if (!seen.Add(server.Text))
            {
                yield return $"{key}: '{text}' is listed twice";
            }
        }

        if (options.ServerPipelineDepth > 1 && options.ServerKind != ClientProxyServerKind.CacheHost)
        {
            yield return "ServerPipelineDepth: above 1 needs ServerKind=CacheHost: the original dc_server answers pipelined requests wrongly or drops the link (distcache 13.1, 13.4)";
        }

        if (options.ServerTls.IsClientConfigured)
        {
            foreach (var problem in options.ServerTls.Validate(server: false))
            {
                yield return $"ServerTls:{problem}";
            }
        }

        foreach (var (name, transport) in new[] { ("Transport", options.Transport), ("ServerTransport", options.ServerTransport) })
        {
            if (transport.MaxReadBufferSize < DistCacheProtocol.MaxMessageWireSize)
            {
                yield return $"{name}:MaxReadBufferSize: must be at least {DistCacheProtocol.MaxMessageWireSize} bytes (one maximal distcache message)";
            }
        }
    }
}
