using System.ComponentModel.DataAnnotations;
using CacheHost.Core;
using CacheHost.Transport;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.Snoop;

/// <summary>Settings of the Snoop role, section <c>CacheHost:Snoop</c> (dc_snoop's <c>-listen</c> and <c>-server</c>, distcache §12).</summary>
public sealed class SnoopOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "CacheHost:Snoop";

    /// <summary>Address to accept clients on. Required.</summary>
    [Required(ErrorMessage = "must provide -listen (e.g. \"UNIX:/tmp/snoop.sock\")")]
    public string? Listen { get; set; }

    /// <summary>Server to connect to for every accepted client. Required.</summary>
    [Required(ErrorMessage = "must provide -server (e.g. \"IP:127.0.0.1:9001\")")]
    public string? Server { get; set; }

    /// <summary>
    /// TLS on the listener (on when a certificate is set): certificate, key, CA bundle, mutual TLS, allow-lists
    /// (<see cref="TlsOptions"/>). Clients then speak TLS to the snoop, which logs the frames inside.
    /// </summary>
    [ValidateObjectMembers]
    public TlsOptions Tls { get; set; } = new();

    /// <summary>
    /// TLS on the connections to the server (on when a certificate or a CA is set); dc_snoop's
    /// <c>-tls-cert/-tls-key/-tls-ca/-tls-verify</c>.
    /// </summary>
    [ValidateObjectMembers]
    public TlsOptions ServerTls { get; set; } = new();

    /// <summary>Log one line per frame (the reference's output). Default true.</summary>
    public bool LogFrames { get; set; } = true;

    /// <summary>
    /// Where frame lines go: <c>Log</c> (default; the host's logging, EventId 6100-6102) or <c>Stderr</c> (bare lines
    /// on standard error, byte-for-byte dc_snoop's output; what <c>cachehost snoop</c> uses).
    /// </summary>
    public LineOutput FrameOutput { get; set; } = LineOutput.Log;

    /// <summary>Time limit for connecting to the server for a new client.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:10:00")]
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// After the client side ends, how long to wait for the server's replies to requests already forwarded
    /// before closing the pair.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:10:00")]
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Close a pair when for this long no frame passed in either direction and no output was taken (an idle client,
    /// or a peer that stopped reading). Zero, the default, never closes (dc_snoop keeps pairs forever);
    /// deploy/appsettings.json's Snoop example sets it. Checked every quarter of the shorter timeout.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan IdleTimeout { get; set; }

    /// <summary>
    /// Close a pair whose client holds part of a frame (a half frame, a header without its data) for this long.
    /// Zero, the default, falls back to <see cref="IdleTimeout"/>.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan RequestTimeout { get; set; }

    /// <summary>
    /// Listener limits. Transport:MaxConnections is the number of simultaneous pairs; the reference allows 10,
    /// CacheHost defaults to 10000 (set 10 to mimic the original). InlineScheduling is off by default here: the
    /// snoop writes a log line per frame, and a slow log sink must stall the thread pool, not an epoll loop
    /// that other connections share.
    /// </summary>
    [ValidateObjectMembers]
    public TransportOptions Transport { get; set; } = new() { InlineScheduling = false };

    /// <summary>Limits of the connections to the server (InlineScheduling off, as for <see cref="Transport"/>).</summary>
    [ValidateObjectMembers]
    public TransportOptions ServerTransport { get; set; } = new() { InlineScheduling = false };
}

/// <summary>
/// The DataAnnotations checks of <see cref="SnoopOptions"/>, generated at build time (no reflection, NativeAOT); nested
/// option objects are checked where marked [ValidateObjectMembers]. RoleOptionsExtensions names the keys.
/// </summary>
[OptionsValidator]
public sealed partial class SnoopOptionsValidator : IValidateOptions<SnoopOptions>
{
}
