namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>Service lifecycle (daemonproxy §7): starts, forks, reaping by known pid, auto-up and signal triggers.</summary>
internal sealed partial class Supervisor
{
    private const int ForkRetrySeconds = 3;

    /// <summary>Puts a service in <c>start</c> (daemonproxy §7.2 step 1) and broadcasts it.</summary>
    private void ScheduleStart(Service svc, long atNs, long now, int times = 1)
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

    private void RunServices(long now)
    {
        // Starts caused by signals first (daemonproxy §7.4): services that are down or pending start now.
        var newest = _triggerMarker;
        foreach (var record in _signals)
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
    private bool WantsUp(Service svc)
    {
        foreach (var trigger in svc.Triggers)
        {
            if (trigger == "always")
            {
                return true;
            }

            if (SignalNames.TryLookup(trigger, out var n) && PendingSignalCount(n) > 0)
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
            slot = FreeSlot();
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
            else if (_handles.TryGetValue(name, out var handle) && handle.Fd >= 0)
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
            _slots[slot] = c;
            svc.Controller = c;
        }

        svc.State = ServiceState.Up;
        svc.Pid = pid;
        svc.UpNs = now;
        svc.ExitReason = null;
        Broadcast(svc.StateLine(now), now);
    }

    /// <summary>Reaps each known pid with waitpid(pid, WNOHANG); never waitpid(-1) (daemonproxy §16, research 2.6).</summary>
    private unsafe void ReapChildren(long now)
    {
        // Scan after SIGCHLD, and every 500 ms anyway in case a signal was coalesced or missed.
        if (!_childExited && now < _nextReapScanNs)
        {
            return;
        }

        _childExited = false;
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
                Interlocked.Increment(ref Statistics.Restarts);
                svc.ReapNs = now;
            }
        }
    }
}
