using CacheHost.Core;
using CacheHost.Core.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>Registers the ProcessSupervisor role (section <c>CacheHost:ProcessSupervisor</c>).</summary>
public static class ProcessSupervisorRole
{
    /// <summary>Role name in CacheHost:Roles.</summary>
    public const string Name = "ProcessSupervisor";

    /// <summary>Binds and validates the options and adds the supervisor's hosted service.</summary>
    public static IHostApplicationBuilder AddProcessSupervisorRole(this IHostApplicationBuilder builder)
    {
        builder.Services.AddValidatedOptions<ProcessSupervisorOptions, ProcessSupervisorOptionsValidator>(ProcessSupervisorOptions.SectionName, static (section, o) => section.Bind(o, RoleOptionsExtensions.RejectUnknownKeys), o =>
            string.IsNullOrEmpty(o.ConfigFile) && string.IsNullOrEmpty(o.SocketPath)
                ? ["ConfigFile: set ConfigFile and/or SocketPath"]
                : o.ConfigFile is { Length: > 0 } f && !File.Exists(f) ? [$"ConfigFile: file '{f}' does not exist"] : []);
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddHostedService<ProcessSupervisorService>();
        builder.Services.AddRoleMetrics(static sp => new SupervisorMetrics(sp.GetServices<IHostedService>().OfType<ProcessSupervisorService>().Single()));
        return builder;
    }
}
