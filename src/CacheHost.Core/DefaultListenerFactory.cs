using CacheHost.Transport;
using Microsoft.Extensions.Logging;

namespace CacheHost.Core;

/// <summary>Binds every address directly (no socket activation).</summary>
public sealed class DefaultListenerFactory(ILoggerFactory loggerFactory) : IListenerFactory
{
    private readonly ILogger _logger = loggerFactory.CreateLogger("CacheHost.Transport");

    /// <inheritdoc />
    public ConnectionListener Bind(string name, TransportAddress address, TransportOptions options, Action<string>? prepareUnixSocket = null) =>
        ConnectionListener.Bind(address, options, _logger, prepareUnixSocket);
}
