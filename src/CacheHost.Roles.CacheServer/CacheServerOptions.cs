using System.ComponentModel.DataAnnotations;
using CacheHost.Transport;

namespace CacheHost.Roles.CacheServer;

/// <summary>
/// Settings of the CacheServer role, section <c>CacheHost:CacheServer</c>. The dc_server command line
/// (<c>cachehost server -listen … -sessions …</c>) maps onto these keys.
/// </summary>
public sealed class CacheServerOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "CacheHost:CacheServer";

    /// <summary>The listen address when none is configured: loopback only.</summary>
    public const string DefaultListen = "IP:127.0.0.1:9001";

    /// <summary>
    /// Addresses to listen on (<c>UNIX:/path</c>, <c>IP:host:port</c>, <c>IP:port</c>, <c>IPv6:[addr]:port</c>,
    /// <c>FD:n</c>); a single string is a one-element list. dc_server's <c>-listen</c>. Default
    /// <see cref="DefaultListen"/>.
    /// </summary>
    public List<string> Listen { get; set; } = [];

    /// <summary>
    /// Maximum sessions held (dc_server's <c>-sessions</c>, default 512). Unlike the reference this is not
    /// capped at 60000: millions work, memory permitting (about 200 bytes of overhead per session plus data).
    /// </summary>
    [Range(1, 500_000_000)]
    public int Capacity { get; set; } = 512;

    /// <summary>
    /// Also log the stats line whenever the operation count crosses a multiple of this (dc_server's
    /// <c>-progress</c>); 0 = only the once-a-second line when the session count changed.
    /// </summary>
    [Range(0, long.MaxValue)]
    public long Progress { get; set; }

    /// <summary>How often the stats line may be logged and expired sessions are purged in the background.</summary>
    [Range(typeof(TimeSpan), "00:00:00.050", "01:00:00")]
    public TimeSpan StatsInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Exit cleanly on SIGUSR1/SIGUSR2 (dc_server's <c>-killable</c>); otherwise they are ignored.</summary>
    public bool Killable { get; set; }

    /// <summary>Socket limits and unix socket owner/group/mode for the listeners.</summary>
    public TransportOptions Transport { get; set; } = new();
}
