namespace CacheHost.Core.Status;

/// <summary>
/// A role's contribution to the daemon's one-line status (systemd <c>STATUS=</c>, <c>statedump</c>) and to
/// the watchdog's health check. Implement it on the role's hosted service (the host finds it there) or
/// register an instance as a singleton <see cref="IRoleStatusProvider"/>.
/// </summary>
/// <remarks>
/// Listener addresses and connection counts of <see cref="ListenerRoleService"/> roles are reported
/// without this interface; add only what is specific to the role, e.g. <c>sessions=12/512</c> or
/// <c>services=3 up=2</c>. Keep it short (tens of characters) and cheap (it runs every few seconds).
/// </remarks>
public interface IRoleStatusProvider
{
    /// <summary>Role name as used in CacheHost:Roles, e.g. "CacheServer".</summary>
    string RoleName { get; }

    /// <summary>A short summary without newlines, e.g. "sessions=12/512 hits=40 misses=2".</summary>
    string StatusSummary();

    /// <summary>
    /// False when the role knows it is wedged (e.g. a worker thread stopped making progress). The systemd
    /// watchdog heartbeat stops pinging while any role is unhealthy, so systemd restarts the daemon.
    /// </summary>
    bool IsHealthy => true;
}
