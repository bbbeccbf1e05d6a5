namespace CacheHost.Core;

/// <summary>
/// Where a role's reference-format lines go (dc_server's stats line, dc_snoop's frame lines): through the host's
/// logging, or bare on standard error as the original tool prints them, for scripts that scrape its output.
/// </summary>
public enum LineOutput
{
    /// <summary>Through ILogger (journald, files, ...): the appsettings-driven host.</summary>
    Log,

    /// <summary>Bare lines on standard error, the original's stream and text: the drop-in command lines.</summary>
    Stderr,
}
