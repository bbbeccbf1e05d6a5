using CacheHost.Core;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;

namespace CacheHost.Roles.Snoop;

/// <summary>Registers the Snoop role.</summary>
public static class SnoopRole
{
    /// <summary>Role name in CacheHost:Roles.</summary>
    public const string Name = "Snoop";

    /// <summary>Binds <c>CacheHost:Snoop</c> (validated at start) and registers the role's hosted service.</summary>
    public static IHostApplicationBuilder AddSnoopRole(this IHostApplicationBuilder builder)
    {
        builder.Services.AddValidatedOptions<SnoopOptions, SnoopOptionsValidator>(SnoopOptions.SectionName, static (section, o) => section.Bind(o, RoleOptionsExtensions.RejectUnknownKeys), Validate);
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<SnoopService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<SnoopService>());
        return builder;
    }

    private static IEnumerable<string> Validate(SnoopOptions options)
    {
        if (options.Listen is not null && !TransportAddress.TryParse(options.Listen, out _, out var error))
        {
            yield return $"Listen: {error}";
        }

        if (options.Server is not null && !TransportAddress.TryParse(options.Server, out _, out var serverError))
        {
            yield return $"Server: {serverError}";
        }

        if (options.Tls.IsServerConfigured || !string.IsNullOrEmpty(options.Tls.Key))
        {
            foreach (var problem in options.Tls.Validate(server: true))
            {
                yield return $"Tls:{problem}";
            }
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
                yield return $"{name}:MaxReadBufferSize: must be at least {DistCacheProtocol.MaxMessageWireSize} bytes";
            }
        }
    }
}
