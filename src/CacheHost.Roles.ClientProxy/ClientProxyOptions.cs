using System.ComponentModel.DataAnnotations;
using CacheHost.Transport;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.ClientProxy;

/// <summary>
/// Settings of the ClientProxy role, section <c>CacheHost:ClientProxy</c>. The dc_client command line
/// (<c>cachehost client -server … -listen … -retry … -idle …</c>, distcache §10.1) maps onto these keys.
/// </summary>
public sealed class ClientProxyOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "CacheHost:ClientProxy";

    /// <summary>Local address applications connect to (dc_client's <c>-listen</c>). Default <c>UNIX:/tmp/scache</c>.</summary>
    [Required]
    public string Listen { get; set; } = "UNIX:/tmp/scache";

    /// <summary>
    /// The cache server's address (dc_client's <c>-server</c>/<c>-connect</c>); the first, preferred server when
    /// <see cref="Servers"/> names more. This or Servers is required; must be connectable by syntax.
    /// </summary>
    public string? Server { get; set; }

    /// <summary>
    /// Servers in order of preference (after <see cref="Server"/>, if that is set too): the link uses the first that
    /// answers and moves to the next when it drops (failover). The second and later <c>-server</c> flags.
    /// </summary>
    public List<string> Servers { get; set; } = [];

    /// <summary>
    /// While the link is on another server than the first of <see cref="ServerList"/>, try the first this often and
    /// move back to it once it answers (failback); new requests go to it at once, the old link closes when its
    /// requests are answered (at most ConnectTimeout later). Zero, the default, stays on the server in use until
    /// its link drops: with memory stores a move loses the sessions written meanwhile.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan FailbackAfter { get; set; }

    /// <summary>Minimum time between reconnect attempts in ms (dc_client's <c>-retry</c>, default 5000, 1..3600000).</summary>
    [Range(1, 3_600_000)]
    public int RetryMs { get; set; } = 5000;

    /// <summary>
    /// Close a local connection with no request open whose last activity (connect or last forward) is at least
    /// this many ms old (dc_client's <c>-idle</c>); 0 = never (default), up to 3600000.
    /// </summary>
    [Range(0, 3_600_000)]
    public int IdleMs { get; set; }

    /// <summary>Requests in flight to the server at most (the reference's fixed 512, distcache §10.2).</summary>
    [Range(1, 65_536)]
    public int MaxInFlight { get; set; } = 512;

    /// <summary>
    /// What the server is: <see cref="ClientProxyServerKind.Original"/> (the default: the C dc_server, or not
    /// known) or <see cref="ClientProxyServerKind.CacheHost"/> (CacheHost's own CacheServer). Nothing on the wire
    /// tells them apart safely, so only this setting unlocks pipelining to the server: the original answers
    /// pipelined requests wrongly (phantom replies of distcache §13.1, taken as answers) or drops the link (13.4).
    /// </summary>
    public ClientProxyServerKind ServerKind { get; set; } = ClientProxyServerKind.Original;

    /// <summary>
    /// Pipelining depth to the server: how many requests may be outstanding on the upstream link; 0 = automatic:
    /// <see cref="MaxInFlight"/> with <see cref="ServerKind"/> CacheHost, 1 otherwise. Above 1 requires ServerKind
    /// CacheHost (validated).
    /// </summary>
    [Range(0, 65_536)]
    public int ServerPipelineDepth { get; set; }

    /// <summary>
    /// Answer a forwarded request with 0x02 and drop the server link (then reconnect) when the server has not
    /// answered it after this many ms; 0 = wait forever (default, as dc_client). Checked every quarter of it.
    /// </summary>
    [Range(0, 3_600_000)]
    public int RequestTimeoutMs { get; set; }

    /// <summary>
    /// Requests read from local clients in one round of an epoll loop leave for the server in one write at the
    /// end of that round (default true), as dc_client's select loop sends everything one select() produced. A
    /// request never waits longer than the round it arrived in. False writes every request as it arrives.
    /// </summary>
    public bool CoalesceWrites { get; set; } = true;

    /// <summary>
    /// Serve the local connections and the server link on one epoll loop (default true), as dc_client serves
    /// everything from one select loop: every request of a round then shares the round's one upstream write, and
    /// answers go back to the clients from the thread that read them. On a 2-core host this took the proxy from
    /// 24 to 16 µs of CPU per request (docs/distcache-tools.md, benchmarks). False spreads the local connections
    /// over all loops (the upstream link is one connection either way).
    /// </summary>
    public bool SingleLoop { get; set; } = true;

    /// <summary>Time limit for one connect attempt to the server.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:10:00")]
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Exit cleanly on SIGUSR1/SIGUSR2 (dc_client's <c>-killable</c>); otherwise they are ignored.</summary>
    public bool Killable { get; set; }

    /// <summary>
    /// Limits and unix socket owner/group/mode (<c>-sockowner/-sockgroup/-sockperms</c>) of the local listener.
    /// MaxConnections defaults to the reference's 1024 local connections.
    /// </summary>
    [ValidateObjectMembers]
    public TransportOptions Transport { get; set; } = new() { MaxConnections = 1024 };

    /// <summary>
    /// TLS on the upstream link (on when a certificate or a CA is set): the client certificate for mutual TLS, the
    /// CA the server's certificate must chain to, allow-lists, handshake limit (<see cref="TlsOptions"/>).
    /// dc_client's <c>-tls-cert/-tls-key/-tls-ca/-tls-verify</c>. Plain, like dc_client, when unset.
    /// </summary>
    [ValidateObjectMembers]
    public TlsOptions ServerTls { get; set; } = new();

    /// <summary>Limits of the upstream connection to the server.</summary>
    [ValidateObjectMembers]
    public TransportOptions ServerTransport { get; set; } = new();

    /// <summary>Every server, first = preferred: <see cref="Server"/> (if set), then <see cref="Servers"/>.</summary>
    public IReadOnlyList<string> ServerList => Server is { } first ? [first, .. Servers] : Servers;

    /// <summary>The effective number of requests outstanding upstream.</summary>
    public int EffectiveDepth => ServerPipelineDepth == 0
        ? (ServerKind == ClientProxyServerKind.CacheHost ? MaxInFlight : 1)
        : Math.Min(ServerPipelineDepth, MaxInFlight);
}

/// <summary>The kind of server the proxy forwards to (<see cref="ClientProxyOptions.ServerKind"/>).</summary>
public enum ClientProxyServerKind
{
    /// <summary>
    /// The original C dc_server, or unknown: one request on the link at a time, and ADDs the original stores
    /// corrupted (distcache §13.1) are refused.
    /// </summary>
    Original,

    /// <summary>CacheHost's CacheServer: requests are pipelined up to MaxInFlight.</summary>
    CacheHost,
}

/// <summary>
/// The DataAnnotations checks of <see cref="ClientProxyOptions"/>, generated at build time (no reflection, NativeAOT); nested
/// option objects are checked where marked [ValidateObjectMembers]. RoleOptionsExtensions names the keys.
/// </summary>
[OptionsValidator]
public sealed partial class ClientProxyOptionsValidator : IValidateOptions<ClientProxyOptions>
{
}
