namespace CacheHost.Transport;

/// <summary>
/// Protocol logic for one connection. The handler owns the connection's pipes for its lifetime and returns
/// when the connection is done. <paramref name="stopping"/> fires when the server wants connections to
/// finish gracefully (after the current batch); the server aborts those that outlive the shutdown budget.
/// </summary>
public interface IConnectionHandler
{
    /// <summary>Serves one connection until it ends.</summary>
    Task HandleAsync(TransportConnection connection, CancellationToken stopping);
}
