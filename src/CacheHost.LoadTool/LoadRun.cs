using System.Diagnostics;
using System.Globalization;

namespace CacheHost.LoadTool;

/// <summary>
/// One run of the load tool, whatever its workload: connect every client (dc_test's DC_CTX error when one
/// cannot), run them for the operation count or the duration, show progress, stop at the first failed check
/// (dc_test's error line, exit code 1), and report. Timing goes to stdout so stderr keeps the reference's
/// messages only (distcache §11.2). The workload (<see cref="LoadWorkload"/>) decides what each client does.
/// </summary>
internal sealed class LoadRun
{
    private readonly LoadToolSettings _settings;
    private readonly LoadWorkload _workload;
    private readonly TextWriter _stdout;
    private readonly TextWriter _stderr;
    private readonly bool _plainProgress;
    private readonly CancellationTokenSource _stop = new();
    private readonly object _outputLock = new();
    private LoadWorker?[] _workers = [];
    private string? _failure;
    private long _failedAfter;
    private long _sharedCompleted;
    private volatile bool _stopping;
    private LoadMeasurement _measurement = null!;

    public LoadRun(LoadToolSettings settings, LoadWorkload workload, TextWriter stdout, TextWriter stderr, bool plainProgress)
    {
        _settings = settings;
        _workload = workload;
        _stdout = stdout;
        _stderr = stderr;
        _plainProgress = plainProgress;
    }

    public LoadToolSettings Settings => _settings;

    /// <summary>Warm-up, measured window and per-interval percentiles of this run; workers record latencies through it.</summary>
    public LoadMeasurement Measurement => _measurement;

    /// <summary>Cancelled when the run ends; a worker's waits (the -rate schedule) end with it.</summary>
    public CancellationToken StopToken => _stop.Token;

    /// <summary>Set when the run ends (duration over, first failure); workers stop between operations.</summary>
    public bool Stopping => _stopping;

    public async Task<int> RunAsync()
    {
        var s = _settings;
        var limitOps = s.Duration > 0 && s.Ops < 0 ? long.MaxValue : s.EffectiveOps;
        if (_workload.StartLine(limitOps) is { } startLine)
        {
            WriteError(startLine);
        }

        _workers = new LoadWorker?[s.Clients];
        var transport = new LoadToolTransport(s.Threads);
        try
        {
            for (var i = 0; i < _workers.Length; i++)
            {
                _workers[i] = await _workload.ConnectAsync(this, i, limitOps, transport.For(i)).ConfigureAwait(false);
            }
        }
        catch (Exception)
        {
            WriteError("Error, 'DC_CTX' creation failed");
            DisposeWorkers();
            return 1;
        }

        var cpuBefore = Environment.CpuUsage.TotalTime;
        var showProgress = !s.Quiet && !s.Json;
        _measurement = new LoadMeasurement(s, intervals: showProgress);
        var clock = _measurement.Clock;
        _measurement.Start(Completed, _stop.Token);
        _stop.Token.Register(() => _stopping = true);
        if (s.Duration > 0)
        {
            _stop.CancelAfter(TimeSpan.FromSeconds(s.Warmup + s.Duration));
        }

        var progress = showProgress ? ShowProgressAsync() : Task.CompletedTask;
        TimeSpan toolCpu;
        try
        {
            var all = Task.WhenAll(_workers.Select(w => Task.Run(w!.RunAsync)));
            if (s.Duration > 0)
            {
                // A peer that stops answering (or speaks another protocol) must not hang a timed run: after a
                // grace period the connections are closed, which fails the pending receives.
                await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(s.Warmup + s.Duration + 10))).ConfigureAwait(false);
                if (!all.IsCompleted)
                {
                    Fail("Error, transaction failure");
                    DisposeWorkers();
                }
            }

            await all.ConfigureAwait(false);
        }
        finally
        {
            clock.Stop();
            toolCpu = Environment.CpuUsage.TotalTime - cpuBefore;
            _stopping = true;
            _stop.Cancel();
            await progress.ConfigureAwait(false);
            DisposeWorkers();
        }

        var histogram = new LatencyHistogram();
        foreach (var worker in _workers)
        {
            histogram.Merge(worker!.Latency);
        }

        if (_failure is not null)
        {
            WriteError(_failure);
            WriteError($"Info, {_failedAfter} tests succeeded before the first failure");
            Report(_workload.Describe(_measurement.MeasuredOps(Completed()), _measurement.MeasuredElapsed, histogram, failed: true, toolCpu));
            return 1;
        }

        if (_workload.CompleteLine is { } completeLine)
        {
            WriteError(completeLine);
        }

        Report(_workload.Describe(_measurement.MeasuredOps(Completed()), _measurement.MeasuredElapsed, histogram, failed: false, toolCpu));
        return 0;
    }

    /// <summary>Ends the run with dc_test's error line (the first failure wins).</summary>
    public void Fail(string message)
    {
        if (Interlocked.CompareExchange(ref _failure, message, null) is null)
        {
            _failedAfter = Completed();
            _stopping = true;
            _stop.Cancel();
        }
    }

    /// <summary>Only with -progress: the reference prints every n-th operation over all clients.</summary>
    public void CountProgress()
    {
        if (_settings.Progress <= 0)
        {
            return;
        }

        var count = Interlocked.Increment(ref _sharedCompleted);
        if (count % _settings.Progress == 0)
        {
            WriteError(string.Create(CultureInfo.InvariantCulture, $"Info, total operations = {count,7}"));
        }
    }

    private long Completed()
    {
        long total = 0;
        foreach (var worker in _workers)
        {
            total += worker?.Done ?? 0;
        }

        return total;
    }

    private void DisposeWorkers()
    {
        foreach (var worker in _workers)
        {
            worker?.Dispose();
        }
    }

    private void WriteError(string line)
    {
        lock (_outputLock)
        {
            _stderr.WriteLine(line);
            _stderr.Flush();
        }
    }

    private Task ShowProgressAsync() =>
        ProgressPrinter.RunAsync(_measurement, Completed, _stdout, _outputLock, _plainProgress, _stop.Token);

    private void Report(in LoadReport.Result result)
    {
        lock (_outputLock)
        {
            LoadReport.Write(_stdout, _settings, result);
        }
    }
}
