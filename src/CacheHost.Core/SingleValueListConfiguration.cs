using Microsoft.Extensions.Configuration;

namespace CacheHost.Core;

/// <summary>
/// Accepts a single string wherever a list of addresses is accepted (<c>"Listen": "IP:127.0.0.1:9001"</c>
/// as well as <c>"Listen": [ … ]</c>). Done on the configuration, before any binding, so the reflection
/// binder and the configuration-binding source generator see the same thing: a list. For each known list
/// key, the source with the highest precedence that sets the key decides: a single value there becomes
/// <c>key:0</c>; a single value anywhere is hidden from the binder (which cannot convert a string to a list).
/// Add it after every other source; it recomputes on reload.
/// </summary>
public static class SingleValueListConfiguration
{
    /// <summary>Adds the normalisation for <paramref name="listKeys"/> (e.g. <c>CacheHost:CacheServer:Listen</c>).</summary>
    public static IConfigurationManager AddSingleValueLists(this IConfigurationManager configuration, IReadOnlyCollection<string> listKeys)
    {
        configuration.Sources.Add(new Source((IConfigurationRoot)configuration, listKeys));
        return configuration;
    }

    /// <summary>The normalised entries for <paramref name="listKeys"/> over <paramref name="providers"/> (lowest precedence first).</summary>
    public static Dictionary<string, string?> Normalise(IEnumerable<IConfigurationProvider> providers, IEnumerable<string> listKeys)
    {
        var data = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        var byPrecedence = providers.Reverse().ToArray();
        foreach (var key in listKeys)
        {
            var decided = false;
            foreach (var provider in byPrecedence)
            {
                var single = provider.TryGet(key, out var value) && value is not null;
                var hasItems = provider.GetChildKeys([], key).Any();
                if (single)
                {
                    // Hide it from the binder whatever else happens.
                    data[key] = null;
                }

                if (decided || !(single || hasItems))
                {
                    continue;
                }

                decided = true;
                if (single && !hasItems && !string.IsNullOrWhiteSpace(value))
                {
                    data[key + ":0"] = value!.Trim();
                }
            }
        }

        return data;
    }

    private sealed class Source(IConfigurationRoot root, IReadOnlyCollection<string> listKeys) : IConfigurationSource
    {
        public IConfigurationProvider Build(IConfigurationBuilder builder) => new Provider(root, listKeys);
    }

    private sealed class Provider(IConfigurationRoot root, IReadOnlyCollection<string> listKeys) : ConfigurationProvider
    {
        // Loaded once when added (the other providers are loaded by then) and again on every reload, after
        // the providers before it (ConfigurationRoot reloads in order).
        public override void Load() =>
            Data = Normalise(root.Providers.TakeWhile(p => !ReferenceEquals(p, this)), listKeys);
    }
}
