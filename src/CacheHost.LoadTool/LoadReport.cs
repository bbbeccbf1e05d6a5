using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

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
            var report = new JsonReport(
                settings.Connect!,
                result.Mode,
                result.Protocol,
                settings.Clients,
                settings.Pipeline,
                settings.Threads,
                result.Persistent,
                result.Ops,
                Math.Round(seconds, 4),
                Math.Round(rate, 1),
                new Dictionary<string, long>
                {
                    ["p50"] = h.Percentile(50),
                    ["p90"] = h.Percentile(90),
                    ["p99"] = h.Percentile(99),
                    ["p99.9"] = h.Percentile(99.9),
                    ["max"] = h.Max,
                },
                result.ToolCpu is { } cpu ? Math.Round(cpu.TotalSeconds, 4) : null,
                result.Failed)
            {
                WarmupSeconds = settings.Warmup > 0 ? settings.Warmup : null,
                Rate = settings.Rate > 0 ? settings.Rate : null,
            };
            stdout.WriteLine(JsonSerializer.Serialize(report, LoadReportJson.Default.JsonReport));
        }
        else
        {
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{result.Mode}: {result.Ops:N0} ops in {seconds:F3} s = {rate:N0} ops/s ({settings.Clients} client(s), pipeline {settings.Pipeline}, {(result.Persistent ? "persistent" : "connection per op")})"));
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"latency (us): p50 {h.Percentile(50)}  p90 {h.Percentile(90)}  p99 {h.Percentile(99)}  p99.9 {h.Percentile(99.9)}  max {h.Max}"));
            if (settings.Warmup > 0 || settings.Rate > 0)
            {
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{(settings.Warmup > 0 ? $"warm-up {settings.Warmup} s excluded" : "no warm-up")}; {(settings.Rate > 0 ? $"fixed rate {settings.Rate:N0} ops/s, latency from each request's scheduled start (coordinated omission corrected)" : "open loop: as fast as answered")}"));
            }
        }

        stdout.Flush();
    }
}

/// <summary>The <c>-json</c> report, in this key order; null members (protocol, toolCpuSeconds) are left out.</summary>
internal sealed record JsonReport(
    [property: JsonPropertyName("connect")] string Connect,
    [property: JsonPropertyName("mode")] string Mode,
    [property: JsonPropertyName("protocol")] string? Protocol,
    [property: JsonPropertyName("clients")] int Clients,
    [property: JsonPropertyName("pipeline")] int Pipeline,
    [property: JsonPropertyName("threads")] int Threads,
    [property: JsonPropertyName("persistent")] bool Persistent,
    [property: JsonPropertyName("ops")] long Ops,
    [property: JsonPropertyName("seconds")] double Seconds,
    [property: JsonPropertyName("opsPerSecond")] double OpsPerSecond,
    [property: JsonPropertyName("latencyMicroseconds")] Dictionary<string, long> LatencyMicroseconds,
    [property: JsonPropertyName("toolCpuSeconds")] double? ToolCpuSeconds,
    [property: JsonPropertyName("failed")] bool Failed)
{
    /// <summary>The warm-up left out of the figures, when there was one.</summary>
    [JsonPropertyName("warmupSeconds")]
    public double? WarmupSeconds { get; init; }

    /// <summary>The fixed rate asked for (ops/s), when there was one.</summary>
    [JsonPropertyName("rate")]
    public long? Rate { get; init; }
}

/// <summary>System.Text.Json source generation for the report: no reflection (NativeAOT).</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(JsonReport))]
internal sealed partial class LoadReportJson : JsonSerializerContext
{
}
