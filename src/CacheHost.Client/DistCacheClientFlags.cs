namespace CacheHost.Client;

/// <summary>DC_CTX creation flags (distcache §8). The numeric values are libdistcache's.</summary>
[Flags]
public enum DistCacheClientFlags
{
    /// <summary>A fresh connection per operation (what Apache's mod_socache_dc uses).</summary>
    None = 0,
    /// <summary>One connection opened at creation; creation fails if the connect fails.</summary>
    Persistent = 0x1,
    /// <summary>Reconnect if the process id changed (after fork).</summary>
    PidCheck = 0x2,
    /// <summary>On a network error, reconnect once and resend.</summary>
    Retry = 0x4,
    /// <summary>With <see cref="Persistent"/>: do not connect until the first operation.</summary>
    Late = 0x8,
}

/// <summary>Outcome of one transaction at the transport/framing level.</summary>
public enum DistCacheTransactionStatus
{
    /// <summary>A response with the request's uid and operation and a non-empty payload arrived.</summary>
    Ok,
    /// <summary>Connect, send or receive failed (or the peer closed the connection).</summary>
    NetworkError,
    /// <summary>The response broke the framing rules (distcache §4.2), including a foreign protocol level (13.2).</summary>
    ProtocolError,
    /// <summary>The response's uid or operation did not match the request.</summary>
    Mismatch,
    /// <summary>The response payload was empty: dc_client's answer while it has no server link (distcache §10.4).</summary>
    EmptyResponse,
    /// <summary>The operation's time limit passed; the connection was dropped.</summary>
    TimedOut,
}

/// <summary>HAVE outcome (distcache §8): yes for 0x00, no for 0x01 or any response not exactly 1 byte, error otherwise.</summary>
public enum DistCacheHaveResult
{
    /// <summary>A transaction failure or an unexpected single byte (e.g. 0x02 from a proxy that lost its server).</summary>
    Error = -1,
    /// <summary>Absent.</summary>
    No = 0,
    /// <summary>Present.</summary>
    Yes = 1,
}

/// <summary>
/// GET outcome (distcache §8): <see cref="Success"/> only for a response of at least 5 bytes that fitted the caller's
/// buffer; <see cref="Length"/> is the size of the session data whenever the server returned a hit
/// (so a caller can size a buffer and use <see cref="DistCacheClient.ReGet"/> without another round trip).
/// </summary>
public readonly record struct DistCacheGetResult(bool Success, int Length, bool Hit);
