using System.ComponentModel.DataAnnotations;
using CacheHost.Core;
using CacheHost.Roles.CacheServer.Storage;
using CacheHost.Transport;
using Microsoft.Extensions.Options;

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
    /// TLS listeners: each entry an <c>Address</c> plus its certificate, key, CA bundle, mutual TLS and allow-lists
    /// (<see cref="TlsOptions"/>). distcache sends session secrets in clear (distcache §1); these listeners don't.
    /// dc_server's <c>-listen ADDR -tls-cert F -tls-key F [-tls-ca F] [-tls-verify]</c> writes entry 0.
    /// </summary>
    [ValidateEnumeratedItems]
    public List<TlsListenerOptions> TlsListen { get; set; } = [];

    /// <summary>
    /// Maximum sessions held (dc_server's <c>-sessions</c>, default 512). Unlike the reference this is not
    /// capped at 60000: millions work, memory permitting (per session: id + data rounded up to a slab size class, ~3 % at most, plus ~50 bytes of index).
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

    /// <summary>
    /// Where the stats line goes: <c>Log</c> (default; the host's logging, EventId 2004, e.g. journald) or <c>Stderr</c>
    /// (bare lines on standard error, dc_server's stream and text, distcache §9.3; what the drop-in command line uses).
    /// </summary>
    public LineOutput StatsOutput { get; set; } = LineOutput.Log;

    /// <summary>Exit cleanly on SIGUSR1/SIGUSR2 (dc_server's <c>-killable</c>); otherwise they are ignored.</summary>
    public bool Killable { get; set; }

    /// <summary>
    /// Close a connection that has sent no complete request and taken none of its replies for this long (an idle
    /// client, or one that stopped reading). Zero, the default, never closes (dc_server keeps idle connections
    /// forever); deploy/appsettings.json sets it. Checked every quarter of the shorter timeout.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan IdleTimeout { get; set; }

    /// <summary>
    /// Close a connection that holds part of a request (a half frame, a header without its data) for this long:
    /// peers that send a little and stall would otherwise hold a connection slot each forever. Zero, the
    /// default, falls back to <see cref="IdleTimeout"/>; deploy/appsettings.json sets it.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan RequestTimeout { get; set; }

    /// <summary>
    /// Where sessions live: <c>Memory</c> (default; in this process, dc_server's cache with <see cref="Capacity"/>
    /// and its eviction) or <c>Redis</c> (a Redis/Valkey server, replicated pair or Redis Cluster named by
    /// <c>Redis:Configuration</c>; capacity and eviction are Redis's, see docs/session-stores.md).
    /// </summary>
    public SessionStoreKind Store { get; set; } = SessionStoreKind.Memory;

    /// <summary>The Redis store's settings (used when <see cref="Store"/> is <c>Redis</c>).</summary>
    public RedisStoreOptions Redis { get; set; } = new();

    /// File the sessions are kept in across restarts (issue 17): written on a clean stop (every live session with
    /// its lifetime left; temporary file, fsync, rename) and loaded on start, less what expired meanwhile. Unset,
    /// the default, keeps sessions in memory only, as dc_server. See <see cref="SnapshotOnError"/>, <see cref="SnapshotInterval"/>.
    /// </summary>
    public string? SnapshotPath { get; set; }

    /// <summary>Also write the snapshot this often while running (a crash then loses at most this much); zero, the default, only on a clean stop.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan SnapshotInterval { get; set; }

    /// <summary>
    /// What a snapshot that cannot be loaded (foreign, damaged, truncated, unreadable) does at start: <c>StartEmpty</c>
    /// (the default: one error line, then serve with an empty store) or <c>Refuse</c> (the start fails, exit 1). A
    /// missing file is no error (the first start).
    /// </summary>
    public SnapshotErrorMode SnapshotOnError { get; set; } = SnapshotErrorMode.StartEmpty;

    /// <summary>Socket limits and unix socket owner/group/mode for the listeners.</summary>
    [ValidateObjectMembers]
    public TransportOptions Transport { get; set; } = new();
}

/// <summary>Settings of the Redis session store, section <c>CacheHost:CacheServer:Redis</c>.</summary>
public sealed class RedisStoreOptions
{
    /// <summary>The default <see cref="KeyPrefix"/>.</summary>
    public const string DefaultKeyPrefix = "distcache:";

    /// <summary>The longest <see cref="KeyPrefix"/> (bytes of UTF-8).</summary>
    public const int MaxKeyPrefixBytes = 256;

    /// <summary>
    /// StackExchange.Redis's own configuration string: endpoints (<c>host:port,host:port</c>; every node of a
    /// cluster or of a replicated pair may be named, one is enough for a cluster), <c>user=</c>/<c>password=</c>
    /// (ACL), <c>ssl=true</c>, <c>connectTimeout=</c>, <c>syncTimeout=</c>/<c>asyncTimeout=</c> (ms; bounds how long
    /// a request waits for Redis before it is answered 0x02). A cluster is detected by the client. Required when
    /// Store is Redis. <c>abortConnect</c> defaults to false here: the server starts, and answers 0x02, while
    /// Redis is unreachable.
    /// </summary>
    public string Configuration { get; set; } = string.Empty;

    /// <summary>
    /// Prepended to every session id to form the Redis key (ids are binary, up to 64 bytes). Separates
    /// the sessions of several sites sharing one Redis. Default <see cref="DefaultKeyPrefix"/>; may be empty.
    /// </summary>
    public string KeyPrefix { get; set; } = DefaultKeyPrefix;
}

/// <summary>What a snapshot that cannot be loaded does at start (<see cref="CacheServerOptions.SnapshotOnError"/>).</summary>
public enum SnapshotErrorMode
{
    /// <summary>Log one error line and start with an empty store.</summary>
    StartEmpty,

    /// <summary>Fail the start (exit 1), so that an operator looks at the file first.</summary>
    Refuse,
}

/// <summary>
/// The DataAnnotations checks of <see cref="CacheServerOptions"/>, generated at build time (no reflection, NativeAOT); nested
/// option objects are checked where marked [ValidateObjectMembers]. RoleOptionsExtensions names the keys.
/// </summary>
[OptionsValidator]
public sealed partial class CacheServerOptionsValidator : IValidateOptions<CacheServerOptions>
{
}
