using System.Collections.Concurrent;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd.Logging;

/// <summary>
/// Log levels per namespace, read from <c>Serilog:MinimumLevel</c> (a level, or <c>Default</c> plus
/// <c>Override:{Namespace}</c>) and changed live by SIGHUP / <c>config.reload</c> (re-read) or by the
/// control command <c>log.filter</c> (until the next reload). Applied as the Microsoft.Extensions.Logging
/// filter, so a disabled level costs one cached lookup and no message formatting.
/// </summary>
public sealed class LogLevelControl
{
    private readonly ConcurrentDictionary<string, LogLevel> _resolved = new(StringComparer.Ordinal);
    private volatile Levels _levels = new(LogLevel.Information, new Dictionary<string, LogLevel>(StringComparer.Ordinal));

    private sealed record Levels(LogLevel Default, IReadOnlyDictionary<string, LogLevel> Overrides);

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
    }

    private static LogLevel ParseOrThrow(string text, string key) =>
        TryParse(text, out var level) ? level : throw new FormatException($"{key}: '{text}' is not a log level (Verbose, Debug, Information, Warning, Error, Fatal)");

    private static LogLevel Resolve(Levels levels, string category)
    {
        // Longest matching namespace wins: "A.B" matches "A.B" and "A.B.C", not "A.BC".
        var best = -1;
        var result = levels.Default;
        foreach (var (ns, level) in levels.Overrides)
        {
            if (ns.Length > best && category.StartsWith(ns, StringComparison.Ordinal)
                && (category.Length == ns.Length || category[ns.Length] == '.'))
            {
                best = ns.Length;
                result = level;
            }
        }

        return result;
    }
}
