using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.CommandLine;
using Microsoft.Extensions.Configuration.EnvironmentVariables;
using Microsoft.Extensions.Configuration.Json;
using Microsoft.Extensions.Logging;

namespace CacheHost;

/// <summary>
/// Finds misspelt keys the binder never sees (<c>CacheHsot</c>, <c>Rolse</c>, <c>Serilog:MinimumLevle</c>):
/// role sections already fail on unknown keys (ErrorOnUnknownConfiguration), but a misspelt section name or
/// top-level key would silently be ignored. Checked in the JSON files, the command line and (below
/// <c>CacheHost</c> and <c>Serilog</c> only) the environment, whose other variables are not ours.
/// </summary>
internal static partial class ConfigurationKeyCheck
{
    private static readonly string[] TopLevel = ["CacheHost", "Serilog", "environment", "applicationName", "contentRoot"];
    private static readonly string[] CacheHostSettingKeys = ["Roles", "Process", "Control", "Transport", "Metrics"];
    private static readonly string[] TransportKeys = ["Engine", "EngineThreads", "InlineCompletions"];

    // The Serilog sections this program reads (no Serilog.Settings.Configuration: NativeAOT, docs/systemd.md).
    private static readonly string[] SerilogKeys = CacheHost.Systemd.Logging.SerilogSettings.TopLevelKeys;
    private static readonly string[] MinimumLevelKeys = ["Default", "Override"];

    /// <summary>One warning per unknown key, with the closest known name when there is one.</summary>
    /// <param name="roleNames">The roles this program can run (their sections are known keys); default <see cref="RoleCatalog.Roles"/>.</param>
    public static void Warn(IConfiguration configuration, ILogger logger, IEnumerable<string>? roleNames = null)
    {
        foreach (var (key, suggestion) in UnknownKeys(configuration, roleNames))
        {
            if (suggestion is null)
            {
                UnknownKey(logger, key);
            }
            else
            {
                UnknownKeyDidYouMean(logger, key, suggestion);
            }
        }
    }

    /// <summary>The unknown keys (full path) and a suggestion for each.</summary>
    public static IEnumerable<(string Key, string? Suggestion)> UnknownKeys(IConfiguration configuration, IEnumerable<string>? roleNames = null)
    {
        string[] cacheHostKeys = [.. CacheHostSettingKeys, .. roleNames ?? RoleCatalog.Roles.Keys];
        if (configuration is not IConfigurationRoot root)
        {
            yield break;
        }

        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var provider in root.Providers)
        {
            var whole = provider is JsonConfigurationProvider or CommandLineConfigurationProvider;
            if (!whole && provider is not EnvironmentVariablesConfigurationProvider)
            {
                continue;
            }

            var checks = new List<(string? Parent, string[] Known)>
            {
                ("CacheHost", cacheHostKeys),
                ("CacheHost:Transport", TransportKeys),
                ("Serilog", SerilogKeys),
                ("Serilog:MinimumLevel", MinimumLevelKeys),
            };
            if (whole)
            {
                checks.Add((null, TopLevel));
            }

            foreach (var (parent, known) in checks)
            {
                foreach (var child in provider.GetChildKeys([], parent).Distinct(StringComparer.OrdinalIgnoreCase))
                {
                    var path = parent is null ? child : $"{parent}:{child}";
                    if (!known.Contains(child, StringComparer.OrdinalIgnoreCase) && seen.Add(path))
                    {
                        yield return (path, Closest(child, known));
                    }
                }
            }
        }
    }

    private static string? Closest(string key, string[] known)
    {
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var candidate in known)
        {
            var distance = Distance(key.ToLowerInvariant(), candidate.ToLowerInvariant());
            if (distance < bestDistance)
            {
                (best, bestDistance) = (candidate, distance);
            }
        }

        // Transpositions and one or two wrong letters; anything further is not a typo of ours.
        return bestDistance <= Math.Max(2, key.Length / 4) ? best : null;
    }

    // Optimal string alignment distance (Levenshtein plus adjacent transposition: "Rolse" -> "Roles" is 1).
    private static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (var i = 0; i <= a.Length; i++)
        {
            d[i, 0] = i;
        }

        for (var j = 0; j <= b.Length; j++)
        {
            d[0, j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                {
                    d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
                }
            }
        }

        return d[a.Length, b.Length];
    }

    [LoggerMessage(9001, LogLevel.Warning, "Unknown configuration key {Key} is ignored", EventName = "UnknownKey")]
    private static partial void UnknownKey(ILogger logger, string key);

    [LoggerMessage(9002, LogLevel.Warning, "Unknown configuration key {Key} is ignored (did you mean {Suggestion}?)", EventName = "UnknownKeyDidYouMean")]
    private static partial void UnknownKeyDidYouMean(ILogger logger, string key, string suggestion);
}
