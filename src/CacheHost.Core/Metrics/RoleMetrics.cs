using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;

namespace CacheHost.Core.Metrics;

/// <summary>
/// A role's <see cref="Meter"/> (issue 18): observable instruments that read the role's existing
/// {Role}Statistics when a listener collects, so the request path pays nothing for them. Created only when
/// <c>CacheHost:Metrics:Enabled</c> is true (the host resolves every registered <see cref="RoleMetrics"/> at
/// start); the role's <c>*.stats</c> control command reads the same counters.
/// </summary>
public abstract class RoleMetrics : IDisposable
{
    /// <summary>Every meter's name starts with this (<c>CacheHost.CacheServer</c>, …); exporters subscribe to <c>CacheHost.*</c>.</summary>
    public const string MeterPrefix = "CacheHost.";

    /// <summary>Creates the meter <c>CacheHost.{role}</c>, versioned as the program.</summary>
    protected RoleMetrics(string role)
    {
        Meter = new Meter(MeterPrefix + role, ProcessFigures.Version);
        Prefix = "cachehost." + role.ToLowerInvariant() + ".";
    }

    /// <summary>The role's meter.</summary>
    public Meter Meter { get; }

    /// <summary>The instruments' name prefix, <c>cachehost.{role}.</c>.</summary>
    protected string Prefix { get; }

    /// <inheritdoc />
    public void Dispose()
    {
        Meter.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>Registration of a role's metrics.</summary>
public static class RoleMetricsExtensions
{
    /// <summary>
    /// Registers <paramref name="factory"/>; it runs only when metrics are on (nothing is created otherwise, so a
    /// role adds this unconditionally).
    /// </summary>
    public static IServiceCollection AddRoleMetrics(this IServiceCollection services, Func<IServiceProvider, RoleMetrics> factory) =>
        services.AddSingleton(factory);
}
