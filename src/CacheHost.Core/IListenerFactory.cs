using CacheHost.Transport;

namespace CacheHost.Core;

/// <summary>
/// Creates the listeners roles bind in StartAsync. The default binds the address; the systemd integration
/// replaces it with one that first looks for an inherited socket (LISTEN_FDS) whose name matches
/// <paramref name="name"/>.
/// </summary>
public interface IListenerFactory
{
    /// <summary>
    /// Binds (or adopts) a listener. <paramref name="name"/> identifies it, e.g. "CacheServer".
    /// <paramref name="prepareUnixSocket"/> runs on a new unix socket file before it listens and appears at its
    /// path (e.g. a role's own chmod); an inherited socket is not prepared again.
    /// </summary>
    ConnectionListener Bind(string name, TransportAddress address, TransportOptions options, Action<string>? prepareUnixSocket = null);
}
