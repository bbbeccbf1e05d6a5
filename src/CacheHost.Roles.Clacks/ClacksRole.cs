using CacheHost.Core;
using CacheHost.Core.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;

namespace CacheHost.Roles.Clacks;

/// <summary>Registers the Clacks role (options section <c>CacheHost:Clacks</c>).</summary>
public static class ClacksRole
{
    /// <summary>Role name in CacheHost:Roles.</summary>
    public const string Name = "Clacks";

    /// <summary>Binds and validates <see cref="ClacksOptions"/> and adds the Clacks hosted service.</summary>
    public static IHostApplicationBuilder AddClacksRole(this IHostApplicationBuilder builder)
    {
        builder.Services.AddValidatedOptions<ClacksOptions, ClacksOptionsValidator>(ClacksOptions.SectionName, static (section, o) => section.Bind(o, RoleOptionsExtensions.RejectUnknownKeys), o => o.Validate());
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<ClacksService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ClacksService>());
        builder.Services.AddRoleMetrics(static sp => new ClacksMetrics(sp.GetRequiredService<ClacksService>()));
        return builder;
    }
}
