namespace CacheHost.Transport;

/// <summary>
/// Wraps an accepted (or connected) connection before the protocol handler sees it, as Kestrel's connection
/// middleware does: TLS (<see cref="TlsConnectionAdapter"/>) is one adapter; logging or compression would be
/// others. The transport and the protocol know nothing about what an adapter does.
/// </summary>
/// <remarks>
/// Ownership: on success the returned connection owns <c>connection</c> (disposing or aborting it disposes or
/// aborts the inner one); on failure the adapter throws and the caller disposes <c>connection</c>. Adapters
/// run per connection, after the connection limit was checked, off the accept loop, so a slow handshake delays
/// only its own connection. <see cref="ConnectionServer"/> bounds nothing itself: an adapter that waits for the
/// peer must bound the wait (as the TLS adapter's handshake timeout does).
/// </remarks>
public interface IConnectionAdapter
{
    /// <summary>Short name for logs, e.g. "tls".</summary>
    string Name { get; }

    /// <summary>Returns the connection the protocol handler gets.</summary>
    ValueTask<TransportConnection> AdaptAsync(TransportConnection connection, CancellationToken cancellationToken);
}
