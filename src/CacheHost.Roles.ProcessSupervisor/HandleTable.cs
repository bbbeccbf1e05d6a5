using System.Net;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// The named-handle table of daemonproxy §10 and its <c>fd.*</c> commands (daemonproxy §5, events §6.3): the
/// descriptors by name in byte order, the pool limits of <c>--fd-pool</c>, and the name the log writes to.
/// Touched by the supervisor loop alone.
/// </summary>
internal sealed class HandleTable
{
    private readonly SortedList<string, NamedHandle> _handles = new(StringComparer.Ordinal);
    private readonly SupervisorSettings _settings;
    private readonly Action<string, long> _broadcast;

    /// <param name="settings">Pool limits (<c>--fd-pool</c>, object size).</param>
    /// <param name="broadcast">Sends an event line to every controller (the controller table's broadcast).</param>
    public HandleTable(SupervisorSettings settings, Action<string, long> broadcast)
    {
        _settings = settings;
        _broadcast = broadcast;
    }

    public int Count => _handles.Count;

    /// <summary>Names in byte order (statedump part 1 resumes by name, daemonproxy §9).</summary>
    public IList<string> Names => _handles.Keys;

    /// <summary>Handles in name order, parallel to <see cref="Names"/>.</summary>
    public IList<NamedHandle> Handles => _handles.Values;

    /// <summary>Handles that occupy pool objects: all of them, the four constants included, as in the original
    /// (so `--fd-pool 1`, raised to the minimum 7, is full with the constants and stdin/stdout/stderr).</summary>
    public int PooledCount => _handles.Count;

    /// <summary>The handle <c>log.dest</c> names (daemonproxy §5); the log writes to its descriptor.</summary>
    public string LogDest { get; set; } = "stderr";

    /// <summary>The log's descriptor: fd 2 before the table is filled (option warnings), -1 when the named handle is missing.</summary>
    public int LogFd => _handles.Count == 0 ? 2 : _handles.TryGetValue(LogDest, out var h) ? h.Fd : -1;

    public bool Contains(string name) => _handles.ContainsKey(name);

    public bool TryGet(string name, out NamedHandle handle) => _handles.TryGetValue(name, out handle!);

    /// <summary>Adds or replaces without closing or broadcasting (start-up registration).</summary>
    public void Add(NamedHandle handle) => _handles[handle.Name] = handle;

    /// <summary>Start-up (daemonproxy §2.4 step 3): the four constant special handles.</summary>
    public void AddConstants(int devNull)
    {
        Add(new NamedHandle("null", devNull, "special", "read,write", "/dev/null", constant: true));
        Add(new NamedHandle("control.cmd", -1, "special", "write", "daemonproxy command pipe", constant: true));
        Add(new NamedHandle("control.event", -1, "special", "read", "daemonproxy event stream", constant: true));
        Add(new NamedHandle("control.socket", -1, "special", "read,write", "daemonproxy control socket", constant: true));
    }

    /// <summary>Points a std handle at /dev/null (interactive mode and <c>-c -</c> take stdin/stdout over).</summary>
    public void RepointToNull(string name, int mode)
    {
        var fd = Libc.Open("/dev/null", mode | Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            return;
        }

        if (_handles.TryGetValue(name, out var old) && old.Fd >= 0)
        {
            Libc.close(old.Fd);
        }

        _handles[name] = NamedHandle.Inspect(name, fd);
    }

    /// <summary>
    /// daemonproxy §2.4 step 4: fds 0-2 become stdin/stdout/stderr (as close-on-exec copies, so deleting one never
    /// frees a low number under the runtime), every other inherited descriptor becomes fd_N. Descriptors the
    /// runtime opened are close-on-exec; inherited ones are not, which is how they are told apart.
    /// </summary>
    public void RegisterInherited(params int[] skip)
    {
        string[] std = ["stdin", "stdout", "stderr"];
        for (var i = 0; i < 3; i++)
        {
            var fd = Libc.fcntl(i, Libc.F_DUPFD_CLOEXEC, 3);
            if (fd < 0)
            {
                fd = Libc.Open("/dev/null", (i == 0 ? Libc.O_RDONLY : Libc.O_WRONLY) | Libc.O_CLOEXEC, 0);
            }

            Add(NamedHandle.Inspect(std[i], fd));
        }

        foreach (var entry in SafeListFds())
        {
            if (entry < 3 || entry >= 1024 || skip.Contains(entry))
            {
                continue;
            }

            var flags = Libc.fcntl(entry, Libc.F_GETFD, 0);
            if (flags < 0 || (flags & Libc.FD_CLOEXEC) != 0)
            {
                continue;
            }

            Libc.SetCloseOnExec(entry);
            Add(NamedHandle.Inspect($"fd_{entry}", entry));
        }
    }

    private static List<int> SafeListFds()
    {
        var list = new List<int>();
        try
        {
            foreach (var path in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
            {
                if (int.TryParse(Path.GetFileName(path), out var fd))
                {
                    list.Add(fd);
                }
            }
        }
        catch (IOException)
        {
        }

        list.Sort();
        return list;
    }

    /// <summary>Checks that NAME may be (re)defined; returns an error or null.</summary>
    public string? CheckReplaceable(string name)
    {
        var error = CommandTable.CheckFdName(name);
        if (error is not null)
        {
            return error;
        }

        if (_handles.TryGetValue(name, out var h) && h.IsConstant)
        {
            return "File descriptor cannot be altered";
        }

        if (!_handles.ContainsKey(name) && _settings.HandlePool is { } pool && PooledCount >= pool)
        {
            return "Unable to allocate new file descriptor object";
        }

        return null;
    }

    /// <summary>Installs a handle, closing any old descriptor of that name (daemonproxy §10: no `deleted` event).</summary>
    public void Install(NamedHandle handle, long now, bool broadcast = true)
    {
        if (_handles.TryGetValue(handle.Name, out var old))
        {
            Release(old);
        }

        var limit = _settings.HandlePool is null ? int.MaxValue : Math.Max(8, _settings.HandleObjectSize - 40);
        if (handle.Description.Length > limit)
        {
            handle.Description = handle.Description[..(limit - 3)] + "..."; // fixed pool objects cut long paths
        }

        _handles[handle.Name] = handle;
        if (broadcast)
        {
            _broadcast(handle.StateLine(), now);
        }
    }

    private static void Release(NamedHandle old)
    {
        if (old.Fd >= 0)
        {
            Libc.close(old.Fd);
            old.Fd = -1;
        }

        if (old.Peer is { } peer)
        {
            peer.Description = "?";
            peer.Peer = null;
        }
    }

    public unsafe string? CmdFdPipe(Controller c, string[] f, string line, long now)
    {
        var rname = CommandTable.Arg(f, 1);
        var wname = CommandTable.Arg(f, 2);
        var error = CheckReplaceable(rname) ?? CheckReplaceable(wname);
        if (error is not null)
        {
            return error;
        }

        bool nonblock = false, isSocket = false;
        int family = Libc.AF_UNIX, type = Libc.SOCK_STREAM;
        foreach (var flag in CommandTable.Arg(f, 3).Split(','))
        {
            switch (flag)
            {
                case "" or "-": break;
                case "nonblock": nonblock = true; break;
                case "unix": isSocket = true; family = Libc.AF_UNIX; break;
                case "inet": isSocket = true; family = Libc.AF_INET; break;
                case "inet6": isSocket = true; family = Libc.AF_INET6; break;
                case "tcp": isSocket = true; family = Libc.AF_INET; type = Libc.SOCK_STREAM; break;
                case "udp": isSocket = true; family = Libc.AF_INET; type = Libc.SOCK_DGRAM; break;
                case "stream": isSocket = true; type = Libc.SOCK_STREAM; break;
                case "dgram": isSocket = true; type = Libc.SOCK_DGRAM; break;
                case "seqpacket": isSocket = true; type = Libc.SOCK_SEQPACKET; break;
                default: return $"unknown flag \"{flag}\""; // defect 4 fixed: no stray newline
            }
        }

        var fds = stackalloc int[2];
        string rflags, wflags;
        if (isSocket)
        {
            if (Libc.socketpair(family, type | Libc.SOCK_CLOEXEC | (nonblock ? Libc.SOCK_NONBLOCK : 0), 0, fds) != 0)
            {
                return "socketpair() failed: " + Libc.StrError(Libc.Errno);
            }

            var prefix = (family switch { Libc.AF_INET => "inet,", Libc.AF_INET6 => "inet6,", _ => "unix," })
                + (type switch { Libc.SOCK_DGRAM => "dgram,", Libc.SOCK_SEQPACKET => "seqpacket,", _ => "stream," })
                + (nonblock ? "nonblock," : "");
            rflags = prefix + "to";
            wflags = prefix + "to";
        }
        else
        {
            if (Libc.pipe2(fds, Libc.O_CLOEXEC | (nonblock ? Libc.O_NONBLOCK : 0)) != 0)
            {
                return "pipe() failed: " + Libc.StrError(Libc.Errno);
            }

            rflags = (nonblock ? "nonblock," : "") + "from";
            wflags = (nonblock ? "nonblock," : "") + "to";
        }

        var r = new NamedHandle(rname, fds[0], "pipe", rflags, wname);
        var w = new NamedHandle(wname, fds[1], "pipe", wflags, rname);
        if (_handles.TryGetValue(rname, out var oldR))
        {
            Release(oldR);
            _handles.Remove(rname);
        }

        Install(r, now, broadcast: false);
        Install(w, now, broadcast: false);
        r.Peer = w;
        w.Peer = r;
        r.Description = wname;
        _broadcast(r.StateLine(), now);
        _broadcast(w.StateLine(), now);
        return null;
    }

    public unsafe string? CmdFdOpen(Controller c, string[] f, string line, long now)
    {
        var name = CommandTable.Arg(f, 1);
        var error = CheckReplaceable(name);
        if (error is not null)
        {
            return error;
        }

        if (f.Length < 3)
        {
            return "missing flags argument";
        }

        if (f.Length < 4 || f[3].Length == 0)
        {
            return "missing path argument";
        }

        if (f.Length > 4)
        {
            return "unexpected argument after path";
        }

        bool read = false, write = false, append = false, create = false, trunc = false, nonblock = false, mkdir = false;
        foreach (var flag in f[2].Split(','))
        {
            switch (flag)
            {
                case "" or "-": break;
                case "read": read = true; break;
                case "write": write = true; break;
                case "append": append = true; break;
                case "create": create = true; break;
                case "trunc": trunc = true; break;
                case "nonblock": nonblock = true; break;
                case "mkdir": mkdir = true; break;
                default: return $"unknown flag \"{flag}\"";
            }
        }

        var access = write ? (read ? "read,write" : "write") : "read";
        var flags = (write ? (read ? Libc.O_RDWR : Libc.O_WRONLY) : Libc.O_RDONLY) | Libc.O_NOCTTY | Libc.O_CLOEXEC
            | (append ? Libc.O_APPEND : 0) | (create ? Libc.O_CREAT : 0) | (trunc ? Libc.O_TRUNC : 0) | (nonblock ? Libc.O_NONBLOCK : 0);
        var path = f[3];
        if (mkdir)
        {
            MakeParents(path);
        }

        var fd = Libc.Open(path, flags, 0x180 /* 0600 */);
        if (fd < 0)
        {
            return "open failed: " + Libc.StrError(Libc.Errno);
        }

        Install(new NamedHandle(name, fd, "file", NamedHandle.FileFlags(access, append, create, trunc, nonblock, mkdir), path), now);
        return null;
    }

    private static unsafe void MakeParents(string path)
    {
        var slash = path.LastIndexOf('/');
        for (var i = 1; i <= slash; i++)
        {
            if (i == slash || path[i] == '/')
            {
                fixed (byte* p = Libc.Z(path[..i]))
                {
                    Libc.mkdir(p, 0x1C0 /* 0700 */);
                }
            }
        }
    }

    public unsafe string? CmdFdSocket(Controller c, string[] f, string line, long now)
    {
        var name = CommandTable.Arg(f, 1);
        var error = CheckReplaceable(name);
        if (error is not null)
        {
            return error;
        }

        if (f.Length < 3)
        {
            return "missing flags argument";
        }

        int family = Libc.AF_UNIX, type = Libc.SOCK_STREAM, listenQueue = 0;
        bool nonblock = false, mkdir = false, bind = false;
        foreach (var flag in f[2].Split(','))
        {
            switch (flag)
            {
                case "" or "-": break;
                case "unix": family = Libc.AF_UNIX; break;
                case "inet": family = Libc.AF_INET; break;
                case "inet6": family = Libc.AF_INET6; break;
                case "tcp": family = Libc.AF_INET; type = Libc.SOCK_STREAM; break;
                case "udp": family = Libc.AF_INET; type = Libc.SOCK_DGRAM; break;
                case "stream": type = Libc.SOCK_STREAM; break;
                case "dgram": type = Libc.SOCK_DGRAM; break;
                case "seqpacket": type = Libc.SOCK_SEQPACKET; break;
                case "nonblock": nonblock = true; break;
                case "mkdir": mkdir = true; break;
                case "bind": bind = true; break;
                case "listen": listenQueue = 32; bind = true; break;
                default:
                    if (flag.StartsWith("listen=", StringComparison.Ordinal))
                    {
                        if (!int.TryParse(flag.AsSpan(7), CommandTable.NumberStyles, null, out listenQueue) || listenQueue is < 1 or > 65535)
                        {
                            return "invalid listen queue length";
                        }

                        bind = true;
                        break;
                    }

                    return $"unknown flag \"{flag}\"";
            }
        }

        var address = f.Length > 3 ? f[3] : null;
        if (f.Length > 4)
        {
            return "unexpected argument after address";
        }

        if (address is not null)
        {
            bind = true;
        }

        if (bind && address is null)
        {
            return "expected address argument";
        }

        byte[]? sockaddr = null;
        if (bind)
        {
            sockaddr = BuildSockaddr(family, address!);
            if (sockaddr is null)
            {
                return "invalid address";
            }
        }

        var fd = Libc.socket(family, type | Libc.SOCK_CLOEXEC | (nonblock ? Libc.SOCK_NONBLOCK : 0), 0);
        if (fd < 0)
        {
            return "socket: " + Libc.StrError(Libc.Errno);
        }

        if (bind)
        {
            if (family == Libc.AF_UNIX && mkdir)
            {
                MakeParents(address!);
            }

            var one = 1;
            if (Libc.setsockopt(fd, Libc.SOL_SOCKET, Libc.SO_REUSEADDR, &one, sizeof(int)) != 0)
            {
                var e = Libc.Errno;
                Libc.close(fd);
                return "setsockopt: " + Libc.StrError(e);
            }

            fixed (byte* sa = sockaddr)
            {
                if (Libc.bind(fd, sa, (uint)sockaddr!.Length) != 0)
                {
                    var e = Libc.Errno;
                    Libc.close(fd);
                    return "bind: " + Libc.StrError(e);
                }
            }

            if (listenQueue > 0 && Libc.listen(fd, listenQueue) != 0)
            {
                var e = Libc.Errno;
                Libc.close(fd);
                return "listen: " + Libc.StrError(e);
            }
        }

        var text = (family switch { Libc.AF_INET => "inet", Libc.AF_INET6 => "inet6", _ => "unix" })
            + (type switch { Libc.SOCK_DGRAM => ",dgram", Libc.SOCK_SEQPACKET => ",seqpacket", _ => ",stream" })
            + (bind ? ",bind" : "") + (listenQueue > 0 ? $",listen={listenQueue}" : "")
            + (mkdir ? ",mkdir" : "") + (nonblock ? ",nonblock" : "");
        Install(new NamedHandle(name, fd, "socket", text, address ?? ""), now);
        return null;
    }

    /// <summary>unix: a path under 108 bytes; inet: <c>*</c> or dotted IPv4, optional <c>:PORT</c>; inet6: not implemented.</summary>
    internal static byte[]? BuildSockaddr(int family, string address)
    {
        if (family == Libc.AF_UNIX)
        {
            if (address.Length == 0 || address.Length >= 108)
            {
                return null;
            }

            var sa = new byte[2 + address.Length + 1];
            sa[0] = (byte)Libc.AF_UNIX;
            System.Text.Encoding.Latin1.GetBytes(address, 0, address.Length, sa, 2);
            return sa;
        }

        if (family != Libc.AF_INET)
        {
            return null;
        }

        var host = address;
        var port = 0;
        var colon = address.LastIndexOf(':');
        if (colon >= 0)
        {
            host = address[..colon];
            if (!int.TryParse(address.AsSpan(colon + 1), CommandTable.NumberStyles, null, out port) || port > 65535)
            {
                return null;
            }
        }

        IPAddress ip;
        if (host == "*")
        {
            ip = IPAddress.Any;
        }
        else if (!IPAddress.TryParse(host, out ip!) || ip.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork || host.Count(ch => ch == '.') != 3)
        {
            return null;
        }

        var result = new byte[16];
        result[0] = (byte)Libc.AF_INET;
        result[2] = (byte)(port >> 8);
        result[3] = (byte)port;
        ip.GetAddressBytes().CopyTo(result, 4);
        return result;
    }

    public string? CmdFdTake(Controller c, string[] f, string line, long now)
    {
        var fd = c.TakeReceivedFd();
        if (fd < 0)
        {
            return "No ancillary file descriptor received";
        }

        var name = CommandTable.Arg(f, 1);
        var error = CheckReplaceable(name);
        if (error is not null)
        {
            Libc.close(fd);
            return error;
        }

        Libc.SetCloseOnExec(fd);
        Install(NamedHandle.Inspect(name, fd), now);
        return null;
    }

    public string? CmdFdDelete(Controller c, string[] f, string line, long now)
    {
        var name = CommandTable.Arg(f, 1);
        var error = CommandTable.CheckFdName(name);
        if (error is not null)
        {
            return error;
        }

        if (!_handles.TryGetValue(name, out var h))
        {
            return "No such file descriptor";
        }

        if (h.IsConstant)
        {
            return "File descriptor cannot be altered";
        }

        Release(h);
        _handles.Remove(name);
        _broadcast($"fd.state\t{name}\tdeleted\n", now);
        return null;
    }
}
