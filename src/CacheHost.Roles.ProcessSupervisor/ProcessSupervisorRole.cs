using CacheHost.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>Registers the ProcessSupervisor role (section <c>CacheHost:ProcessSupervisor</c>).</summary>
public static class ProcessSupervisorRole
{
    /// <summary>Binds and validates the options and adds the supervisor's hosted service.</summary>
    public static IHostApplicationBuilder AddProcessSupervisorRole(this IHostApplicationBuilder builder)
    {
        builder.Services.AddValidatedOptions<ProcessSupervisorOptions, ProcessSupervisorOptionsValidator>("CacheHost:ProcessSupervisor", static (section, o) => section.Bind(o, RoleOptionsExtensions.RejectUnknownKeys), o =>
            string.IsNullOrEmpty(o.ConfigFile) && string.IsNullOrEmpty(o.SocketPath)
                ? ["ConfigFile: set ConfigFile and/or SocketPath"]
                : o.ConfigFile is { Length: > 0 } f && !File.Exists(f) ? [$"ConfigFile: file '{f}' does not exist"] : []);
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddHostedService<ProcessSupervisorService>();
        return builder;
    }
}
