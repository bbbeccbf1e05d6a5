using Mono.Unix;
using Mono.Unix.Native;

namespace CacheHost.Posix;

/// <summary>What the product reads from stat(2): type, permission bits, owner, device and inode.</summary>
internal readonly record struct FileStatus(uint Mode, uint Uid, uint Gid, ulong Device, ulong Inode)
{
    public bool IsSocket => (Mode & Libc.S_IFMT) == Libc.S_IFSOCK;

    public bool IsDirectory => (Mode & Libc.S_IFMT) == 0x4000;

    /// <summary>The permission bits (the low 12 bits, e.g. 0700).</summary>
    public uint Permissions => Mode & 0xFFF;
}

/// <summary>
/// File, user and group calls. Mono.Posix does what it does well (the struct stat layout per architecture,
/// getpwnam/getgrnam, chown) behind this layer, so no other project names it; the rest are <see cref="Libc"/>'s.
/// The int-returning ones give 0 or the errno.
/// </summary>
internal static unsafe class PosixFiles
{
    /// <summary>lstat(2): the link itself, not its target.</summary>
    public static bool TryLStat(string path, out FileStatus status) => From(Syscall.lstat(path, out var st), st, out status);

    public static bool TryStat(string path, out FileStatus status) => From(Syscall.stat(path, out var st), st, out status);

    public static bool TryFStat(int fd, out FileStatus status) => From(Syscall.fstat(fd, out var st), st, out status);

    /// <summary>chown(2); uint.MaxValue (-1) leaves that id unchanged. Returns 0 or errno.</summary>
    public static int Chown(string path, uint uid, uint gid) => Syscall.chown(path, uid, gid) == 0 ? 0 : Libc.Errno;

    /// <summary>rename(2). Returns 0 or errno.</summary>
    public static int Rename(string from, string to)
    {
        fixed (byte* f = Libc.Utf8Z(from))
        fixed (byte* t = Libc.Utf8Z(to))
        {
            return Libc.rename(f, t) == 0 ? 0 : Libc.Errno;
        }
    }

    /// <summary>unlink(2). Returns 0 or errno.</summary>
    public static int Unlink(string path)
    {
        fixed (byte* p = Libc.Utf8Z(path))
        {
            return Libc.unlink(p) == 0 ? 0 : Libc.Errno;
        }
    }

    /// <summary>mkdir(2) with exact <paramref name="mode"/> bits (before umask). Returns 0 or errno.</summary>
    public static int MakeDirectory(string path, uint mode)
    {
        fixed (byte* p = Libc.Utf8Z(path))
        {
            return Libc.mkdir(p, (int)mode) == 0 ? 0 : Libc.Errno;
        }
    }

    /// <summary>fsync of a directory, so a rename inside it is durable. Best effort, as the callers want.</summary>
    public static void SyncDirectory(string directory)
    {
        int fd;
        fixed (byte* p = Libc.Utf8Z(directory))
        {
            fd = Libc.open(p, Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        }

        if (fd >= 0)
        {
            _ = Libc.fsync(fd);
            _ = Libc.close(fd);
        }
    }

    /// <summary>The uid of a user name or number; null when no such user.</summary>
    public static uint? UserId(string user)
    {
        if (uint.TryParse(user, out var uid))
        {
            return uid;
        }

        return TryUser(user, out _, out var id, out _) ? id : null;
    }

    /// <summary>The gid of a group name or number; null when no such group.</summary>
    public static uint? GroupId(string group)
    {
        if (uint.TryParse(group, out var gid))
        {
            return gid;
        }

        try
        {
            return (uint)new UnixGroupInfo(group).GroupId;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>getpwnam/getpwuid: the user's name, uid and primary gid.</summary>
    public static bool TryUser(string user, out string name, out uint uid, out uint gid)
    {
        try
        {
            var info = uint.TryParse(user, out var number) ? new UnixUserInfo(number) : new UnixUserInfo(user);
            (name, uid, gid) = (info.UserName, (uint)info.UserId, (uint)info.GroupId);
            return true;
        }
        catch (ArgumentException)
        {
            (name, uid, gid) = (string.Empty, 0, 0);
            return false;
        }
    }

    private static bool From(int rc, Stat st, out FileStatus status)
    {
        status = rc == 0 ? new FileStatus((uint)st.st_mode, st.st_uid, st.st_gid, st.st_dev, st.st_ino) : default;
        return rc == 0;
    }
}
