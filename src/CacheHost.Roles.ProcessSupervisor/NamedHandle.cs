namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>A named descriptor (daemonproxy §10) and how it is shown in <c>fd.state</c> (daemonproxy §6.3).</summary>
internal sealed class NamedHandle
{
    public NamedHandle(string name, int fd, string type, string flags, string description, bool constant = false)
    {
        Name = name;
        Fd = fd;
        Type = type;
        Flags = flags;
        Description = description;
        IsConstant = constant;
    }

    public string Name { get; }

    /// <summary>The supervisor's descriptor (close-on-exec); -1 for the control.* placeholders.</summary>
    public int Fd { get; set; }

    public string Type { get; }

    public string Flags { get; }

    /// <summary>Path, peer name or address; a pipe end's peer changes to <c>?</c> when the peer goes.</summary>
    public string Description { get; set; }

    public bool IsConstant { get; }

    /// <summary>The other end of a pipe or socket pair.</summary>
    public NamedHandle? Peer { get; set; }

    public string StateLine() => $"fd.state\t{Name}\t{Type}\t{Flags}\t{Description}\n";

    /// <summary>Describes an inherited, taken or std descriptor from what the kernel says about it.</summary>
    public static unsafe NamedHandle Inspect(string name, int fd)
    {
        int domain = 0, type = 0;
        uint len = sizeof(int);
        if (Libc.getsockopt(fd, Libc.SOL_SOCKET, Libc.SO_DOMAIN, &domain, &len) == 0)
        {
            len = sizeof(int);
            Libc.getsockopt(fd, Libc.SOL_SOCKET, Libc.SO_TYPE, &type, &len);
            var flags = (domain switch { Libc.AF_UNIX => "unix", Libc.AF_INET => "inet", Libc.AF_INET6 => "inet6", _ => "unix" })
                + (type switch { Libc.SOCK_DGRAM => ",dgram", Libc.SOCK_SEQPACKET => ",seqpacket", _ => ",stream" });
            return new NamedHandle(name, fd, "socket", flags, "unknown");
        }

        var fl = Libc.fcntl(fd, Libc.F_GETFL, 0);
        var access = (fl & Libc.O_ACCMODE) switch { Libc.O_WRONLY => "write", Libc.O_RDWR => "read,write", _ => "read" };
        return new NamedHandle(name, fd, "file", FileFlags(access, (fl & Libc.O_APPEND) != 0, false, false, (fl & Libc.O_NONBLOCK) != 0, false), "unknown");
    }

    /// <summary>Flag text of a file handle: access first, then the set flags in the fixed order of daemonproxy §6.3.</summary>
    public static string FileFlags(string access, bool append, bool create, bool trunc, bool nonblock, bool mkdir)
    {
        var text = access;
        if (append) text += ",append";
        if (create) text += ",create";
        if (trunc) text += ",trunc";
        if (nonblock) text += ",nonblock";
        if (mkdir) text += ",mkdir";
        return text;
    }
}
