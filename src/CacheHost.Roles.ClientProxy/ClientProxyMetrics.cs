using System.Diagnostics.Metrics;
using CacheHost.Core.Metrics;
using CacheHost.Protocols.DistCache;

namespace CacheHost.Roles.ClientProxy;

/// <summary>
/// The meter <c>CacheHost.ClientProxy</c> (issue 18): observable instruments over the counters behind
/// <c>proxy.stats</c> (ClientProxyStatistics and the upstream link), read only when a listener collects.
/// </summary>
internal sealed class ClientProxyMetrics : RoleMetrics
{
    public ClientProxyMetrics(ClientProxyService service)
        : base(ClientProxyRole.Name)
    {
        var link = service.Link;
        var stats = link.Stats;
        Meter.CreateObservableCounter(Prefix + "requests", () => new[]
        {
            Kind(stats.Requests(DistCacheOperation.Add), "add"),
            Kind(stats.Requests(DistCacheOperation.Get), "get"),
            Kind(stats.Requests(DistCacheOperation.Remove), "remove"),
            Kind(stats.Requests(DistCacheOperation.Have), "have"),
        }, "{request}", "Requests read from local clients, by kind.");
        Meter.CreateObservableCounter(Prefix + "forwarded", () => stats.Forwarded.Value, "{request}", "Requests forwarded to the server.");
        Meter.CreateObservableCounter(Prefix + "replies", () => stats.Replies.Value, "{reply}", "Server answers delivered to local clients.");
        Meter.CreateObservableCounter(Prefix + "answers.local", () => new[]
        {
            new Measurement<long>(stats.DisconnectedAnswers, new KeyValuePair<string, object?>("reason", "disconnected")),
            new Measurement<long>(stats.EmptyAnswers, new KeyValuePair<string, object?>("reason", "empty")),
        }, "{reply}", "Requests the proxy answered itself: in flight when the link died, or no link.");
        Meter.CreateObservableUpDownCounter(Prefix + "inflight", () => (long)link.InFlight, "{request}", "Requests waiting for the server.");
        Meter.CreateObservableUpDownCounter(Prefix + "link.up", () => link.IsConnected ? 1L : 0L, "{link}", "1 while the server link is up.");
        Meter.CreateObservableCounter(Prefix + "link.connects", () => stats.Connects, "{connect}", "Successful connects to the server (the first included).");
        Meter.CreateObservableCounter(Prefix + "link.losses", () => stats.Losses, "{loss}", "Established server links lost (each one a failover to a reconnect).");
        Meter.CreateObservableCounter(Prefix + "link.request_timeouts", () => stats.RequestTimeouts, "{timeout}", "Links dropped for an unanswered request.");
        Meter.CreateObservableCounter(Prefix + "link.failovers", () => stats.Failovers, "{failover}", "Connects to another server of the Servers list than the one last used.");
        Meter.CreateObservableCounter(Prefix + "link.failbacks", () => stats.Failbacks, "{failback}", "Returns to the first server (FailbackAfter).");
        Meter.CreateObservableUpDownCounter(Prefix + "connections.open", () => (long)service.Servers.Sum(s => s.ActiveConnections), "{connection}", "Local client connections open.");
        Meter.CreateObservableCounter(Prefix + "connections.accepted", () => service.Servers.Sum(s => s.AcceptedConnections), "{connection}", "Local client connections accepted.");
        Meter.CreateObservableCounter(Prefix + "connections.rejected", () => service.Servers.Sum(s => s.RejectedConnections), "{connection}", "Local connections refused at the MaxConnections limit.");
        Meter.CreateObservableCounter(Prefix + "protocol_errors", () => new[]
        {
            Error(stats.MalformedRequests, "malformed_request"),
            Error(stats.ProtocolLevelErrors + stats.LinkProtocolLevelErrors, "protocol_level"),
            Error(stats.AddTooShort, "add_too_short"),
            Error(stats.MalformedResponses, "malformed_response"),
            Error(stats.UnknownResponses, "unknown_uid"),
            Error(stats.MismatchedResponses, "mismatched_response"),
        }, "{error}", "Bad requests and bad server responses, by error.");
        Meter.CreateObservableCounter(Prefix + "io", () => new[]
        {
            Direction(stats.BytesFromClients.Value, "from_clients"),
            Direction(stats.BytesToServer.Value, "to_server"),
            Direction(stats.BytesFromServer.Value, "from_server"),
        }, "By", "Bytes carried, by direction.");
    }

    private static Measurement<long> Kind(long value, string kind) => new(value, new KeyValuePair<string, object?>("kind", kind));

    private static Measurement<long> Error(long value, string error) => new(value, new KeyValuePair<string, object?>("error", error));

    private static Measurement<long> Direction(long value, string direction) => new(value, new KeyValuePair<string, object?>("direction", direction));
}
