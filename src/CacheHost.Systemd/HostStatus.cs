using System.Text;
using CacheHost.Core;
using CacheHost.Core.Status;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace CacheHost.Systemd;

/// <summary>
/// The daemon's state in one line (systemd STATUS=, the statedump's role lines) and the health verdict the
/// watchdog heartbeat uses. Roles are discovered lazily from the hosted services, so this type can be used
/// by hosted services without a dependency cycle.
/// </summary>
public sealed class HostStatus(IServiceProvider services, RoleFailures failures)
{
    private IReadOnlyList<IHostedService>? _hosted;
    private IReadOnlyList<IRoleStatusProvider>? _providers;

    /// <summary>One role's state, for statedump.</summary>
    public sealed record RoleState(string Name, IReadOnlyList<(string Address, int Connections)> Listeners, string? Summary);

    /// <summary>Extra entries that are not roles (the control socket), e.g. "control UNIX:/run/cachehost/control.sock".</summary>
    public string? ControlAddress { get; set; }

    /// <summary>Set after a failed reload so STATUS shows it until the next successful one.</summary>
    public string? LastReloadProblem { get; set; }

    /// <summary>The roles' current state.</summary>
    public IReadOnlyList<RoleState> Roles()
    {
        var hosted = _hosted ??= services.GetServices<IHostedService>().ToArray();
        var providers = _providers ??= hosted.OfType<IRoleStatusProvider>()
            .Concat(services.GetServices<IRoleStatusProvider>())
            .Distinct()
            .ToArray();
        var result = new List<RoleState>();
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var role in hosted.OfType<ListenerRoleService>())
        {
            var listeners = role.Servers.Select(s => (s.Listener.DisplayAddress, s.ActiveConnections)).ToArray();
            var summaries = providers.Where(p => string.Equals(p.RoleName, role.RoleName, StringComparison.OrdinalIgnoreCase)).Select(SafeSummary);
            result.Add(new RoleState(role.RoleName, listeners, JoinOrNull(summaries)));
            seen.Add(role.RoleName);
        }

        foreach (var group in providers.Where(p => !seen.Contains(p.RoleName)).GroupBy(p => p.RoleName, StringComparer.OrdinalIgnoreCase))
        {
            result.Add(new RoleState(group.Key, [], JoinOrNull(group.Select(SafeSummary))));
        }

        return result;
    }

    /// <summary>The one-line summary, e.g. "CacheServer IP:127.0.0.1:9001 conns=2 sessions=10/512; control UNIX:…".</summary>
    public string Line()
    {
        var text = new StringBuilder();
        foreach (var role in Roles())
        {
            if (text.Length > 0)
            {
                text.Append("; ");
            }

            text.Append(role.Name);
            foreach (var (address, connections) in role.Listeners)
            {
                text.Append(' ').Append(address).Append(" conns=").Append(connections);
            }

            if (role.Summary is not null)
            {
                text.Append(' ').Append(role.Summary);
            }
        }

        if (ControlAddress is not null)
        {
            text.Append(text.Length > 0 ? "; " : "").Append("control ").Append(ControlAddress);
        }

        if (LastReloadProblem is not null)
        {
            text.Append("; reload failed: ").Append(LastReloadProblem);
        }

        var line = text.ToString().ReplaceLineEndings(" ");
        return line.Length > 1000 ? line[..1000] + "..." : line;
    }

    /// <summary>Why the daemon is not healthy (a crashed role, a failed accept loop, a role reporting itself wedged), or null.</summary>
    public string? UnhealthyReason()
    {
        if (failures.Any)
        {
            var (role, error) = failures.Snapshot()[0];
            return $"role {role} failed: {error.Message}";
        }

        var hosted = _hosted ??= services.GetServices<IHostedService>().ToArray();
        foreach (var role in hosted.OfType<ListenerRoleService>())
        {
            foreach (var server in role.Servers)
            {
                if (server.Completion.IsFaulted)
                {
                    return $"role {role.RoleName}: accept loop on {server.Listener.DisplayAddress} failed";
                }
            }
        }

        _ = Roles();
        foreach (var provider in _providers!)
        {
            if (!provider.IsHealthy)
            {
                return $"role {provider.RoleName} reports itself unhealthy";
            }
        }

        return null;
    }

    private static string SafeSummary(IRoleStatusProvider provider)
    {
        try
        {
            return provider.StatusSummary().ReplaceLineEndings(" ");
        }
        catch (Exception ex)
        {
            return $"(status failed: {ex.Message})";
        }
    }

    private static string? JoinOrNull(IEnumerable<string> parts)
    {
        var joined = string.Join(' ', parts.Where(p => p.Length > 0));
        return joined.Length == 0 ? null : joined;
    }
}
