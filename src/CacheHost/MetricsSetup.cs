using CacheHost.Core;
using CacheHost.Core.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace CacheHost;

/// <summary>
/// <c>CacheHost:Metrics</c> (README "Metrics"): off by default, so no meter exists and nothing is measured
/// beyond the counters the <c>*.stats</c> commands always keep. With <c>Enabled</c> every role's
/// <see cref="RoleMetrics"/> and the process meter are created at start (dotnet-counters and any MeterListener
/// see them) and, with <c>OtlpEndpoint</c>, OpenTelemetry pushes every <c>CacheHost.*</c> meter there.
/// </summary>
internal static class MetricsSetup
{
    public static void AddMetrics(this HostApplicationBuilder builder)
    {
        builder.Services.AddValidatedOptions<MetricsOptions>(MetricsOptions.SectionName, static (section, o) => section.Bind(o, RoleOptionsExtensions.RejectUnknownKeys), static o => o.Validate());
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddRoleMetrics(static sp => new ProcessMetrics(sp.GetRequiredService<TimeProvider>()));

        // Composition needs the switch now; a value that does not parse is left to the options validation
        // above, which names the key and fails the start.
        var section = builder.Configuration.GetSection(MetricsOptions.SectionName);
        if (!bool.TryParse(section["Enabled"], out var enabled) || !enabled)
        {
            return;
        }

        builder.Services.AddHostedService<MetricsActivation>();
        var endpoint = section["OtlpEndpoint"];
        if (string.IsNullOrEmpty(endpoint))
        {
            return;
        }

        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("cachehost", serviceVersion: ProcessFigures.Version))
            .WithMetrics(metrics => metrics
                .AddMeter(RoleMetrics.MeterPrefix + "*")
                .AddOtlpExporter((exporter, reader) =>
                {
                    var settings = new MetricsOptions();
                    section.Bind(settings, RoleOptionsExtensions.RejectUnknownKeys);
                    if (Uri.TryCreate(settings.OtlpEndpoint, UriKind.Absolute, out var uri))
                    {
                        exporter.Endpoint = uri;
                    }

                    exporter.Protocol = string.Equals(settings.OtlpProtocol, "Grpc", StringComparison.OrdinalIgnoreCase)
                        ? OtlpExportProtocol.Grpc
                        : OtlpExportProtocol.HttpProtobuf;
                    reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = (int)Math.Clamp(settings.ExportInterval.TotalMilliseconds, 100, int.MaxValue);
                    reader.TemporalityPreference = MetricReaderTemporalityPreference.Cumulative;
                }));
    }

    /// <summary>Creates every registered meter when the host starts (so that none exists while metrics are off).</summary>
    private sealed class MetricsActivation(IEnumerable<RoleMetrics> meters) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            _ = meters.Count(); // resolving creates them; the container disposes them at stop
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
