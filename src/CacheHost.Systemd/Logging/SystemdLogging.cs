using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Serilog;

namespace CacheHost.Systemd.Logging;

/// <summary>
/// Serilog on the Generic Host through Serilog.Extensions.Hosting (<c>AddSerilog</c>: Serilog is the logger
/// factory, the logger is flushed and disposed with the host): one Serilog console sink on stdout that is
/// journald-formatted when stdout is the journal and readable otherwise, File sinks, enrichers and
/// properties from the <c>Serilog</c> section (<see cref="SerilogSettings"/>: no reflection, NativeAOT), and levels per namespace from <c>Serilog:MinimumLevel</c>
/// through <see cref="LogLevelControl"/> so they can change on reload or by <c>log.filter</c>.
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
        // Read (and checked) now, so that a bad key stops start-up with its name before anything runs.
        var settings = SerilogSettings.Read(builder.Configuration);
        builder.Services.AddSerilog((_, logger) =>
        {
            // The level switch (the lowest level any namespace enables) rejects most disabled events in
            // IsEnabled, before a message is formatted; the filter then decides per namespace.
            logger.MinimumLevel.ControlledBy(levels.LowestEnabled).Filter.ByIncludingOnly(levels.IsEnabled);
            settings.ApplyTo(logger);
            // A Console entry in Serilog:WriteTo shapes the program's one console sink (outputTemplate) and may send
            // it to stderr (standardErrorFromLevel): dc_snoop's drop-in prints bare reference lines on stderr.
            var console = settings.Console;
            var stderrFrom = console?.Level(settings.WriteTo.IndexOf(console), "standardErrorFromLevel");
            var consoleMinimum = console?.Level(settings.WriteTo.IndexOf(console), "restrictedToMinimumLevel") ?? Serilog.Events.LogEventLevel.Verbose;
            if (JournalStream.StdoutIsJournal())
            {
                logger.WriteTo.Console(new JournaldTextFormatter(), restrictedToMinimumLevel: consoleMinimum, standardErrorFromLevel: stderrFrom);
            }
            else
            {
                logger.WriteTo.Console(
                    outputTemplate: console?.Arg("outputTemplate") ?? ConsoleTemplate,
                    formatProvider: System.Globalization.CultureInfo.InvariantCulture,
                    restrictedToMinimumLevel: consoleMinimum,
                    standardErrorFromLevel: stderrFrom);
            }
        });
        return levels;
    }
}
