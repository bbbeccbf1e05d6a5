using System.ComponentModel.DataAnnotations;
using CacheHost.Transport;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.Probe;

/// <summary>Section <c>CacheHost:Probe</c>.</summary>
public sealed class ProbeOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "CacheHost:Probe";

    /// <summary>Listen address (libnal form, e.g. <c>UNIX:/run/cachehost/probe.sock</c> or <c>IP:127.0.0.1:9100</c>). Socket-activation name: "Probe".</summary>
    [Required]
    public string Listen { get; set; } = "";

    /// <summary>Line sent to each new connection; read live (IOptionsMonitor), so a reload changes it. Empty: none.</summary>
    public string Greeting { get; set; } = "";

    /// <summary>Delay before binding in StartAsync (simulates a slow start; READY=1 must wait for it).</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:05:00")]
    public TimeSpan StartDelay { get; set; }

    /// <summary>When set, the role crashes this long after start (tests Restart=on-failure / the exit code).</summary>
    public TimeSpan? FailAfter { get; set; }

    /// <summary>Transport limits.</summary>
    [ValidateObjectMembers]
    public TransportOptions Transport { get; set; } = new();
}

/// <summary>
/// The DataAnnotations checks of <see cref="ProbeOptions"/>, generated at build time (no reflection, NativeAOT); nested
/// option objects are checked where marked [ValidateObjectMembers]. RoleOptionsExtensions names the keys.
/// </summary>
[OptionsValidator]
public sealed partial class ProbeOptionsValidator : IValidateOptions<ProbeOptions>
{
}
