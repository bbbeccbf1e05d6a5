using System.Collections.Concurrent;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Serilog.Core;
using Serilog.Events;

namespace CacheHost.Systemd.Logging;

/// <summary>
/// Log levels per namespace, read from <c>Serilog:MinimumLevel</c> (a level, or <c>Default</c> plus
/// <c>Override:{Namespace}</c>) and changed live by SIGHUP / <c>config.reload</c> (re-read) or by the
/// control command <c>log.filter</c> (until the next reload). Applied to Serilog (the logger factory under
/// Serilog.Extensions.Hosting): <see cref="LowestEnabled"/> is the lowest level any namespace enables, so
/// a level no namespace enables is rejected before its message is formatted; <see cref="IsEnabled(LogEvent)"/>
/// then decides per namespace (one cached lookup).
/// </summary>
public sealed class LogLevelControl
{
    private readonly ConcurrentDictionary<string, LogLevel> _resolved = new(StringComparer.Ordinal);
    private volatile Levels _levels = new(LogLevel.Information, new Dictionary<string, LogLevel>(StringComparer.Ordinal));

    private sealed record Levels(LogLevel Default, IReadOnlyDictionary<string, LogLevel> Overrides);

    /// <summary>Serilog's minimum level: the lowest level enabled for any namespace; follows every change.</summary>
    public LoggingLevelSwitch LowestEnabled { get; } = new(LogEventLevel.Information);

    /// <summary>The level for categories without an override.</summary>
    public LogLevel Default => _levels.Default;

    /// <summary>The namespace overrides in effect.</summary>
    public IReadOnlyDictionary<string, LogLevel> Overrides => _levels.Overrides;

    /// <summary>Whether <paramref name="category"/> logs at <paramref name="level"/>.</summary>
    public bool IsEnabled(string? category, LogLevel level)
    {
        if (level == LogLevel.None)
        {
            return false;
        }

        var key = category ?? "";
        if (!_resolved.TryGetValue(key, out var minimum))
        {
            minimum = Resolve(_levels, key);
            _resolved[key] = minimum;
        }

        return level >= minimum;
    }

    /// <summary>
    /// A category whose errors are held back until <see cref="MarkStarted"/> unless it is enabled at Debug: the
    /// Generic Host's "Hosting failed to start" error repeats, with its whole stack trace, the one line the
    /// dispatcher prints for a failed start (README "exit status"). Null: nothing is held back.
    /// </summary>
    public string? QuietUntilStarted { get; set; }

    /// <summary>Start-up is over: errors of <see cref="QuietUntilStarted"/> (a crashed role's trace) are logged again.</summary>
    public void MarkStarted() => _started = true;

    private volatile bool _started;

    /// <summary>Whether a Serilog event passes: its SourceContext (the logger category) at its level.</summary>
    public bool IsEnabled(LogEvent logEvent)
    {
        var category = logEvent.Properties.TryGetValue(Constants.SourceContextPropertyName, out var value) && value is ScalarValue { Value: string name } ? name : null;
        var level = ToMicrosoft(logEvent.Level);
        if (!IsEnabled(category, level))
        {
            return false;
        }

        return _started || level < LogLevel.Error || category is null || category != QuietUntilStarted || IsEnabled(category, LogLevel.Debug);
    }

    /// <summary>Replaces all levels with those in <paramref name="configuration"/>.</summary>
    public void Load(IConfiguration configuration)
    {
        var section = configuration.GetSection("Serilog:MinimumLevel");
        var defaultLevel = LogLevel.Information;
        var overrides = new Dictionary<string, LogLevel>(StringComparer.Ordinal);
        if (!string.IsNullOrWhiteSpace(section.Value))
        {
            defaultLevel = ParseOrThrow(section.Value, "Serilog:MinimumLevel");
        }
        else
        {
            var value = section["Default"];
            if (!string.IsNullOrWhiteSpace(value))
            {
                defaultLevel = ParseOrThrow(value, "Serilog:MinimumLevel:Default");
            }

            foreach (var child in section.GetSection("Override").GetChildren())
            {
                if (!string.IsNullOrWhiteSpace(child.Value))
                {
                    overrides[child.Key] = ParseOrThrow(child.Value, $"Serilog:MinimumLevel:Override:{child.Key}");
                }
            }
        }

        Publish(new Levels(defaultLevel, overrides));
    }

    /// <summary>Sets the default level (<paramref name="ns"/> null) or one namespace's level until the next reload.</summary>
    public void Set(string? ns, LogLevel level)
    {
        var current = _levels;
        if (ns is null)
        {
            Publish(current with { Default = level });
            return;
        }

        var overrides = new Dictionary<string, LogLevel>(current.Overrides, StringComparer.Ordinal) { [ns] = level };
        Publish(current with { Overrides = overrides });
    }

    /// <summary>A short description for logs, e.g. "Default=Information Microsoft=Warning".</summary>
    public string Describe()
    {
        var levels = _levels;
        return string.Join(' ', new[] { $"Default={Name(levels.Default)}" }.Concat(levels.Overrides.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $"{o.Key}={Name(o.Value)}")));
    }

    /// <summary>
    /// Parses Serilog names (Verbose, Debug, Information, Warning, Error, Fatal), Microsoft names (Trace,
    /// Critical, None) and daemonproxy's (trace, debug, info, warning, error, fatal), case-insensitively.
    /// </summary>
    public static bool TryParse(string text, out LogLevel level)
    {
        switch (text.Trim().ToLowerInvariant())
        {
            case "verbose" or "trace":
                level = LogLevel.Trace;
                return true;
            case "debug":
                level = LogLevel.Debug;
                return true;
            case "information" or "info":
                level = LogLevel.Information;
                return true;
            case "warning" or "warn":
                level = LogLevel.Warning;
                return true;
            case "error":
                level = LogLevel.Error;
                return true;
            case "fatal" or "critical":
                level = LogLevel.Critical;
                return true;
            case "none" or "off":
                level = LogLevel.None;
                return true;
            default:
                level = LogLevel.None;
                return false;
        }
    }

    /// <summary>The Serilog-style name of a level.</summary>
    public static string Name(LogLevel level) => level switch
    {
        LogLevel.Trace => "Verbose",
        LogLevel.Critical => "Fatal",
        _ => level.ToString(),
    };

    private void Publish(Levels levels)
    {
        _levels = levels;
        _resolved.Clear();
        var lowest = levels.Overrides.Values.Append(levels.Default).Min();
        LowestEnabled.MinimumLevel = lowest switch
        {
            LogLevel.Trace => LogEventLevel.Verbose,
            LogLevel.Debug => LogEventLevel.Debug,
            LogLevel.Information => LogEventLevel.Information,
            LogLevel.Warning => LogEventLevel.Warning,
            LogLevel.Error => LogEventLevel.Error,
            _ => LogEventLevel.Fatal,
        };
    }

    private static LogLevel ToMicrosoft(LogEventLevel level) => level switch
    {
        LogEventLevel.Verbose => LogLevel.Trace,
        LogEventLevel.Debug => LogLevel.Debug,
        LogEventLevel.Information => LogLevel.Information,
        LogEventLevel.Warning => LogLevel.Warning,
        LogEventLevel.Error => LogLevel.Error,
        _ => LogLevel.Critical,
    };

    private static LogLevel ParseOrThrow(string text, string key) =>
        TryParse(text, out var level) ? level : throw new FormatException($"{key}: '{text}' is not a log level (Verbose, Debug, Information, Warning, Error, Fatal)");

    private const string HostingLifetimeCategory = "Microsoft.Hosting.Lifetime";

    private static bool InNamespace(string category, string ns) =>
        category.StartsWith(ns, StringComparison.Ordinal) && (category.Length == ns.Length || category[ns.Length] == '.');

    private static LogLevel Resolve(Levels levels, string category)
    {
        // Longest matching namespace wins: "A.B" matches "A.B" and "A.B.C", not "A.BC".
        var best = -1;
        var result = levels.Default;
        foreach (var (ns, level) in levels.Overrides)
        {
            if (ns.Length > best && InNamespace(category, ns))
            {
                best = ns.Length;
                result = level;
            }
        }

        // Microsoft.Extensions.Hosting.Systemd's lifetime logs "Application started…" and "Application is
        // shutting down…" at Information, which repeat this host's Ready and Stopping lines: at least Warning
        // unless that namespace itself is configured.
        if (best < HostingLifetimeCategory.Length && InNamespace(category, HostingLifetimeCategory) && result < LogLevel.Warning)
        {
            result = LogLevel.Warning;
        }

        return result;
    }
}
