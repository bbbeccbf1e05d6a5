using System.Net.Sockets;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// The controller table of daemonproxy §4: the fixed slots (interactive, config file, socket and service
/// controllers), the control socket that fills them (<c>socket.create</c>/<c>socket.delete</c>, daemonproxy §4.1,
/// §5), event broadcast, output flushing with the write timeouts of daemonproxy §4.4, and the poll over all of
/// their descriptors. Touched by the supervisor loop alone; times are the loop's monotonic ns.
/// </summary>
internal sealed class ControllerTable
{
    private const long Second = Supervisor.Second;

    private readonly Controller?[] _slots;
    private readonly SupervisorSettings _settings;
    private readonly DaemonLog Log;
    private readonly Func<long> _now;
    private Socket? _listenSocket;
    private string? _socketPath;
    private string? _socketFullPath;
    private int _listenFd = -1;
    private long _acceptWarnAtNs;

    /// <param name="settings">Slot count (<c>MaxControllers</c>) and the broadcast hook.</param>
    /// <param name="log">The supervisor log.</param>
    /// <param name="now">The supervisor's monotonic clock in ns (read where a pass spans a blocking poll).</param>
    public ControllerTable(SupervisorSettings settings, DaemonLog log, Func<long> now)
    {
        _settings = settings;
        Log = log;
        _now = now;
        _slots = new Controller?[Math.Max(1, settings.MaxControllers)];
    }

    /// <summary>The slots; a null entry is free.</summary>
    public IReadOnlyList<Controller?> Slots => _slots;

    /// <summary>The listening control socket's descriptor, -1 when there is none.</summary>
    public int ListenFd => _listenFd;

    /// <summary>Puts a controller created for a free slot into that slot.</summary>
    public void Attach(Controller c) => _slots[c.Slot] = c;

    public int FreeSlot()
    {
        for (var i = 0; i < _slots.Length; i++)
        {
            if (_slots[i] is null)
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>Sends an event line to every controller with output, and to the host hook (daemonproxy §6).</summary>
    public void Broadcast(string line, long now)
    {
        _settings.OnBroadcast?.Invoke(line);
        if (Log.Enabled(DaemonLogLevel.Trace))
        {
            Log.Trace($"write msg to {_slots.Count(c => c is { HasOutput: true, Overflow: false, Dead: false })} controllers");
        }

        foreach (var c in _slots)
        {
            c?.Send(line, now);
        }
    }

    /// <summary>
    /// Creates (or replaces) the controller listening socket (backlog 2, daemonproxy §13) and hands it to the
    /// transport's listener for accepting. The supervisor keeps the descriptor so it can notice clients
    /// waiting in the backlog while every controller slot is taken (daemonproxy §4.1).
    /// </summary>
    public string? CreateControlSocket(string path)
    {
        var old = _socketPath;
        DeleteControlSocket();
        if (old is not null)
        {
            Log.Info("Unlinked control socket " + old);
        }

        Socket? socket = null;
        try
        {
            var full = path.StartsWith('/') ? path : Path.GetFullPath(path);
            if (UnixSocketFile.IsLive(full))
            {
                // Issue 21: the original unlinks and rebinds, leaving the process already listening there
                // unreachable; like every other role, refuse while a live process answers on the path.
                Log.Error($"Failed to create control socket '{path}': another process is listening on {full}");
                return "Failed to create control socket";
            }

            UnixSocketFile.RemoveIfStale(full, ownedByThisUser: true);
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Bind(new UnixDomainSocketEndPoint(full));
            socket.Listen(2);
            socket.Blocking = false;
            _listenSocket = socket;
            _listenFd = (int)socket.Handle;
            _socketPath = path;
            _socketFullPath = full;
            return null;
        }
        catch (Exception ex) when (ex is IOException or SocketException or ArgumentException or FormatException or UnauthorizedAccessException)
        {
            socket?.Dispose();
            Log.Error($"Failed to create control socket '{path}': {ex.Message}");
            return "Failed to create control socket";
        }
    }

    public void DeleteControlSocket()
    {
        if (_listenSocket is not null)
        {
            _listenSocket.Dispose();
            _listenSocket = null;
            _listenFd = -1;
            if (_socketFullPath is not null)
            {
                UnixSocketFile.RemoveIfStale(_socketFullPath, ownedByThisUser: true);
            }

            _socketPath = null;
            _socketFullPath = null;
        }
    }

    /// <summary>
    /// Accepts waiting control-socket clients while a slot is free, on the loop thread with a non-blocking
    /// accept4 (issue 14: the earlier accept task cost a thread-pool hop and a wake-up, 6-19 ms before the
    /// first reply). With every slot taken clients wait in the backlog (daemonproxy §4.1); <see cref="Poll"/> watches
    /// the listening descriptor for both cases.
    /// </summary>
    public unsafe void AcceptPending()
    {
        while (_listenFd >= 0)
        {
            var slot = FreeSlot();
            if (slot < 0)
            {
                return;
            }

            var fd = Libc.accept4(_listenFd, null, null, Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC);
            if (fd < 0)
            {
                var errno = Libc.Errno;
                if (errno is Libc.EINTR or Libc.ECONNABORTED)
                {
                    continue;
                }

                if (errno != Libc.EAGAIN)
                {
                    Log.Error("accept: " + Libc.StrError(errno));
                }

                return;
            }

            _slots[slot] = new Controller(Log, slot, ControllerKind.Socket, fd, fd, ownsFds: true) { CanReceiveFds = true };
        }
    }

    public void CloseController(Controller c)
    {
        c.Flush(_now());
        c.Close();
        if (c.OwnerService is { } svc && svc.Controller == c)
        {
            svc.Controller = null;
        }

        if (c.Slot >= 0 && _slots[c.Slot] == c)
        {
            _slots[c.Slot] = null;
        }
    }

    /// <summary>
    /// Loop step: flushes every controller, applies the reset/close write timeouts (daemonproxy §4.4) and closes
    /// the dead. Returns true when an interactive controller closed after <c>exit</c> (the caller decides
    /// whether that ends the program).
    /// </summary>
    public bool Flush(long now)
    {
        var interactiveClosed = false;
        foreach (var c in _slots)
        {
            if (c is null)
            {
                continue;
            }

            if (!c.Dead)
            {
                c.Flush(now);
            }

            if (!c.Dead && c.BlockedSinceNs != 0)
            {
                var blocked = (now - c.BlockedSinceNs) / Second;
                if (blocked >= c.CloseTimeout)
                {
                    Log.Error($"controller {c.Slot} blocked pipe for {blocked} seconds, closing connection");
                    c.Dead = true;
                }
                else if (blocked >= c.ResetTimeout)
                {
                    if (c.LastBlockWarnSec != blocked)
                    {
                        Log.Warn($"controller {c.Slot} blocked pipe for {blocked} seconds");
                        c.LastBlockWarnSec = blocked;
                    }

                    if (c.InputFull && !c.Overflow)
                    {
                        c.ForceOverflow();
                    }
                }
            }

            if (c.CloseRequested && c.Queued == 0 && c.Kind != ControllerKind.Interactive)
            {
                c.Dead = true;
            }

            if (c.Dead)
            {
                if (c.Kind == ControllerKind.Interactive && c.CloseRequested)
                {
                    interactiveClosed = true;
                }

                CloseController(c);
            }
        }

        return interactiveClosed;
    }

    /// <summary>Waits up to <paramref name="timeoutMs"/> for the wake pipe, controller I/O or a connecting client.</summary>
    public unsafe void Poll(int wakeFd, long timeoutMs)
    {
        var list = new List<Libc.PollFd>(_slots.Length * 2 + 1) { new() { Fd = wakeFd, Events = Libc.POLLIN } };
        foreach (var c in _slots)
        {
            if (c is null || c.Dead)
            {
                continue;
            }

            if (c.InFd >= 0)
            {
                short events = 0;
                if (!c.InputEof && !c.WatchHangup && !c.InputFull)
                {
                    events |= Libc.POLLIN;
                }

                if (c.OutFd == c.InFd && c.Queued > 0)
                {
                    events |= Libc.POLLOUT;
                }

                list.Add(new Libc.PollFd { Fd = c.InFd, Events = events });
            }

            if (c.OutFd >= 0 && c.OutFd != c.InFd && c.Queued > 0)
            {
                list.Add(new Libc.PollFd { Fd = c.OutFd, Events = Libc.POLLOUT });
            }
        }

        // A free slot: wake for a connecting client. All slots taken: watch the backlog so a waiting client is
        // reported every 5 s (daemonproxy §4.1, §13).
        var full = FreeSlot() < 0;
        var watchBacklog = _listenFd >= 0 && (!full || _now() >= _acceptWarnAtNs);
        if (watchBacklog)
        {
            list.Add(new Libc.PollFd { Fd = _listenFd, Events = Libc.POLLIN });
        }

        var array = list.ToArray();
        fixed (Libc.PollFd* p = array)
        {
            Libc.poll(p, (nuint)array.Length, (int)Math.Min(timeoutMs, int.MaxValue));
        }

        if (watchBacklog && full && (array[^1].Revents & Libc.POLLIN) != 0)
        {
            Log.Warn("No free controllers to accpet socket connection");
            _acceptWarnAtNs = _now() + 5 * Second;
        }

        // Hang-ups on event-only service controllers end them (defect 3: kept open until the peer closes).
        foreach (var pfd in array)
        {
            if ((pfd.Revents & (Libc.POLLHUP | Libc.POLLERR)) != 0)
            {
                foreach (var c in _slots)
                {
                    if (c is { WatchHangup: true } && c.InFd == pfd.Fd)
                    {
                        c.Dead = true;
                    }
                }
            }
        }

        foreach (var c in _slots)
        {
            if (c is { Dead: true })
            {
                CloseController(c);
            }
        }
    }

    public string? CmdSocketCreate(Controller c, string[] f, string line, long now)
    {
        if (f.Length < 3 || f[2].Length == 0)
        {
            return "missing argument";
        }

        if (f[1] is not ("" or "-"))
        {
            return "Invalid options";
        }

        return CreateControlSocket(f[2]);
    }

    public string? CmdSocketDelete(Controller c, string[] f, string line, long now)
    {
        DeleteControlSocket();
        return null;
    }

    /// <summary>The earliest time the controllers need the loop: each second while one is blocked, the next backlog warning.</summary>
    public long NextDeadline(long now, long next)
    {
        foreach (var c in _slots)
        {
            if (c is { BlockedSinceNs: > 0 })
            {
                // Wake each second while blocked so the reset/close timeouts are checked on time.
                next = Math.Min(next, now + Second);
            }
        }

        if (_listenFd >= 0 && FreeSlot() < 0 && _acceptWarnAtNs > now)
        {
            next = Math.Min(next, _acceptWarnAtNs);
        }

        return next;
    }

    /// <summary>Termination (daemonproxy §12): gives controllers up to half a second to take what is queued.</summary>
    public void DrainQueued()
    {
        // The reference flushes before exiting.
        var deadline = _now() + Second / 2;
        while (_slots.Any(c => c is { Dead: false, Queued: > 0 }) && _now() < deadline)
        {
            foreach (var c in _slots)
            {
                c?.Flush(_now());
            }

            Thread.Sleep(5);
        }
    }

    /// <summary>Closes every controller and the control socket (the end of the program).</summary>
    public void CloseAll()
    {
        foreach (var c in _slots)
        {
            c?.Close();
        }

        DeleteControlSocket();
    }
}
