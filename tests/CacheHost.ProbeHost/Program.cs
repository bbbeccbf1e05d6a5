using CacheHost;
using CacheHost.Roles.Probe;
using Microsoft.Extensions.Hosting;

// The shipped roles plus the Probe fixture, through the product's own command dispatcher: everything but the
// role table is the real program.
var roles = new Dictionary<string, Action<IHostApplicationBuilder>>(RoleCatalog.Roles, StringComparer.OrdinalIgnoreCase)
{
    [ProbeRole.Name] = static b => b.AddProbeRole(),
};
return CommandDispatcher.Run(args, roles);
