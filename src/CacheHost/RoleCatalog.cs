using CacheHost.Roles.CacheServer;
using Microsoft.Extensions.Hosting;

namespace CacheHost;

/// <summary>
/// The roles this executable can run, by the name used in <c>CacheHost:Roles</c>. This is the only place
/// that knows every role; roles never reference each other.
/// How to add a role: give its project an <c>Add{Role}Role(this IHostApplicationBuilder)</c> extension that
/// binds its options section with ValidateOnStart and registers its hosted service, then add one line here.
/// Only shipped roles belong here: a test fixture role (tests/CacheHost.Roles.Probe) is added by its own test
/// executable through <see cref="CommandDispatcher.Run(string[], IReadOnlyDictionary{string, Action{IHostApplicationBuilder}}?)"/>.
/// </summary>
internal static class RoleCatalog
{
    public static readonly IReadOnlyDictionary<string, Action<IHostApplicationBuilder>> Roles =
        new Dictionary<string, Action<IHostApplicationBuilder>>(StringComparer.OrdinalIgnoreCase)
        {
            [CacheHost.Roles.CacheServer.CacheServerRole.Name] = static b => b.AddCacheServerRole(),
            [CacheHost.Roles.ClientProxy.ClientProxyRole.Name] = static b => CacheHost.Roles.ClientProxy.ClientProxyRole.AddClientProxyRole(b),
            [CacheHost.Roles.Snoop.SnoopRole.Name] = static b => CacheHost.Roles.Snoop.SnoopRole.AddSnoopRole(b),
            [CacheHost.Roles.Clacks.ClacksRole.Name] = static b => CacheHost.Roles.Clacks.ClacksRole.AddClacksRole(b),
            [CacheHost.Roles.ProcessSupervisor.ProcessSupervisorRole.Name] = static b => CacheHost.Roles.ProcessSupervisor.ProcessSupervisorRole.AddProcessSupervisorRole(b),
        };

    /// <summary>
    /// Keys that take a list of addresses. A single string there is accepted as a one-element list
    /// (<see cref="CacheHost.Core.SingleValueListConfiguration"/>); users write <c>"Listen": "IP:…"</c>.
    /// </summary>
    public static readonly IReadOnlyCollection<string> AddressListKeys =
    [
        CacheHost.Roles.CacheServer.CacheServerOptions.SectionName + ":Listen",
        CacheHost.Roles.Clacks.ClacksOptions.SectionName + ":Ips",
        CacheHost.Roles.Clacks.ClacksOptions.SectionName + ":Sockets",
    ];
}
