using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Serilog;

namespace CacheHost.Systemd.Logging;

/// <summary>
/// Serilog on the Generic Host without Serilog.Extensions.Hosting (missing from the mirror; ecosystem.md 3):
/// providers cleared, one Serilog console sink on stdout that is journald-formatted when stdout is the
/// journal and readable otherwise, further sinks (e.g. File) and enrichers from the <c>Serilog</c>
/// section, and levels per namespace from <c>Serilog:MinimumLevel</c> through <see cref="LogLevelControl"/>
/// so they can change on reload.
/// </summary>
public static class SystemdLogging
{
    /// <summary>The readable console line (terminal, redirect, tests).</summary>
    public const string ConsoleTemplate = "[{Timestamp:HH:mm:ss} {Level:u3}] {SourceContext}: {Message:lj}{NewLine}{Exception}";

    /// <summary>Configures logging for <paramref name="builder"/> and returns the level control it registered.</summary>
    public static LogLevelControl Configure(HostApplicationBuilder builder)
    {
        var levels = new LogLevelControl();
        levels.Load(builder.Configuration);
        builder.Services.AddSingleton(levels);

        builder.Logging.ClearProviders();
        // Serilog passes everything; the Microsoft.Extensions.Logging filter below decides, per category.
        var configuration = new LoggerConfiguration()
            .MinimumLevel.Verbose()
            .ReadFrom.Configuration(
                SerilogSectionWithoutLevelsAndConsole(builder.Configuration),
                new Serilog.Settings.Configuration.ConfigurationReaderOptions(
                    typeof(ConsoleLoggerConfigurationExtensions).Assembly,
                    typeof(FileLoggerConfigurationExtensions).Assembly));
        // A Console entry in Serilog:WriteTo may still shape the console line (outputTemplate) and send it to
        // stderr (standardErrorFromLevel): dc_snoop's drop-in prints bare reference lines on stderr.
        var console = ConsoleEntry(builder.Configuration);
        var stderrFrom = Enum.TryParse<Serilog.Events.LogEventLevel>(console?["Args:standardErrorFromLevel"], ignoreCase: true, out var level)
            ? level
            : (Serilog.Events.LogEventLevel?)null;
        configuration = JournalStream.StdoutIsJournal()
            ? configuration.WriteTo.Console(new JournaldTextFormatter(), standardErrorFromLevel: stderrFrom)
            : configuration.WriteTo.Console(
                outputTemplate: console?["Args:outputTemplate"] ?? ConsoleTemplate,
                formatProvider: System.Globalization.CultureInfo.InvariantCulture,
                standardErrorFromLevel: stderrFrom);

        Log.Logger = configuration.CreateLogger();
        builder.Logging.AddSerilog(Log.Logger, dispose: true);
        builder.Services.PostConfigure<LoggerFilterOptions>(options =>
        {
            // Rules from a "Logging" section would shadow ours for their categories; one rule decides.
            options.Rules.Clear();
            options.MinLevel = LogLevel.Trace;
            options.AddFilter((category, level) => levels.IsEnabled(category, level));
        });
        return levels;
    }

    private static IConfigurationSection? ConsoleEntry(IConfiguration configuration) =>
        configuration.GetSection("Serilog:WriteTo").GetChildren()
            .FirstOrDefault(c => string.Equals(c["Name"], "Console", StringComparison.OrdinalIgnoreCase));

    // Serilog's own MinimumLevel would hide what LogLevelControl enables, and the console sink is chosen
    // above from JOURNAL_STREAM; everything else in the section (File sinks, enrichers, properties) is kept.
    private static IConfiguration SerilogSectionWithoutLevelsAndConsole(IConfiguration configuration)
    {
        var writeTo = configuration.GetSection("Serilog:WriteTo");
        var consoleEntries = writeTo.GetChildren()
            .Where(c => string.Equals(c["Name"], "Console", StringComparison.OrdinalIgnoreCase))
            .Select(c => c.Path + ":")
            .ToArray();
        var values = configuration.GetSection("Serilog").AsEnumerable()
            .Where(kv => kv.Value is not null)
            .Where(kv => !kv.Key.Equals("Serilog:MinimumLevel", StringComparison.OrdinalIgnoreCase)
                && !kv.Key.StartsWith("Serilog:MinimumLevel:", StringComparison.OrdinalIgnoreCase)
                && !kv.Key.StartsWith("Serilog:Using", StringComparison.OrdinalIgnoreCase)
                && !consoleEntries.Any(prefix => (kv.Key + ":").StartsWith(prefix, StringComparison.OrdinalIgnoreCase)));
        return new ConfigurationBuilder().AddInMemoryCollection(values).Build();
    }
}
