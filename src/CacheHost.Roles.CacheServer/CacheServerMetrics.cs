using System.Diagnostics.Metrics;
using CacheHost.Core.Metrics;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer.Storage;

namespace CacheHost.Roles.CacheServer;

/// <summary>
/// The meter <c>CacheHost.CacheServer</c> (issue 18): observable instruments over <see cref="CacheServerStatistics"/>
/// and the store, read only when a listener collects (the same values as <c>cache.stats</c>), and the
/// request-duration histogram that <see cref="CacheServerStatistics.Latency"/> feeds while it is enabled.
/// </summary>
public sealed class CacheServerMetrics : RoleMetrics
{
    private static readonly DistCacheOperation[] s_operations = Enum.GetValues<DistCacheOperation>();
    private static readonly DistCacheProtocolError[] s_errors = Enum.GetValues<DistCacheProtocolError>();

    /// <summary>Creates the instruments.</summary>
    public CacheServerMetrics(CacheServerService service)
        : base(CacheServerRole.Name)
    {
        var statistics = service.Statistics;
        var store = service.ConfiguredStore as SessionStore; // null with the Redis store: Redis's own INFO reports these
        Meter.CreateObservableCounter(Prefix + "operations", () => Operations(statistics), "{operation}", "Requests answered, by kind (add, get, remove, have) and result (ok or not_ok).");
        Meter.CreateObservableCounter(Prefix + "hits", () => statistics.Hits, "{operation}", "GET and HAVE requests that found their session.");
        Meter.CreateObservableCounter(Prefix + "misses", () => statistics.Misses, "{operation}", "GET and HAVE requests that did not.");
        Meter.CreateObservableCounter(Prefix + "io", () => new[]
        {
            new Measurement<long>(statistics.BytesIn.Value, new KeyValuePair<string, object?>("direction", "receive")),
            new Measurement<long>(statistics.BytesOut.Value, new KeyValuePair<string, object?>("direction", "transmit")),
        }, "By", "Request payload bytes received and GET reply payload bytes sent.");
        Meter.CreateObservableUpDownCounter(Prefix + "connections.open", () => statistics.ConnectionsOpen.Value, "{connection}", "Client connections open.");
        Meter.CreateObservableCounter(Prefix + "connections.accepted", () => statistics.ConnectionsAccepted.Value, "{connection}", "Client connections accepted.");
        Meter.CreateObservableCounter(Prefix + "connections.rejected", () => service.Servers.Sum(s => s.RejectedConnections), "{connection}", "Connections refused at the MaxConnections limit.");
        Meter.CreateObservableCounter(Prefix + "connections.timed_out", () => statistics.ConnectionsTimedOut.Value, "{connection}", "Connections closed by IdleTimeout or RequestTimeout.");
        Meter.CreateObservableCounter(Prefix + "protocol_errors", () => ProtocolErrors(statistics), "{error}", "Connections closed for a bad request, by error.");
        Meter.CreateObservableCounter(Prefix + "store.errors", () => statistics.StoreErrors.Value, "{operation}", "Requests a remote store failed (answered 0x02).");
        if (store is not null)
        {
            Meter.CreateObservableCounter(Prefix + "evictions", () => store.Evictions, "{session}", "Sessions evicted to make room.");
            Meter.CreateObservableCounter(Prefix + "expirations", () => store.Expirations, "{session}", "Sessions that expired.");
            Meter.CreateObservableUpDownCounter(Prefix + "sessions", () => (long)store.Count, "{session}", "Sessions stored (expired ones until the next purge).");
            Meter.CreateObservableUpDownCounter(Prefix + "sessions.capacity", () => (long)store.Capacity, "{session}", "Sessions the store can hold.");
            Meter.CreateObservableUpDownCounter(Prefix + "store.bytes", () => new[]
            {
                new Measurement<long>(store.DataBytes, new KeyValuePair<string, object?>("kind", "data")),
                new Measurement<long>(store.SlabBytes, new KeyValuePair<string, object?>("kind", "slabs")),
            }, "By", "Session data stored, and the native slab memory holding it.");
        }

        statistics.Latency.Attach(Meter.CreateHistogram<double>(
            Prefix + "request.duration", "s", "Server-side request latency: the request batch read to its replies flushed.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1] }));
    }

    private static IEnumerable<Measurement<long>> Operations(CacheServerStatistics statistics)
    {
        foreach (var operation in s_operations)
        {
            var kind = new KeyValuePair<string, object?>("kind", OperationName(operation));
            yield return new Measurement<long>(statistics.Results(operation, ok: true), kind, new KeyValuePair<string, object?>("result", "ok"));
            yield return new Measurement<long>(statistics.Results(operation, ok: false), kind, new KeyValuePair<string, object?>("result", "not_ok"));
        }
    }

    private static IEnumerable<Measurement<long>> ProtocolErrors(CacheServerStatistics statistics)
    {
        foreach (var error in s_errors)
        {
            // "None" counts ADDs shorter than their 8-byte prefix, as cache.stats' errors.shortAdd.
            var name = error == DistCacheProtocolError.None ? "ShortAdd" : error.ToString();
            yield return new Measurement<long>(statistics.ProtocolErrors(error), new KeyValuePair<string, object?>("error", name));
        }
    }

    private static string OperationName(DistCacheOperation operation) => operation switch
    {
        DistCacheOperation.Add => "add",
        DistCacheOperation.Get => "get",
        DistCacheOperation.Remove => "remove",
        _ => "have",
    };
}
