namespace CacheHost.Core.Metrics;

/// <summary>
/// Section <c>CacheHost:Metrics</c>: the meters and their export (README "Metrics"). Off by default; with
/// <see cref="Enabled"/> the meters exist (readable by <c>dotnet-counters</c> and any MeterListener) and, when
/// <see cref="OtlpEndpoint"/> is set, OpenTelemetry pushes them there.
/// </summary>
public sealed class MetricsOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "CacheHost:Metrics";

    /// <summary>Creates the meters and starts the exporters below.</summary>
    public bool Enabled { get; set; }

    /// <summary>OTLP collector address, e.g. <c>http://127.0.0.1:4318/v1/metrics</c> (HttpProtobuf) or <c>http://127.0.0.1:4317</c> (Grpc); none: no OTLP export.</summary>
    public string? OtlpEndpoint { get; set; }

    /// <summary><c>HttpProtobuf</c> (default) or <c>Grpc</c>.</summary>
    public string OtlpProtocol { get; set; } = "HttpProtobuf";

    /// <summary>How often the OTLP exporter pushes (at least 100 ms).</summary>
    public TimeSpan ExportInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Problems, each naming its key (the section prefix is added by the caller).</summary>
    public IEnumerable<string> Validate()
    {
        if (OtlpEndpoint is not null && (!Uri.TryCreate(OtlpEndpoint, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)))
        {
            yield return $"OtlpEndpoint: '{OtlpEndpoint}' is not an http:// or https:// address";
        }

        if (!string.Equals(OtlpProtocol, "HttpProtobuf", StringComparison.OrdinalIgnoreCase) && !string.Equals(OtlpProtocol, "Grpc", StringComparison.OrdinalIgnoreCase))
        {
            yield return $"OtlpProtocol: '{OtlpProtocol}' is not HttpProtobuf or Grpc";
        }

        if (ExportInterval < TimeSpan.FromMilliseconds(100) || ExportInterval > TimeSpan.FromDays(1))
        {
            yield return $"ExportInterval: {ExportInterval} is outside 00:00:00.1 .. 1.00:00:00";
        }
    }
}
