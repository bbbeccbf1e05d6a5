// Serilog.Settings.Configuration is not used: it finds sinks and their arguments by reflection over
// assemblies, which NativeAOT trimming breaks (IL2026/IL3050 in its code). This small options type, bound by
// the configuration binder's source generator, takes the keys CacheHost supports and builds the logger
// from them (README "Configuration keys", docs/systemd.md "Logging").
using System.Globalization;
using Microsoft.Extensions.Configuration;
using Serilog;
using Serilog.Events;
using Serilog.Formatting.Display;

namespace CacheHost.Systemd.Logging;

/// <summary>
/// The <c>Serilog</c> section: <c>MinimumLevel</c> (read by <see cref="LogLevelControl"/>), <c>WriteTo</c>
/// entries named <c>Console</c> or <c>File</c> with the arguments listed in <see cref="ConsoleArgs"/> and
/// <see cref="FileArgs"/>, <c>Enrich: ["FromLogContext"]</c>, <c>Properties</c> (added to every event), and
/// <c>Using</c> (accepted and ignored: both sinks are built in). Anything else is an error naming the key.
/// </summary>
public sealed class SerilogSettings
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Serilog";

    /// <summary>The <c>Serilog</c> sections this program reads; any other is warned about at start and ignored.</summary>
    public static readonly string[] TopLevelKeys = ["MinimumLevel", "Using", "WriteTo", "Enrich", "Properties"];
    private static readonly string[] ConsoleArgs = ["outputTemplate", "standardErrorFromLevel", "restrictedToMinimumLevel"];
    private static readonly string[] FileArgs =
    [
        "path", "outputTemplate", "restrictedToMinimumLevel", "rollingInterval", "fileSizeLimitBytes", "rollOnFileSizeLimit",
        "retainedFileCountLimit", "shared", "buffered", "flushToDiskInterval",
    ];

    /// <summary>Sink packages named in the file (Serilog.Settings.Configuration's list); ignored.</summary>
    public List<string> Using { get; set; } = [];

    /// <summary>Sinks: <c>{ "Name": "Console"|"File", "Args": { … } }</c>.</summary>
    public List<SerilogSinkSettings> WriteTo { get; set; } = [];

    /// <summary>Enrichers; only <c>FromLogContext</c>.</summary>
    public List<string> Enrich { get; set; } = [];

    /// <summary>Properties added to every event.</summary>
    public Dictionary<string, string> Properties { get; set; } = [];

    /// <summary>Binds and checks the section; a problem throws <see cref="FormatException"/> naming the key.</summary>
    public static SerilogSettings Read(IConfiguration configuration)
    {
        var section = configuration.GetSection(SectionName);
        // Other top-level sections (a misspelt MinimumLevle, Serilog.Settings.Configuration's Filter or
        // Destructure) are not errors: ConfigurationKeyCheck warns about each at start, as for CacheHost keys.
        var settings = new SerilogSettings();
        section.Bind(settings);
        for (var i = 0; i < settings.WriteTo.Count; i++)
        {
            var sink = settings.WriteTo[i];
            var known = sink.Name.ToUpperInvariant() switch
            {
                "CONSOLE" => ConsoleArgs,
                "FILE" => FileArgs,
                _ => throw new FormatException($"Serilog:WriteTo:{i}:Name: '{sink.Name}' is not a supported sink (Console, File)"),
            };
            foreach (var key in sink.Args.Keys)
            {
                if (!known.Contains(key, StringComparer.OrdinalIgnoreCase))
                {
                    throw new FormatException($"Serilog:WriteTo:{i}:Args:{key}: not supported for {sink.Name} (supported: {string.Join(", ", known)})");
                }
            }

            if (sink.IsFile && string.IsNullOrWhiteSpace(sink.Arg("path")))
            {
                throw new FormatException($"Serilog:WriteTo:{i}:Args:path: required for a File sink");
            }

            // Parse every argument now, so that a bad value stops start-up with its key.
            _ = sink.Level(i, "restrictedToMinimumLevel");
            _ = sink.Level(i, "standardErrorFromLevel");
            _ = sink.Parse(i, "rollingInterval", text => Enum.TryParse<RollingInterval>(text, true, out var v) ? v : (RollingInterval?)null);
            _ = sink.Parse(i, "fileSizeLimitBytes", text => long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v > 0 ? v : (long?)null);
            _ = sink.Parse(i, "retainedFileCountLimit", text => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v > 0 ? v : (int?)null);
            _ = sink.Parse(i, "rollOnFileSizeLimit", text => bool.TryParse(text, out var v) ? v : (bool?)null);
            _ = sink.Parse(i, "shared", text => bool.TryParse(text, out var v) ? v : (bool?)null);
            _ = sink.Parse(i, "buffered", text => bool.TryParse(text, out var v) ? v : (bool?)null);
            _ = sink.Parse(i, "flushToDiskInterval", text => TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out var v) ? v : (TimeSpan?)null);
            if (sink.Arg("outputTemplate") is { } template)
            {
                _ = new MessageTemplateTextFormatter(template);
            }
        }

        for (var i = 0; i < settings.Enrich.Count; i++)
        {
            if (!string.Equals(settings.Enrich[i], "FromLogContext", StringComparison.OrdinalIgnoreCase))
            {
                throw new FormatException($"Serilog:Enrich:{i}: '{settings.Enrich[i]}' is not supported (FromLogContext)");
            }
        }

        return settings;
    }

    /// <summary>The first Console entry: it shapes the program's one console sink.</summary>
    public SerilogSinkSettings? Console => WriteTo.FirstOrDefault(s => !s.IsFile);

    /// <summary>Adds the enrichers, properties and File sinks (the console sink is the caller's).</summary>
    public void ApplyTo(LoggerConfiguration logger)
    {
        if (Enrich.Count > 0)
        {
            logger.Enrich.FromLogContext();
        }

        foreach (var (name, value) in Properties)
        {
            logger.Enrich.WithProperty(name, value);
        }

        for (var i = 0; i < WriteTo.Count; i++)
        {
            var sink = WriteTo[i];
            if (!sink.IsFile)
            {
                continue;
            }

            logger.WriteTo.File(
                sink.Arg("path")!,
                restrictedToMinimumLevel: sink.Level(i, "restrictedToMinimumLevel") ?? LogEventLevel.Verbose,
                outputTemplate: sink.Arg("outputTemplate") ?? "{Timestamp:yyyy-MM-dd HH:mm:ss.fff zzz} [{Level:u3}] {SourceContext}: {Message:lj}{NewLine}{Exception}",
                formatProvider: CultureInfo.InvariantCulture,
                fileSizeLimitBytes: sink.Parse(i, "fileSizeLimitBytes", text => long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : (long?)null) ?? 1L << 30,
                buffered: sink.Parse(i, "buffered", text => bool.TryParse(text, out var v) ? v : (bool?)null) ?? false,
                shared: sink.Parse(i, "shared", text => bool.TryParse(text, out var v) ? v : (bool?)null) ?? false,
                flushToDiskInterval: sink.Parse(i, "flushToDiskInterval", text => TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out var v) ? v : (TimeSpan?)null),
                rollingInterval: sink.Parse(i, "rollingInterval", text => Enum.TryParse<RollingInterval>(text, true, out var v) ? v : (RollingInterval?)null) ?? RollingInterval.Infinite,
                rollOnFileSizeLimit: sink.Parse(i, "rollOnFileSizeLimit", text => bool.TryParse(text, out var v) ? v : (bool?)null) ?? false,
                retainedFileCountLimit: sink.Parse(i, "retainedFileCountLimit", text => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : (int?)null) ?? 31);
        }
    }
}

/// <summary>One <c>Serilog:WriteTo</c> entry.</summary>
public sealed class SerilogSinkSettings
{
    /// <summary>Console or File.</summary>
    public string Name { get; set; } = "";

    /// <summary>The sink's arguments (names as Serilog.Settings.Configuration spells them, any case).</summary>
    public Dictionary<string, string> Args { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    internal bool IsFile => string.Equals(Name, "File", StringComparison.OrdinalIgnoreCase);

    /// <summary>An argument's text, or null when absent or empty.</summary>
    public string? Arg(string name) => Args.TryGetValue(name, out var value) && !string.IsNullOrWhiteSpace(value) ? value : null;

    /// <summary>A level argument (Verbose … Fatal), or null when absent.</summary>
    public LogEventLevel? Level(int index, string name) =>
        Parse(index, name, text => Enum.TryParse<LogEventLevel>(text, true, out var v) && Enum.IsDefined(v) ? v : (LogEventLevel?)null);

    internal T? Parse<T>(int index, string name, Func<string, T?> parse)
        where T : struct =>
        Arg(name) is not { } text ? null : parse(text.Trim()) ?? throw new FormatException($"Serilog:WriteTo:{index}:Args:{name}: '{text}' is not valid");
}
