namespace CacheHost.Core;

/// <summary>
/// Process-level settings shared by every role, section <c>CacheHost:Process</c>. The drop-in command lines
/// (<c>-daemon</c>, <c>-pidfile</c>, <c>-user</c>) map onto these.
/// </summary>
public sealed class ProcessOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "CacheHost:Process";

    /// <summary>
    /// Detach from the terminal once listeners are bound (dc_server's <c>-daemon</c>). Under systemd leave it
    /// off and use Type=notify instead.
    /// </summary>
    public bool Daemon { get; set; }

    /// <summary>Write the process id (decimal, no newline, as the reference) here once started.</summary>
    public string? PidFile { get; set; }

    /// <summary>
    /// Drop privileges to this user (name or uid) after the listeners are bound and the pid file is written.
    /// Unlike the reference, which only calls setuid, the group and supplementary groups change too.
    /// </summary>
    public string? User { get; set; }
}

