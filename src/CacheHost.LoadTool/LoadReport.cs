using System.Globalization;
using System.Text.Json;

namespace CacheHost.LoadTool;

/// <summary>The final report of a run (barrage or mix): two plain lines, or one JSON object with <c>-json</c>.</summary>
internal static class LoadReport
{
    /// <summary>What one run measured.</summary>
    public readonly record struct Result(string Mode, long Ops, TimeSpan Elapsed, LatencyHistogram Latency, bool Persistent, bool Failed)
    {
        /// <summary>distcache or memcached; only the mix runner names it.</summary>
        public string? Protocol { get; init; }

        /// <summary>CPU the tool used while measuring, when known (near 1 s per second: the tool is the limit).</summary>
        public TimeSpan? ToolCpu { get; init; }
    }

    /// <summary>Writes the report of <paramref name="result"/> for a run with <paramref name="settings"/>.</summary>
    public static void Write(TextWriter stdout, LoadToolSettings settings, in Result result)
    {
        var seconds = Math.Max(result.Elapsed.TotalSeconds, 1e-9);
        var rate = result.Ops / seconds;
        var h = result.Latency;
        if (settings.Json)
        {
            var report = new Dictionary<string, object>
            {
                ["connect"] = settings.Connect!,
                ["mode"] = result.Mode,
            };
            if (result.Protocol is not null)
            {
                report["protocol"] = result.Protocol;
            }

            report["clients"] = settings.Clients;
            report["pipeline"] = settings.Pipeline;
            report["threads"] = settings.Threads;
            report["persistent"] = result.Persistent;
            report["ops"] = result.Ops;
            report["seconds"] = Math.Round(seconds, 4);
            report["opsPerSecond"] = Math.Round(rate, 1);
            report["latencyMicroseconds"] = new Dictionary<string, long>
            {
                ["p50"] = h.Percentile(50),
                ["p90"] = h.Percentile(90),
                ["p99"] = h.Percentile(99),
                ["p99.9"] = h.Percentile(99.9),
                ["max"] = h.Max,
            };
            if (result.ToolCpu is { } cpu)
            {
                report["toolCpuSeconds"] = Math.Round(cpu.TotalSeconds, 4);
            }

            report["failed"] = result.Failed;
            stdout.WriteLine(JsonSerializer.Serialize(report));
        }
        else
        {
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{result.Mode}: {result.Ops:N0} ops in {seconds:F3} s = {rate:N0} ops/s ({settings.Clients} client(s), pipeline {settings.Pipeline}, {(result.Persistent ? "persistent" : "connection per op")})"));
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"latency (us): p50 {h.Percentile(50)}  p90 {h.Percentile(90)}  p99 {h.Percentile(99)}  p99.9 {h.Percentile(99.9)}  max {h.Max}"));
        }

        stdout.Flush();
    }
}
