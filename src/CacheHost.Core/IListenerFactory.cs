using CacheHost.Transport;

namespace CacheHost.Core;

/// <summary>
/// Creates the listeners roles bind in StartAsync. The default binds the address; the systemd integration
/// replaces it with one that first looks for an inherited socket (LISTEN_FDS) whose name matches
/// <paramref name="name"/>.
/// </summary>
public interface IListenerFactory
{
    /// <summary>Binds (or adopts) a listener. <paramref name="name"/> identifies it, e.g. "CacheServer".</summary>
    ConnectionListener Bind(string name, TransportAddress address, TransportOptions options);
}
