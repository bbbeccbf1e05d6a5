using System.Diagnostics.Metrics;
using CacheHost.Core.Metrics;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>What the supervisor loop publishes for its meter: plain fields written by the loop only.</summary>
internal sealed class ProcessSupervisorStatistics
{
    /// <summary>Services defined.</summary>
    public int Services;

    /// <summary>Services in state up.</summary>
    public int Up;

    /// <summary>Automatic restarts after a service exited (auto_up, daemonproxy §7.3).</summary>
    public long Restarts;
}

/// <summary>
/// The meter <c>CacheHost.ProcessSupervisor</c> (issue 18): services up and down, automatic restarts. Reads
/// the running supervisor's <see cref="ProcessSupervisorStatistics"/>; nothing while it is not running.
/// </summary>
internal sealed class SupervisorMetrics : RoleMetrics
{
    public SupervisorMetrics(ProcessSupervisorService service)
        : base(ProcessSupervisorRole.Name)
    {
        Meter.CreateObservableUpDownCounter(Prefix + "services", () => Services(service), "{service}", "Services defined, by state (up or down).");
        Meter.CreateObservableCounter(Prefix + "restarts", () => service.Running is { } s ? [new Measurement<long>(Volatile.Read(ref s.Statistics.Restarts))] : Array.Empty<Measurement<long>>(), "{restart}", "Automatic restarts of exited services.");
    }

    private static Measurement<long>[] Services(ProcessSupervisorService service)
    {
        if (service.Running is not { } supervisor)
        {
            return [];
        }

        var total = Volatile.Read(ref supervisor.Statistics.Services);
        var up = Volatile.Read(ref supervisor.Statistics.Up);
        return
        [
            new Measurement<long>(up, new KeyValuePair<string, object?>("state", "up")),
            new Measurement<long>(Math.Max(0, total - up), new KeyValuePair<string, object?>("state", "down")),
        ];
    }
}
