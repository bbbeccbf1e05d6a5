using CacheHost.Core.Control;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace CacheHost.Systemd.Control;

/// <summary>
/// The command table of the control socket: the host's built-ins plus every role's
/// <see cref="IControlCommandProvider"/> (found on the hosted services and as registered singletons).
/// Built lazily at control-server start, when every role exists; a name claimed twice fails start-up.
/// </summary>
public sealed class ControlDispatcher(IServiceProvider services)
{
    /// <summary>Handled by the connection itself (daemonproxy §5 "Session and utility").</summary>
    public static readonly string[] ProtocolCommands = ["echo", "exit"];

    private IReadOnlyDictionary<string, IControlCommandProvider>? _table;
    private IReadOnlyList<IControlCommandProvider>? _providers;

    /// <summary>All command names, sorted.</summary>
    public IEnumerable<string> CommandNames => Table.Keys.Concat(ProtocolCommands).Order(StringComparer.Ordinal);

    /// <summary>Providers in registration order (host built-ins first), for statedump.</summary>
    public IReadOnlyList<IControlCommandProvider> Providers
    {
        get
        {
            _ = Table;
            return _providers!;
        }
    }

    private IReadOnlyDictionary<string, IControlCommandProvider> Table => _table ??= Build();

    /// <summary>Builds the table now (start-up), so duplicate names fail the start.</summary>
    public void Prepare() => _ = Table;

    /// <summary>The provider for <paramref name="name"/>, or null.</summary>
    public IControlCommandProvider? Find(string name) => Table.GetValueOrDefault(name);

    private Dictionary<string, IControlCommandProvider> Build()
    {
        var providers = new List<IControlCommandProvider> { services.GetRequiredService<HostControlCommands>() };
        providers.AddRange(services.GetServices<IHostedService>().OfType<IControlCommandProvider>());
        providers.AddRange(services.GetServices<IControlCommandProvider>());
        providers = providers.Distinct().ToList();
        var table = new Dictionary<string, IControlCommandProvider>(StringComparer.Ordinal);
        foreach (var provider in providers)
        {
            foreach (var name in provider.CommandNames)
            {
                if (ProtocolCommands.Contains(name, StringComparer.Ordinal) || !table.TryAdd(name, provider))
                {
                    throw new InvalidOperationException($"control command '{name}' is registered twice ({provider.GetType().Name} and {(table.TryGetValue(name, out var other) ? other.GetType().Name : "the control protocol")})");
                }

                if (name.Length == 0 || name.Any(c => c is '\t' or '\n' or ' ' or '#'))
                {
                    throw new InvalidOperationException($"control command name '{name}' of {provider.GetType().Name} is not a single word");
                }
            }
        }

        _providers = providers;
        return table;
    }
}
