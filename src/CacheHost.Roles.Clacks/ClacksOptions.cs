using System.ComponentModel.DataAnnotations;
using CacheHost.Transport;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// Settings of the Clacks role (<c>CacheHost:Clacks</c>). Names follow the original XML elements
/// (clacks §14.2); times are seconds (fractions allowed). <c>cachehost clacks CONFIG.xml</c> maps the XML file
/// onto these keys.
/// </summary>
public sealed class ClacksOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "CacheHost:Clacks";

    /// <summary>Main user name (all permissions including interclacks). Required.</summary>
    [Required]
    public string Username { get; set; } = string.Empty;

    /// <summary>Main user password. Required.</summary>
    [Required]
    public string Password { get; set; } = string.Empty;

    /// <summary>Extra users with read/write/manage permissions (never interclacks).</summary>
    public List<ClacksUserOptions> Users { get; set; } = [];

    /// <summary>TCP listen addresses (IPv4/IPv6 literal or host name); all use <see cref="Port"/> and TLS.</summary>
    public List<string> Ips { get; set; } = [];

    /// <summary>TCP port for all <see cref="Ips"/> (0 = any free port, for tests).</summary>
    [Range(0, 65535)]
    public int? Port { get; set; }

    /// <summary>PEM certificate (chain) for TLS.</summary>
    public string? SslCert { get; set; }

    /// <summary>PEM private key for TLS.</summary>
    public string? SslKey { get; set; }

    /// <summary>TLS handshake limit in seconds (fix of quirk Q10: the reference handshakes synchronously).</summary>
    [Range(0.1, 600)]
    public double TlsHandshakeTimeout { get; set; } = 15;

    /// <summary>Unix socket paths to listen on (plain text, no TLS).</summary>
    public List<string> Sockets { get; set; } = [];

    /// <summary>Argument for <c>chmod</c> applied to each socket after binding (e.g. 0660, g+rw).</summary>
    public string? SocketChmod { get; set; }

    /// <summary>Shell commands run (via /bin/sh -c) after each socket is created.</summary>
    public List<string> SocketCommands { get; set; } = [];

    /// <summary>Master to dial (slave mode); empty = no master.</summary>
    [ValidateObjectMembers]
    public ClacksMasterOptions Master { get; set; } = new();

    /// <summary>Text after <c>CLACKS </c> in the greeting. The Perl client only needs the word CLACKS.</summary>
    [Required]
    public string ServerIdentification { get; set; } = "PageCamel 36";

    /// <summary>Client ping timeout (s); NOPING disables it per connection.</summary>
    [Range(1, 86400 * 7)]
    public double PingTimeout { get; set; } = 180;

    /// <summary>Link timeout (s); links PING every third of it.</summary>
    [Range(1, 86400)]
    public double InterclacksPingTimeout { get; set; } = 60;

    /// <summary>Seconds before re-dialling the master after a failed or lost link.</summary>
    [Range(0, 86400)]
    public double InterclacksReconnectTimeout { get; set; } = 30;

    /// <summary>Random extra delay (0..this, seconds) added to reconnects, as the reference's 0–9 s.</summary>
    [Range(0, 3600)]
    public double InterclacksReconnectJitter { get; set; } = 9;

    /// <summary>Seconds a connection may stay unauthenticated.</summary>
    [Range(0.1, 86400)]
    public double AuthTimeout { get; set; } = 15;

    /// <summary>Persistence file; empty = no persistence.</summary>
    public string? PersistanceFile { get; set; }

    /// <summary>Seconds between saves of a changed cache.</summary>
    [Range(0.1, 86400)]
    public double PersistanceInterval { get; set; } = 10;

    /// <summary>Tombstone lifetime (s).</summary>
    [Range(0, double.MaxValue)]
    public double DeletedCacheTime { get; set; } = 3600;

    /// <summary>Lifetime of entries nobody touched (s).</summary>
    [Range(0, double.MaxValue)]
    public double StaleCacheTime { get; set; } = 86400;

    /// <summary>Housekeeping period (s).</summary>
    [Range(0.1, 86400)]
    public double CacheCleanInterval { get; set; } = 60;

    /// <summary>Pending output with no progress for this long closes a client (s).</summary>
    [Range(1, 86400)]
    public double StalledWriteTimeout { get; set; } = 60;

    /// <summary>Same for interclacks links (s).</summary>
    [Range(1, 86400)]
    public double InterclacksStalledWriteTimeout { get; set; } = 120;

    /// <summary>Accepted for compatibility; an event-driven reader has no "readable but empty" state (clacks §10).</summary>
    public double ReadFailTimeout { get; set; } = 30;

    /// <summary>Accepted for compatibility (see <see cref="ReadFailTimeout"/>).</summary>
    public double InterclacksReadFailTimeout { get; set; } = 60;

    /// <summary>Idle seconds after which the server sends <c>NOP</c> (clacks §10).</summary>
    [Range(1, 86400)]
    public double KeepaliveInterval { get; set; } = 60;

    /// <summary>Longest accepted line in bytes; a longer line gets <c>OVERHEAD E line_too_long</c> and the connection is closed.</summary>
    [Range(1024, 256 * 1024 * 1024)]
    public int MaxLineBytes { get; set; } = 16 * 1024 * 1024;

    /// <summary>
    /// Longest line before login, in bytes (default 64 KiB). Login lines are short; a client that sends megabytes
    /// before it identified itself is refused with <c>OVERHEAD E line_too_long</c> and closed.
    /// </summary>
    [Range(1024, 256 * 1024 * 1024)]
    public int MaxUnauthenticatedLineBytes { get; set; } = 64 * 1024;

    /// <summary>Lines an unauthenticated connection may send before it is closed (flood protection; the reference only has the auth timeout).</summary>
    [Range(1, 1_000_000)]
    public int MaxUnauthenticatedLines { get; set; } = 100;

    /// <summary>Shift of the server clock in seconds (the reference's CLACKS_SIMULATED_TIME_OFFSET, for skew tests).</summary>
    public double SimulatedTimeOffset { get; set; }

    /// <summary>
    /// Socket limits for every listener and the master link. <c>Transport:MaxWriteBufferSize</c> is also the
    /// slow-consumer bound: a connection whose unsent output reaches it and that is sent one more line is dropped.
    /// Its default here is 64 MiB (a cache dump to a new slave or a KEYLIST is written in one go).
    /// </summary>
    [ValidateObjectMembers]
    public TransportOptions Transport { get; set; } = new() { MaxWriteBufferSize = 64 * 1024 * 1024 };

    /// <summary>Accepted and ignored: pacing of the reference's polling loop (clacks §14.2).</summary>
    public Dictionary<string, string> Throttle { get; set; } = [];

    /// <summary>Accepted and ignored (descriptive).</summary>
    public string? AppName { get; set; }

    /// <summary>Accepted and ignored: the reference's connection-table dump file.</summary>
    public string? DebugFile { get; set; }

    internal IEnumerable<string> Validate()
    {
        if (Ips.Count > 0)
        {
            if (Port is null)
            {
                yield return "Port: required when Ips are configured";
            }

            if (string.IsNullOrEmpty(SslCert) || !File.Exists(SslCert))
            {
                yield return $"SslCert: PEM certificate file '{SslCert}' is required for TCP listeners and must exist";
            }

            if (string.IsNullOrEmpty(SslKey) || !File.Exists(SslKey))
            {
                yield return $"SslKey: PEM key file '{SslKey}' is required for TCP listeners and must exist";
            }
        }

        if (Ips.Count == 0 && Sockets.Count == 0 && !Master.IsConfigured)
        {
            yield return "Sockets: configure at least one of Sockets, Ips or Master";
        }

        if (Master.Ip is not null && Master.Port <= 0)
        {
            yield return "Master:Port: required with Master:Ip";
        }

        for (var i = 0; i < Users.Count; i++)
        {
            if (string.IsNullOrEmpty(Users[i].Username))
            {
                yield return $"Users:{i}:Username: required";
            }
        }
    }
}

/// <summary>An extra user (clacks §4).</summary>
public sealed class ClacksUserOptions
{
    /// <summary>User name.</summary>
    public string Username { get; set; } = string.Empty;

    /// <summary>Password.</summary>
    public string Password { get; set; } = string.Empty;

    /// <summary>RETRIEVE, KEYLIST, LISTEN, UNLISTEN.</summary>
    public bool Read { get; set; }

    /// <summary>NOTIFY, SET, STORE, SETANDSTORE, REMOVE, INCREMENT, DECREMENT, OVERHEAD G.</summary>
    public bool Write { get; set; }

    /// <summary>MONITOR, CLIENTLIST, CLIENTDISCONNECT, CLEARCACHE, OVERHEAD C/S.</summary>
    public bool Manage { get; set; }
}

/// <summary>The master a slave dials (clacks §12.1): a unix socket, or TCP+TLS to Ip:Port.</summary>
public sealed class ClacksMasterOptions
{
    /// <summary>Unix socket of the master.</summary>
    public string? Socket { get; set; }

    /// <summary>Master host/IP (TLS, certificate not verified, as the reference).</summary>
    public string? Ip { get; set; }

    /// <summary>Master TCP port.</summary>
    [Range(0, 65535)]
    public int Port { get; set; }

    /// <summary>TCP connect timeout (s); the reference uses 5.</summary>
    [Range(0.1, 600)]
    public double ConnectTimeout { get; set; } = 5;

    internal bool IsConfigured => !string.IsNullOrEmpty(Socket) || !string.IsNullOrEmpty(Ip);
}

/// <summary>
/// The DataAnnotations checks of <see cref="ClacksOptions"/>, generated at build time (no reflection, NativeAOT); nested
/// option objects are checked where marked [ValidateObjectMembers]. RoleOptionsExtensions names the keys.
/// </summary>
[OptionsValidator]
public sealed partial class ClacksOptionsValidator : IValidateOptions<ClacksOptions>
{
}
