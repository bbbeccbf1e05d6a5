using Microsoft.Extensions.Logging;
using CacheHost.Posix;

namespace CacheHost.Transport;

/// <summary>
/// Applies owner, group and mode to a unix listening socket (dc_server's -sockowner/-sockgroup/-sockperms,
/// distcache §2.1). Unknown user or group names are configuration errors and fail the bind; a chown or
/// chmod that the kernel refuses is only a warning, as in the reference.
/// </summary>
public static class UnixSocketPermissions
{
    /// <summary>Resolves a user name or numeric uid.</summary>
    public static uint ResolveUser(string user)
    {
        return PosixFiles.UserId(user) ?? throw new InvalidOperationException($"unknown user '{user}'");
    }

    /// <summary>Resolves a group name or numeric gid.</summary>
    public static uint ResolveGroup(string group)
    {
        return PosixFiles.GroupId(group) ?? throw new InvalidOperationException($"unknown group '{group}'");
    }

    /// <summary>Parses octal permission bits such as "660".</summary>
    public static UnixFileMode ParseMode(string octal)
    {
        var value = Convert.ToInt32(octal, 8);
        if (value is < 0 or > 0xFFF)
        {
            throw new FormatException($"'{octal}' is not octal permission bits");
        }

        return (UnixFileMode)value;
    }

    /// <summary>Applies whatever of owner, group and mode is set.</summary>
    public static void Apply(string path, string? owner, string? group, string? mode, ILogger logger)
    {
        if (owner is not null || group is not null)
        {
            // -1 (all bits set) leaves that id unchanged, as chown(2) specifies.
            var uid = owner is null ? uint.MaxValue : ResolveUser(owner);
            var gid = group is null ? uint.MaxValue : ResolveGroup(group);
            if (PosixFiles.Chown(path, uid, gid) is var errno and not 0)
            {
                TransportLog.SocketPermissionFailed(logger, path, "chown", Libc.ErrnoName(errno));
            }
        }

        if (mode is not null)
        {
            try
            {
                File.SetUnixFileMode(path, ParseMode(mode));
            }
            catch (Exception ex) when (ex is UnauthorizedAccessException or IOException)
            {
                TransportLog.SocketPermissionFailed(logger, path, "chmod", ex.Message);
            }
        }
    }
}
