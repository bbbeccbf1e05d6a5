using CacheHost.Posix;
using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace CacheHost.Systemd.Control;

/// <summary>
/// The daemon-wide TSV control socket, section <c>CacheHost:Control</c> (docs/systemd.md).
/// </summary>
public sealed class ControlOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "CacheHost:Control";

    /// <summary>Serve the control socket. Default true.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// Unix socket path. Default: <c>$RUNTIME_DIRECTORY/control.sock</c> under systemd, else
    /// <c>control.sock</c> in <see cref="PrivateDirectory"/> (which must be the daemon user's, mode 0700).
    /// </summary>
    public string? Socket { get; set; }

    /// <summary>Owner (name or uid) of the socket file. Default: the daemon's user.</summary>
    public string? Owner { get; set; }

    /// <summary>Group (name or gid) of the socket file; members of this group may control the daemon.</summary>
    public string? Group { get; set; }

    /// <summary>Octal mode of the socket file. Default 660 (owner and group only: the socket can stop and reconfigure the daemon).</summary>
    [RegularExpression("^[0-7]{1,4}$", ErrorMessage = "must be octal permission bits such as 660")]
    public string Mode { get; set; } = "660";

    /// <summary>Longest command line in bytes, LF excluded. Default 1023, daemonproxy's limit (daemonproxy §3.1).</summary>
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
    public static string DefaultSocketPath(string? runtimeDirectory) =>
        !string.IsNullOrEmpty(runtimeDirectory) ? Path.Combine(runtimeDirectory, "control.sock") : Path.Combine(PrivateDirectory(), "control.sock");

    /// <summary>
    /// Where the control socket goes without systemd's RuntimeDirectory=: <c>$XDG_RUNTIME_DIR/cachehost</c>,
    /// else <c>$TMPDIR/cachehost-&lt;uid&gt;</c>. Never <c>/run/cachehost</c>: that is the packaged service's
    /// directory, and a development run as root must not take it.
    /// </summary>
    public static string PrivateDirectory()
    {
        var xdg = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
        return !string.IsNullOrEmpty(xdg) && Path.IsPathRooted(xdg)
            ? Path.Combine(xdg, "cachehost")
            : Path.Combine(Path.GetTempPath(), $"cachehost-{Libc.geteuid()}");
    }

    /// <summary>
    /// Makes sure <paramref name="directory"/> is private to this process's user: created with mode 0700 if
    /// missing; otherwise it must be a real directory (not a symlink) owned by the effective uid with mode
    /// 0700. In a shared temp directory anyone could have created it first and own the socket's
    /// directory. Returns null when usable, else the reason.
    /// </summary>
    public static string? PreparePrivateDirectory(string directory)
    {
        var uid = Libc.geteuid();
        if (PosixFiles.MakeDirectory(directory, 0x1C0 /* 0700 */) is var created and not 0 and not Libc.EEXIST)
        {
            return $"cannot create {directory}: {Libc.ErrnoName(created)}";
        }

        if (!PosixFiles.TryLStat(directory, out var st))
        {
            return $"cannot inspect {directory}: {Libc.ErrnoName(Libc.Errno)}";
        }

        if (!st.IsDirectory)
        {
            return $"{directory} is not a directory";
        }

        if (st.Uid != uid)
        {
            return $"{directory} is owned by uid {st.Uid}, not by this process's uid {uid}";
        }

        var mode = st.Mode & 0x1FF;
        if (mode != 0x1C0)
        {
            return $"{directory} has mode {Convert.ToString(mode, 8)}, not 700";
        }

        return null;
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
