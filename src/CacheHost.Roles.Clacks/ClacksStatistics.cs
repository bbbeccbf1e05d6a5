using System.Net.Sockets;
using CacheHost.Transport;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// Counters of the Clacks role (for <c>clacks.stats</c> and STATUS=). Written under the engine's gate only, so
/// plain fields suffice; readers outside the gate see a recent value.
/// </summary>
public sealed class ClacksStatistics
{
    /// <summary>Connections registered (accepted and past the adapter), the master link included.</summary>
    public long Accepted;

    /// <summary>Lines encoded for fan-out (SET/NOTIFY deliveries, DEBUG mirrors, link forwards, OVERHEAD G): one per line, whatever the number of recipients.</summary>
    public long FanOutEncodes;

    /// <summary>Fan-out lines handed to recipients.</summary>
    public long FanOutDeliveries;

    /// <summary>Connections dropped because they did not read their output (MaxWriteBufferSize or StalledWriteTimeout).</summary>
    public long SlowConsumersDropped;

    /// <summary>Lines over the limit (MaxLineBytes, or MaxUnauthenticatedLineBytes before login).</summary>
    public long OverlongLines;

    /// <summary>Connections closed for too many lines before login.</summary>
    public long UnauthenticatedFloods;

    /// <summary>Failed logins.</summary>
    public long LoginFailures;

    /// <summary>Batches that ran before older connections' input was processed because the wait limit passed.</summary>
    public long IntakeWaitsExpired;

    /// <summary>LISTEN subscriptions held now (one per connection and name).</summary>
    public long Subscriptions;
}

/// <summary>Reads what the kernel holds for a connection, for the engine's accept and read order.</summary>
internal static class ConnectionInput
{
    /// <summary>
    /// True when bytes are waiting in the socket's receive queue (FIONREAD). For a TLS connection the socket under
    /// it is asked. Connections without a socket (descriptor pairs) report false.
    /// </summary>
    public static bool HasUnreadInput(this TransportConnection connection)
    {
        var inner = connection;
        while (inner is StreamConnection { Inner: { } next })
        {
            inner = next;
        }

        try
        {
            return inner is PipeSocketConnection socketConnection && socketConnection.Socket.Available > 0;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }
}
