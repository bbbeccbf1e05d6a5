using System.Diagnostics.Metrics;
using CacheHost.Core.Metrics;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// The meter <c>CacheHost.Clacks</c> (issue 18): observable instruments over <see cref="ClacksStatistics"/> and
/// the listeners, the same values as <c>clacks.stats</c>, read only when a listener collects.
/// </summary>
internal sealed class ClacksMetrics : RoleMetrics
{
    public ClacksMetrics(ClacksService service)
        : base(ClacksRole.Name)
    {
        var statistics = service.Statistics;
        Meter.CreateObservableCounter(Prefix + "messages.delivered", () => Volatile.Read(ref statistics.FanOutDeliveries), "{message}", "Fan-out lines handed to recipients (SET/NOTIFY deliveries, DEBUG mirrors, link forwards).");
        Meter.CreateObservableCounter(Prefix + "messages.encoded", () => Volatile.Read(ref statistics.FanOutEncodes), "{message}", "Fan-out lines encoded, one per line whatever the number of recipients.");
        Meter.CreateObservableUpDownCounter(Prefix + "subscribers", () => Volatile.Read(ref statistics.Subscriptions), "{subscription}", "LISTEN subscriptions held (one per connection and name).");
        Meter.CreateObservableUpDownCounter(Prefix + "connections.open", () => (long)service.Servers.Sum(s => s.ActiveConnections), "{connection}", "Connections open.");
        Meter.CreateObservableCounter(Prefix + "connections.accepted", () => service.Servers.Sum(s => s.AcceptedConnections), "{connection}", "Connections accepted.");
        Meter.CreateObservableCounter(Prefix + "connections.rejected", () => service.Servers.Sum(s => s.RejectedConnections), "{connection}", "Connections refused at the MaxConnections limit.");
        Meter.CreateObservableCounter(Prefix + "protocol_errors", () => new[]
        {
            Error(Volatile.Read(ref statistics.OverlongLines), "line_too_long"),
            Error(Volatile.Read(ref statistics.UnauthenticatedFloods), "unauthenticated_flood"),
            Error(Volatile.Read(ref statistics.LoginFailures), "login_failed"),
            Error(Volatile.Read(ref statistics.SlowConsumersDropped), "slow_consumer"),
        }, "{error}", "Connections closed or refused for bad input or a stalled reader, by error.");
    }

    private static Measurement<long> Error(long value, string error) => new(value, new KeyValuePair<string, object?>("error", error));
}
