using System.Diagnostics.Metrics;

namespace CacheHost.Core.Metrics;

/// <summary>
/// The process's meter <c>CacheHost.Process</c>: garbage collections per generation, resident memory, the
/// managed heap and uptime (the same figures as the control socket's statedump <c>host</c> lines).
/// </summary>
public sealed class ProcessMetrics : RoleMetrics
{
    /// <summary>Creates the instruments.</summary>
    public ProcessMetrics(TimeProvider clock)
        : base("Process")
    {
        Meter.CreateObservableCounter(Prefix + "gc.collections", static () => new[]
        {
            new Measurement<long>(GC.CollectionCount(0), new KeyValuePair<string, object?>("generation", "gen0")),
            new Measurement<long>(GC.CollectionCount(1), new KeyValuePair<string, object?>("generation", "gen1")),
            new Measurement<long>(GC.CollectionCount(2), new KeyValuePair<string, object?>("generation", "gen2")),
        }, "{collection}", "Garbage collections since start (a gen1 collection also counts as gen0).");
        Meter.CreateObservableCounter(Prefix + "gc.allocated", static () => GC.GetTotalAllocatedBytes(), "By", "Managed bytes allocated since start.");
        Meter.CreateObservableUpDownCounter(Prefix + "gc.heap", static () => ProcessFigures.ManagedHeapBytes, "By", "Bytes on the managed heap.");
        Meter.CreateObservableUpDownCounter(Prefix + "memory.resident", static () => ProcessFigures.ResidentBytes, "By", "Resident set size.");
        Meter.CreateObservableCounter(Prefix + "uptime", () => ProcessFigures.Uptime(clock).TotalSeconds, "s", "Time since the process started.");
    }
}
