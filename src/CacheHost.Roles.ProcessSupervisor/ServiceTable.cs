namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// The service table of daemonproxy §7: services by name in byte order, their <c>service.*</c> commands
/// (daemonproxy §5), starts (scheduled, auto-up and signal-triggered), forks and reaping by known pid. Touched by
/// the supervisor loop alone; every method takes the loop's monotonic <c>now</c> (ns), so it runs in-process
/// on any clock.
/// </summary>
internal sealed class ServiceTable
{
    private const int ForkRetrySeconds = 3;
    private const long Second = Supervisor.Second;

    private readonly SortedList<string, Service> _services = new(StringComparer.Ordinal);
    private readonly SupervisorSettings _settings;
    private readonly DaemonLog Log;
    private readonly HandleTable _handles;
    private readonly SignalTable _signals;
    private readonly ControllerTable _controllers;
    private readonly ProcessSupervisorStatistics _statistics;
    private long _triggerMarker;
    private long _nextReapScanNs;

    public ServiceTable(SupervisorSettings settings, DaemonLog log, HandleTable handles, SignalTable signals, ControllerTable controllers, ProcessSupervisorStatistics statistics)
    {
        _settings = settings;
        Log = log;
        _handles = handles;
        _signals = signals;
        _controllers = controllers;
        _statistics = statistics;
    }

    public int Count => _services.Count;

    /// <summary>Names in byte order (statedump part 2 resumes by name, daemonproxy §9).</summary>
    public IList<string> Names => _services.Keys;

    /// <summary>Services in name order, parallel to <see cref="Names"/>.</summary>
    public IList<Service> Services => _services.Values;

    public bool TryGet(string name, out Service service) => _services.TryGetValue(name, out service!);

    /// <summary>Services in state up (host status line, daemonproxy §12 exit warnings).</summary>
    public int UpCount()
    {
        var up = 0;
        foreach (var svc in _services.Values)
        {
            if (svc.State == ServiceState.Up)
            {
                up++;
            }
        }

        return up;
    }

    /// <summary>daemonproxy §12: each running service is named in a warning when the supervisor goes.</summary>
    public void WarnRunning()
    {
        foreach (var svc in _services.Values)
        {
            if (svc.State == ServiceState.Up)
            {
                Log.Warn($"service '{svc.Name}' running as pid {svc.Pid}");
            }
        }
    }

    /// <summary>The earliest time the table needs the loop: a due start, or the reap safety scan while a service is up.</summary>
    public long NextDeadline(long next)
    {
        foreach (var svc in _services.Values)
        {
            if (svc.State == ServiceState.Start)
            {
                next = Math.Min(next, svc.StartAtNs);
            }
        }

        if (_services.Values.Any(s => s.State == ServiceState.Up))
        {
            next = Math.Min(next, _nextReapScanNs); // safety scan for a missed SIGCHLD
        }

        return next;
    }

    private void Broadcast(string line, long now) => _controllers.Broadcast(line, now);

    /// <summary>Puts a service in <c>start</c> (daemonproxy §7.2 step 1) and broadcasts it.</summary>
    public void ScheduleStart(Service svc, long atNs, long now, int times = 1)
    {
        svc.State = ServiceState.Start;
        svc.StartAtNs = atNs;
        svc.Pid = 0;
        svc.ExitReason = null;
        svc.ExitValue = "-";
        var line = svc.StateLine(now);
        for (var i = 0; i < times; i++)
        {
            Broadcast(line, now);
        }
    }

    /// <summary>Loop step: starts triggered by new signals, then every due start is forked.</summary>
    public void RunServices(long now)
    {
        // Starts caused by signals first (daemonproxy §7.4): services that are down or pending start now.
        var newest = _triggerMarker;
        foreach (var record in _signals.Records)
        {
            if (record.Seq <= _triggerMarker || record.Count <= 0)
            {
                continue;
            }

            newest = Math.Max(newest, record.Seq);
            foreach (var svc in _services.Values.Where(s => s.Triggers.Count > 0).ToList())
            {
                if (svc.State != ServiceState.Up && TriggersOn(svc, record.Signo))
                {
                    ScheduleStart(svc, now, now);
                }
            }
        }

        _triggerMarker = Math.Max(_triggerMarker, newest);

        foreach (var svc in _services.Values.Where(s => s.State == ServiceState.Start && s.StartAtNs <= now).ToList())
        {
            Fork(svc, now);
        }
    }

    private static bool TriggersOn(Service svc, int signo)
    {
        foreach (var trigger in svc.Triggers)
        {
            if (trigger != "always" && SignalNames.TryLookup(trigger, out var n) && n == signo)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Level-triggered check of daemonproxy §7.3: <c>always</c>, or a listed signal with a pending count.</summary>
    public bool WantsUp(Service svc)
    {
        foreach (var trigger in svc.Triggers)
        {
            if (trigger == "always")
            {
                return true;
            }

            if (SignalNames.TryLookup(trigger, out var n) && _signals.PendingCount(n) > 0)
            {
                return true;
            }
        }

        return false;
    }

    private void ForkFailed(Service svc, long now, string message)
    {
        Log.Error(message);
        Log.Info($"will retry in {ForkRetrySeconds} seconds");
        ScheduleStart(svc, now + ForkRetrySeconds * Second, now);
    }

    /// <summary>daemonproxy §7.2 step 2-4: resolve the fd list, spawn, create the service controller, broadcast <c>up</c>.</summary>
    private unsafe void Fork(Service svc, long now)
    {
        var argv = svc.Args.Split('\t');
        var names = svc.Fds is "" ? [] : svc.FdsText.Split('\t');
        var wantsEvents = names.Contains("control.event") || names.Contains("control.socket");
        var wantsCommands = names.Contains("control.cmd") || names.Contains("control.socket");
        int parentEnd = -1, childEnd = -1, slot = -1;
        if (wantsEvents || wantsCommands)
        {
            slot = _controllers.FreeSlot();
            if (slot < 0)
            {
                // Defect 2 fixed: the original crashes here; a full controller table is a failed fork.
                ForkFailed(svc, now, $"no free controller slot for service '{svc.Name}'");
                return;
            }

            var pair = stackalloc int[2];
            if (Libc.socketpair(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0, pair) != 0)
            {
                ForkFailed(svc, now, "socketpair: " + Libc.StrError(Libc.Errno));
                return;
            }

            parentEnd = pair[0];
            childEnd = pair[1];
        }

        var fds = new int[names.Length];
        string? missing = null;
        for (var i = 0; i < names.Length; i++)
        {
            var name = names[i];
            if (name == "-")
            {
                fds[i] = -1;
            }
            else if (name is "control.cmd" or "control.event" or "control.socket")
            {
                fds[i] = childEnd;
            }
            else if (_handles.TryGet(name, out var handle) && handle.Fd >= 0)
            {
                fds[i] = handle.Fd;
            }
            else
            {
                missing ??= name;
            }
        }

        int pid;
        if (missing is not null)
        {
            // The original's child logs this and aborts: the service is seen up, then down with SIGABRT.
            Log.Error($"file descriptor \"{missing}\" does not exist");
            pid = ProcessSpawner.Spawn(["/bin/sh", "-c", "ulimit -c 0; kill -ABRT $$"], []);
        }
        else
        {
            pid = ProcessSpawner.Spawn(argv, fds);
            if (pid < 0)
            {
                // posix_spawn reports exec failures synchronously; the original's child logs and exits 3.
                Log.Error($"exec({argv[0]}, ...) failed: {Libc.StrError(-pid)}");
                pid = ProcessSpawner.Spawn(["/bin/sh", "-c", "exit 3"], []);
            }
        }

        if (childEnd >= 0)
        {
            Libc.close(childEnd);
        }

        if (pid < 0)
        {
            if (parentEnd >= 0)
            {
                Libc.close(parentEnd);
            }

            ForkFailed(svc, now, $"fork failed for service '{svc.Name}': {Libc.StrError(-pid)}");
            return;
        }

        if (parentEnd >= 0)
        {
            // daemonproxy §4.2: the controller exists before `up` is broadcast, so its first line is its own `up`.
            Libc.SetNonBlocking(parentEnd);
            if (!wantsCommands)
            {
                Libc.shutdown(parentEnd, Libc.SHUT_RD);
            }

            if (!wantsEvents)
            {
                Libc.shutdown(parentEnd, Libc.SHUT_WR);
            }

            var c = new Controller(Log, slot, ControllerKind.Service, parentEnd, wantsEvents ? parentEnd : -1, ownsFds: true)
            {
                CanReceiveFds = wantsCommands,
                WatchHangup = !wantsCommands,
                OwnerService = svc,
            };
            _controllers.Attach(c);
            svc.Controller = c;
        }

        svc.State = ServiceState.Up;
        svc.Pid = pid;
        svc.UpNs = now;
        svc.ExitReason = null;
        Broadcast(svc.StateLine(now), now);
    }

    /// <summary>Reaps each known pid with waitpid(pid, WNOHANG); never waitpid(-1) (daemonproxy §16, research 2.6).</summary>
    public unsafe void ReapChildren(long now)
    {
        // Scan after SIGCHLD, and every 500 ms anyway in case a signal was coalesced or missed.
        if (!_signals.TakeChildExited() && now < _nextReapScanNs)
        {
            return;
        }

        _nextReapScanNs = now + Second / 2;
        foreach (var svc in _services.Values.Where(s => s.State == ServiceState.Up).ToList())
        {
            if (svc.State != ServiceState.Up)
            {
                continue;
            }

            int status;
            var rc = Libc.waitpid(svc.Pid, &status, Libc.WNOHANG);
            if (rc == 0 || (rc < 0 && Libc.Errno == Libc.EINTR))
            {
                continue;
            }

            if (rc < 0)
            {
                Log.Error($"waitpid({svc.Pid}) for service '{svc.Name}': {Libc.StrError(Libc.Errno)}");
                svc.ExitReason = "exit";
                svc.ExitValue = "255";
            }
            else if ((status & 0x7f) == 0)
            {
                svc.ExitReason = "exit";
                svc.ExitValue = ((status >> 8) & 0xff).ToString(System.Globalization.CultureInfo.InvariantCulture);
            }
            else
            {
                svc.ExitReason = "signal";
                svc.ExitValue = SignalNames.Name(status & 0x7f);
            }

            svc.State = ServiceState.Down;
            svc.ReapNs = now;
            Broadcast(svc.StateLine(now), now);
            if (WantsUp(svc))
            {
                // daemonproxy §7.3: a run shorter than the interval restarts at reap + interval, else at once. The
                // original broadcasts this `start` twice (defect 6, replicated).
                var ranNs = now - svc.UpNs;
                var at = ranNs < svc.AutoUpInterval * Second ? now + svc.AutoUpInterval * Second : now;
                ScheduleStart(svc, at, now, times: 2);
                Interlocked.Increment(ref _statistics.Restarts);

                svc.ReapNs = now;
            }
        }
    }

    // ---- service.* commands (daemonproxy §5) ---------------------------------------------------------

    private string? GetOrCreateService(string name, out Service? svc)
    {
        svc = null;
        var error = CommandTable.CheckServiceName(name);
        if (error is not null)
        {
            return error;
        }

        if (_services.TryGetValue(name, out svc))
        {
            return null;
        }

        if (_settings.ServicePool is { } pool && _services.Count >= pool)
        {
            return "Unable to allocate new service";
        }

        svc = new Service(name);
        _services.Add(name, svc);
        return null;
    }

    /// <summary>daemonproxy §5: a service object holds argv, fds and tags in its fixed size.</summary>
    private bool FitsServiceObject(Service svc, string args, string fds, string tags) =>
        _settings.ServicePool is null || args.Length + fds.Length + tags.Length + svc.Name.Length + 64 <= _settings.ServiceObjectSize;

    public string? CmdServiceText(Controller c, string[] f, long now, string evt, Action<Service, string> set)
    {
        var error = GetOrCreateService(CommandTable.Arg(f, 1), out var svc);
        if (error is not null)
        {
            return error;
        }

        var value = f.Length > 2 ? string.Join('\t', f, 2, f.Length - 2) : "";
        var isArgs = evt == "service.args";
        if (!FitsServiceObject(svc!, isArgs ? value : svc!.Args, svc!.Fds ?? "", isArgs ? svc.Tags : value))
        {
            return isArgs ? "unable to set argv" : "unable to set tags";
        }

        set(svc, value);
        Broadcast($"{evt}\t{svc.Name}\t{value}\n", now);
        return null;
    }

    public string? CmdServiceFds(Controller c, string[] f, string line, long now)
    {
        var error = GetOrCreateService(CommandTable.Arg(f, 1), out var svc);
        if (error is not null)
        {
            return error;
        }

        var names = f.Skip(2).ToArray();
        if (names.Length == 1 && names[0].Length == 0)
        {
            names = []; // `service.fds<TAB>NAME<TAB>` is the empty list too
        }

        foreach (var n in names)
        {
            if (n != "-" && !CommandTable.ValidNameChars(n))
            {
                return "invalid fd name";
            }
        }

        var value = string.Join('\t', names);
        if (!FitsServiceObject(svc!, svc!.Args, value, svc.Tags))
        {
            return "unable to set file descriptors";
        }

        foreach (var n in names)
        {
            if (!_handles.Contains(n))
            {
                c.Send($"warning: fd \"{n}\" is not yet defined\n", now);
            }
        }

        svc.Fds = value;
        Broadcast($"service.fds\t{svc.Name}\t{value}\n", now);
        return null;
    }

    public string? CmdAutoUp(Controller c, string[] f, string line, long now)
    {
        var error = GetOrCreateService(CommandTable.Arg(f, 1), out var svc);
        if (error is not null)
        {
            return error;
        }

        var interval = CommandTable.Arg(f, 2);
        if (interval != "-")
        {
            if (!CommandTable.TryInt(interval, out var value))
            {
                return "Expected integer";
            }

            if (value < 1 || value > int.MaxValue)
            {
                return "invalid interval";
            }

            svc!.AutoUpInterval = (int)value; // stored before the triggers are checked (defect 9, replicated)
        }

        var triggers = new List<string>();
        for (var i = 3; i < f.Length && f[i].Length > 0; i++)
        {
            if (f[i] != "always" && !SignalNames.TryLookup(f[i], out _))
            {
                return "unable to set auto_up triggers";
            }

            triggers.Add(f[i]);
        }

        svc!.Triggers.Clear();
        svc.Triggers.AddRange(triggers);
        if (svc.State != ServiceState.Up && WantsUp(svc))
        {
            ScheduleStart(svc, now, now); // the `start` event comes before the auto_up event (daemonproxy §5)
        }

        Broadcast(svc.AutoUpLine(), now);
        return null;
    }

    /// <summary>The existing service named by argument 1: null, or the command's error text (daemonproxy §5).</summary>
    private string? FindNamed(string[] f, out Service svc)
    {
        var name = CommandTable.Arg(f, 1);
        svc = null!;
        return CommandTable.CheckServiceName(name) ?? (_services.TryGetValue(name, out svc!) ? null : "No such service");
    }

    public string? CmdServiceStart(Controller c, string[] f, string line, long now)
    {
        if (FindNamed(f, out var svc) is { } error)
        {
            return error;
        }

        var at = now;
        if (f.Length > 2)
        {
            if (f[2] == "-")
            {
                if (svc.State != ServiceState.Start)
                {
                    return "no service.start pending";
                }

                svc.State = ServiceState.Down;
                svc.ExitReason = null; // cancelling loses the last exit information (daemonproxy §6.1)
                svc.Pid = 0;
                Broadcast(svc.StateLine(now), now);
                return null;
            }

            if (!CommandTable.TryInt(f[2], out var ts) || ts < now / Second - 100000)
            {
                return "invalid timestamp";
            }

            at = Math.Max(now, ts * Second);
        }

        if (!svc.HasArgs)
        {
            return "no args configured for service";
        }

        if (svc.State == ServiceState.Up)
        {
            return "service is not startable";
        }

        ScheduleStart(svc, at, now);
        return null;
    }

    public string? CmdServiceSignal(Controller c, string[] f, string line, long now)
    {
        if (FindNamed(f, out var svc) is { } error)
        {
            return error;
        }

        error = SignalNames.TryParse(CommandTable.Arg(f, 2), out var signo);
        if (error is not null)
        {
            return error;
        }

        var group = false;
        for (var i = 3; i < f.Length; i++)
        {
            if (f[i] == "group")
            {
                group = true;
            }
            else
            {
                return $"unknown option \"{f[i]}\"";
            }
        }

        if (svc.State != ServiceState.Up)
        {
            return "service is not running";
        }

        var rc = group ? Libc.killpg(svc.Pid, signo) : Libc.kill(svc.Pid, signo);
        return rc == 0 ? null : $"can't kill {svc.Name} ({(group ? "pgid" : "pid")} {svc.Pid}): {Libc.StrError(Libc.Errno)}";
    }

    public string? CmdServiceDelete(Controller c, string[] f, string line, long now)
    {
        if (FindNamed(f, out var svc) is { } error)
        {
            return error;
        }

        // Defect 1 fixed: any service that is not running can be deleted (the original never clears the pid).
        if (svc.State == ServiceState.Up)
        {
            return "service is running";
        }

        _services.Remove(svc.Name);
        Broadcast($"service.state\t{svc.Name}\tdeleted\t-\t-\t-\t-\t-\t-\n", now);
        return null;
    }
}
