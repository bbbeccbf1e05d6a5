using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;
using Mono.Unix.Native;

namespace CacheHost.Systemd.Control;

/// <summary>
/// The daemon-wide TSV control socket, section <c>CacheHost:Control</c> (docs/systemd.md).
/// </summary>
public sealed class ControlOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "CacheHost:Control";

    /// <summary>Serve the control socket. Default true.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// Unix socket path. Default: <c>$RUNTIME_DIRECTORY/control.sock</c> under systemd, else
    /// <c>/run/cachehost/control.sock</c> when that directory is writable, else
    /// <c>$TMPDIR/cachehost-&lt;uid&gt;/control.sock</c>.
    /// </summary>
    public string? Socket { get; set; }

    /// <summary>Owner (name or uid) of the socket file. Default: the daemon's user.</summary>
    public string? Owner { get; set; }

    /// <summary>Group (name or gid) of the socket file; members of this group may control the daemon.</summary>
    public string? Group { get; set; }

    /// <summary>Octal mode of the socket file. Default 660 (owner and group only: the socket can stop and reconfigure the daemon).</summary>
    [RegularExpression("^[0-7]{1,4}$", ErrorMessage = "must be octal permission bits such as 660")]
    public string Mode { get; set; } = "660";

    /// <summary>Longest command line in bytes, LF excluded. Default 1023, daemonproxy's limit (spec 3.1).</summary>
    [Range(64, 65536)]
    public int MaxLineLength { get; set; } = 1023;

    /// <summary>Simultaneous control connections. Default 16.</summary>
    [Range(1, 1024)]
    public int MaxConnections { get; set; } = 16;

    /// <summary>Event lines queued for a client that does not read before further events are dropped (with one "overflow" line). Default 1024.</summary>
    [Range(16, 1_000_000)]
    public int MaxQueuedLines { get; set; } = 1024;

    /// <summary>The configured path, or the default for this environment.</summary>
    public string ResolveSocketPath(SystemdEnvironment environment) =>
        string.IsNullOrWhiteSpace(Socket) ? DefaultSocketPath(environment.RuntimeDirectory) : Socket;

    /// <summary>The default control socket path (shared by the daemon and <c>cachehost ctl</c>).</summary>
    public static string DefaultSocketPath(string? runtimeDirectory)
    {
        if (!string.IsNullOrEmpty(runtimeDirectory))
        {
            return Path.Combine(runtimeDirectory, "control.sock");
        }

        const string run = "/run/cachehost";
        if (Directory.Exists(run) ? Syscall.access(run, AccessModes.W_OK) == 0 : Syscall.access("/run", AccessModes.W_OK) == 0)
        {
            return Path.Combine(run, "control.sock");
        }

        return Path.Combine(Path.GetTempPath(), $"cachehost-{Syscall.getuid()}", "control.sock");
    }
}

/// <summary>
/// The DataAnnotations checks of <see cref="ControlOptions"/>, generated at build time (no reflection, NativeAOT); nested
/// option objects are checked where marked [ValidateObjectMembers]. RoleOptionsExtensions names the keys.
/// </summary>
[OptionsValidator]
public sealed partial class ControlOptionsValidator : IValidateOptions<ControlOptions>
{
}
