using CacheHost.Transport;

namespace CacheHost.LoadTool;

/// <summary>
/// What a <see cref="LoadRun"/> runs: the dc_test barrage and the connection-per-op mix through the client library
/// (<see cref="DistCacheClientWorkload"/>), or the mix over persistent connections in either protocol
/// (<see cref="MixWorkload"/>). The run owns connecting, timing, progress, stopping, failure and the report; a
/// workload owns only its clients' operations and checks.
/// </summary>
internal abstract class LoadWorkload
{
    /// <summary>Connects client <paramref name="index"/>; throws when it cannot (the run reports dc_test's DC_CTX error).</summary>
    public abstract Task<LoadWorker> ConnectAsync(LoadRun run, int index, long ops, TransportOptions transport);

    /// <summary>dc_test's opening info line (distcache §11.2), or null.</summary>
    public virtual string? StartLine(long limitOps) => null;

    /// <summary>dc_test's closing info line after a run without failure, or null.</summary>
    public virtual string? CompleteLine => null;

    /// <summary>The report of the measured run.</summary>
    public abstract LoadReport.Result Describe(long ops, TimeSpan elapsed, LatencyHistogram latency, bool failed, TimeSpan toolCpu);
}

/// <summary>One client of a run: its own connection, counter and latency histogram (no shared writes on the hot path).</summary>
internal abstract class LoadWorker : IDisposable
{
    private long _done;

    protected LoadWorker(LoadRun run) => Run = run;

    protected LoadRun Run { get; }

    public LatencyHistogram Latency { get; } = new();

    /// <summary>Operations completed (written by this worker only).</summary>
    public long Done => Volatile.Read(ref _done);

    /// <summary>Runs operations until its share is done, the run stops, or a check fails (reported through <see cref="LoadRun.Fail"/>).</summary>
    public abstract Task RunAsync();

    public abstract void Dispose();

    /// <summary>Counts one checked operation.</summary>
    protected void Completed()
    {
        Volatile.Write(ref _done, _done + 1);
        Run.CountProgress();
    }
}
