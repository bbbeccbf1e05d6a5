using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>Configuration section <c>CacheHost:ProcessSupervisor</c> (docs/daemonproxy.md).</summary>
public sealed class ProcessSupervisorOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "CacheHost:ProcessSupervisor";

    /// <summary>Config file: a daemonproxy command stream run once at start-up (like <c>-c</c>).</summary>
    public string? ConfigFile { get; set; }

    /// <summary>Unix socket for controller connections (like <c>-S</c>).</summary>
    public string? SocketPath { get; set; }

    /// <summary>Terminate-guard code (like <c>--exit-guard</c>); 0 = none.</summary>
    public long ExitGuard { get; set; }

    /// <summary>Exec-on-exit argv, TAB-separated (like <c>-E</c>), at most 255 bytes.</summary>
    [MaxLength(255)]
    public string? ExitExec { get; set; }

    /// <summary>Controller slots across all kinds. The original has 2.</summary>
    [Range(1, 1024)]
    public int MaxControllers { get; set; } = 2;

    /// <summary>Supervisor log threshold: none, trace, debug (shows info and above), info, warning, error, fatal.</summary>
    [RegularExpression("^(none|trace|debug|info|warning|error|fatal)$")]
    public string LogFilter { get; set; } = "debug";
}

/// <summary>
/// The DataAnnotations checks of <see cref="ProcessSupervisorOptions"/>, generated at build time (no reflection, NativeAOT); nested
/// option objects are checked where marked [ValidateObjectMembers]. RoleOptionsExtensions names the keys.
/// </summary>
[OptionsValidator]
public sealed partial class ProcessSupervisorOptionsValidator : IValidateOptions<ProcessSupervisorOptions>
{
}
