using System.Globalization;

namespace CacheHost.LoadTool;

/// <summary>
/// The once-a-second progress line shared by both runners: rewritten in place on a terminal, one plain line
/// per second otherwise. Each line shows that second's throughput and latency percentiles (issue 18), marked
/// while the warm-up runs. Writes under the runner's output lock so it never interleaves with error lines.
/// </summary>
internal static class ProgressPrinter
{
    public static async Task RunAsync(LoadMeasurement measurement, Func<long> completed, TextWriter stdout, object outputLock, bool plainProgress, CancellationToken stop)
    {
        var clock = measurement.Clock;
        long last = 0;
        var lastTime = TimeSpan.Zero;
        measurement.TakeInterval(); // start the first interval now
        try
        {
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(1000, stop).ConfigureAwait(false);
                var now = clock.Elapsed;
                var count = completed();
                var rate = (count - last) / Math.Max((now - lastTime).TotalSeconds, 1e-9);
                last = count;
                lastTime = now;
                var interval = measurement.TakeInterval();
                var latency = interval is { Count: > 0 } i ? string.Create(CultureInfo.InvariantCulture, $"  p50 {i.P50,6} us  p99 {i.P99,7} us") : "  p50      - us  p99       - us";
                var line = string.Create(CultureInfo.InvariantCulture, $"[{now.TotalSeconds,6:F1} s] {count,12:N0} ops  {rate,12:N0} ops/s{latency}{(measurement.Measuring ? "" : "  (warm-up)")}");
                lock (outputLock)
                {
                    if (plainProgress)
                    {
                        stdout.WriteLine(line);
                    }
                    else
                    {
                        stdout.Write("\r" + line);
                    }

                    stdout.Flush();
                }
            }
        }
        catch (OperationCanceledException)
        {
        }

        if (!plainProgress)
        {
            lock (outputLock)
            {
                stdout.WriteLine();
            }
        }
    }
}
