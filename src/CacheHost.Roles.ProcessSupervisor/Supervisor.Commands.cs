using System.Globalization;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>The command table of daemonproxy §5. Each handler returns null on success or the error message.</summary>
internal sealed partial class Supervisor
{
    private delegate string? CommandHandler(Controller c, string[] f, string line, long now);

    private Dictionary<string, CommandHandler>? _commands;

    private Dictionary<string, CommandHandler> Commands => _commands ??= new(StringComparer.Ordinal)
    {
        ["echo"] = CmdEcho,
        ["statedump"] = (c, _, _, _) => { c.Dump = new DumpCursor(); return null; },
        ["exit"] = CmdExit,
        ["conn.event_timeout"] = CmdEventTimeout,
        ["chdir"] = CmdChdir,
        ["service.args"] = (c, f, l, now) => CmdServiceText(c, f, now, "service.args", (s, v) => s.Args = v),
        ["service.tags"] = (c, f, l, now) => CmdServiceText(c, f, now, "service.tags", (s, v) => s.Tags = v),
        ["service.fds"] = CmdServiceFds,
        ["service.auto_up"] = CmdAutoUp,
        ["service.start"] = CmdServiceStart,
        ["service.signal"] = CmdServiceSignal,
        ["service.delete"] = CmdServiceDelete,
        ["fd.pipe"] = CmdFdPipe,
        ["fd.open"] = CmdFdOpen,
        ["fd.socket"] = CmdFdSocket,
        ["fd.take"] = CmdFdTake,
        ["fd.delete"] = CmdFdDelete,
        ["signal.clear"] = CmdSignalClear,
        ["log.filter"] = CmdLogFilter,
        ["log.dest"] = CmdLogDest,
        ["socket.create"] = CmdSocketCreate,
        ["socket.delete"] = (_, _, _, _) => { DeleteControlSocket(); return null; },
        ["terminate"] = CmdTerminate,
        ["terminate.guard"] = CmdTerminateGuard,
        ["terminate.exec_args"] = CmdExecArgs,
    };

    /// <summary>Line classification of daemonproxy §3.2 and the error reply form.</summary>
    private void Execute(Controller c, string line, long now)
    {
        if (Log.Enabled(DaemonLogLevel.Debug))
        {
            Log.Debug($"controller[{c.Slot}] command: \"{line}\""); // daemonproxy §11 debug texts
        }

        var tab = line.IndexOf('\t');
        var name = tab < 0 ? line : line[..tab];
        if (!Commands.TryGetValue(name, out var handler))
        {
            if (line.StartsWith('#') || line.All(ch => ch is ' ' or '\t' or '\r' or '\0'))
            {
                Log.Trace("Ignoring comment line");
                return;
            }

            c.Send($"error\tUnknown command: {name}\n", now);
            Log.Error($"controller[{c.Slot}] sent unknown command {name}");
            return;
        }

        var fields = line.Split('\t');
        string? error;
        try
        {
            error = handler(c, fields, line, now);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException or FormatException or OverflowException)
        {
            error = "internal error: " + ex.Message;
        }
        if (error is null)
        {
            return;
        }

        var prefix = line.Length >= 30 ? line[..30] + "..." : line;
        c.Send($"error\t{error}, for command \"{prefix}\"\n", now);
        Log.Error($"controller[{c.Slot}] command failed: '{(line.Length > 90 ? line[..90] + "..." : line)}'");
        Log.Error($"  with error: '{error}'");
    }

    private static string Arg(string[] f, int i) => i < f.Length ? f[i] : "";

    /// <summary>Everything after the first <paramref name="count"/> fields, raw (TABs kept).</summary>
    private static string Rest(string line, int count)
    {
        var pos = 0;
        for (var i = 0; i < count; i++)
        {
            var tab = line.IndexOf('\t', pos);
            if (tab < 0)
            {
                return "";
            }

            pos = tab + 1;
        }

        return line[pos..];
    }

    /// <summary>Integers of daemonproxy §3.3: optional '-', then at least one digit, nothing else.</summary>
    private static bool TryInt(string s, out long value)
    {
        value = 0;
        var i = s.StartsWith('-') ? 1 : 0;
        if (s.Length == i)
        {
            return false;
        }

        for (var j = i; j < s.Length; j++)
        {
            if (!char.IsAsciiDigit(s[j]))
            {
                return false;
            }

            value = unchecked(value * 10 + (s[j] - '0'));
        }

        value = i == 1 ? -value : value;
        return true;
    }

    private static bool ValidNameChars(string s) =>
        s.Length is > 0 and < 32 && s.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '.' or '_' or '-');

    private static string? CheckServiceName(string s) =>
        s.Length == 0 ? "Expected service name" : ValidNameChars(s) ? null : "Invalid service name";

    private static string? CheckFdName(string s) =>
        s.Length == 0 ? "Expected file descriptor name" : ValidNameChars(s) ? null : "Invalid file descriptor name";

    // ---- session ----------------------------------------------------------------------------------

    private string? CmdEcho(Controller c, string[] f, string line, long now)
    {
        var rest = Rest(line, 1);
        if (rest.Length > 0)
        {
            c.Send(rest + "\n", now);
        }

        return null;
    }

    private string? CmdExit(Controller c, string[] f, string line, long now)
    {
        c.CloseRequested = true;
        if (c.Kind == ControllerKind.Interactive)
        {
            if (_guard != 0)
            {
                Log.Warn("exit requested on interactive controller, but terminate guard is set; continuing");
                c.CloseRequested = false;
                c.StopInput();
            }
            else
            {
                _terminate = true;
            }
        }
        else if (c.Kind == ControllerKind.ConfigFile)
        {
            c.Dead = true;
        }

        return null;
    }

    private string? CmdEventTimeout(Controller c, string[] f, string line, long now)
    {
        if (!TryInt(Arg(f, 1), out var reset) || !TryInt(Arg(f, 2), out var close))
        {
            return "Expected integer";
        }

        if (reset is < 0 or > int.MaxValue || close is < 0 or > int.MaxValue)
        {
            return "invalid timeout (must be 0..7FFFFFFF)";
        }

        if (reset > close)
        {
            return "reset timeout is greater than close timeout";
        }

        c.ResetTimeout = (int)reset;
        c.CloseTimeout = (int)close;
        return null;
    }

    private unsafe string? CmdChdir(Controller c, string[] f, string line, long now)
    {
        if (f.Length < 2 || f[1].Length == 0)
        {
            return "missing path argument";
        }

        if (f.Length > 2)
        {
            return "unexpected argument after path";
        }

        fixed (byte* p = Libc.Z(f[1]))
        {
            if (Libc.chdir(p) != 0)
            {
                return "chdir failed: " + Libc.StrError(Libc.Errno);
            }
        }

        return null;
    }

    // ---- services ---------------------------------------------------------------------------------

    private string? GetOrCreateService(string name, out Service? svc)
    {
        svc = null;
        var error = CheckServiceName(name);
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

    private string? CmdServiceText(Controller c, string[] f, long now, string evt, Action<Service, string> set)
    {
        var error = GetOrCreateService(Arg(f, 1), out var svc);
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

    private string? CmdServiceFds(Controller c, string[] f, string line, long now)
    {
        var error = GetOrCreateService(Arg(f, 1), out var svc);
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
            if (n != "-" && !ValidNameChars(n))
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
            if (!_handles.ContainsKey(n))
            {
                c.Send($"warning: fd \"{n}\" is not yet defined\n", now);
            }
        }

        svc.Fds = value;
        Broadcast($"service.fds\t{svc.Name}\t{value}\n", now);
        return null;
    }

    private string? CmdAutoUp(Controller c, string[] f, string line, long now)
    {
        var error = GetOrCreateService(Arg(f, 1), out var svc);
        if (error is not null)
        {
            return error;
        }

        var interval = Arg(f, 2);
        if (interval != "-")
        {
            if (!TryInt(interval, out var value))
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

    private string? CmdServiceStart(Controller c, string[] f, string line, long now)
    {
        var name = Arg(f, 1);
        var error = CheckServiceName(name);
        if (error is not null)
        {
            return error;
        }

        if (!_services.TryGetValue(name, out var svc))
        {
            return "No such service";
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

            if (!TryInt(f[2], out var ts) || ts < now / Second - 100000)
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

    private string? CmdServiceSignal(Controller c, string[] f, string line, long now)
    {
        var name = Arg(f, 1);
        var error = CheckServiceName(name);
        if (error is not null)
        {
            return error;
        }

        if (!_services.TryGetValue(name, out var svc))
        {
            return "No such service";
        }

        error = SignalNames.TryParse(Arg(f, 2), out var signo);
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

    private string? CmdServiceDelete(Controller c, string[] f, string line, long now)
    {
        var name = Arg(f, 1);
        var error = CheckServiceName(name);
        if (error is not null)
        {
            return error;
        }

        if (!_services.TryGetValue(name, out var svc))
        {
            return "No such service";
        }

        // Defect 1 fixed: any service that is not running can be deleted (the original never clears the pid).
        if (svc.State == ServiceState.Up)
        {
            return "service is running";
        }

        _services.Remove(name);
        Broadcast($"service.state\t{name}\tdeleted\t-\t-\t-\t-\t-\t-\n", now);
        return null;
    }

    // ---- statedump (daemonproxy §9) -------------------------------------------------------------------------

    private void ContinueDump(Controller c, long now)
    {
        var dump = c.Dump!;
        while (true)
        {
            string chunk;
            string key;
            if (dump.Phase == 0)
            {
                var next = NextKey(_handles.Keys, dump.Last);
                if (next < 0)
                {
                    dump.Phase = 1;
                    dump.Last = null;
                    continue;
                }

                var h = _handles.Values[next];
                key = h.Name;
                chunk = h.StateLine();
            }
            else if (dump.Phase == 1)
            {
                var next = NextKey(_services.Keys, dump.Last);
                if (next < 0)
                {
                    // Part 3 is the signal list: resetting the marker makes the next delivery list every
                    // signal that has not been cleared.
                    c.SignalMarker = 0;
                    c.Dump = null;
                    return;
                }

                var s = _services.Values[next];
                key = s.Name;
                chunk = s.StateLine(now) + $"service.tags\t{s.Name}\t{s.Tags}\n" + $"service.args\t{s.Name}\t{s.Args}\n"
                    + $"service.fds\t{s.Name}\t{s.FdsText}\n" + s.AutoUpLine();
            }
            else
            {
                c.Dump = null;
                return;
            }

            if (!c.TrySendChunk(chunk, now))
            {
                return;
            }

            dump.Last = key;
        }
    }

    /// <summary>Index of the first key after <paramref name="last"/> in byte order, or -1.</summary>
    private static int NextKey(IList<string> keys, string? last)
    {
        if (last is null)
        {
            return keys.Count > 0 ? 0 : -1;
        }

        int lo = 0, hi = keys.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) / 2;
            if (string.CompareOrdinal(keys[mid], last) <= 0)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        return lo < keys.Count ? lo : -1;
    }

    // ---- signals, log, socket, terminate -------------------------------------------------------------

    private string? CmdSignalClear(Controller c, string[] f, string line, long now)
    {
        var error = SignalNames.TryParse(Arg(f, 1), out var signo);
        if (error is not null)
        {
            return error;
        }

        if (!TryInt(Arg(f, 2), out var count))
        {
            return "Expected integer";
        }

        var record = _signals.Find(r => r.Signo == signo);
        if (record is not null)
        {
            record.Count = Math.Max(0, record.Count - count);
        }

        return null;
    }

    private string? CmdLogFilter(Controller c, string[] f, string line, long now)
    {
        if (f.Length > 1)
        {
            var arg = f[1];
            if (arg == "+")
            {
                Log.Filter = (DaemonLogLevel)Math.Min((int)Log.Filter + 1, (int)DaemonLogLevel.Fatal);
            }
            else if (arg == "-")
            {
                Log.Filter = (DaemonLogLevel)Math.Max((int)Log.Filter - 1, 0);
            }
            else if (DaemonLog.TryParseLevel(arg, out var level))
            {
                Log.Filter = level;
            }
            else
            {
                return "Invalid loglevel argument";
            }
        }

        c.Send($"log.filter\t{DaemonLog.LevelName(Log.Filter)}\n", now);
        return null;
    }

    private string? CmdLogDest(Controller c, string[] f, string line, long now)
    {
        if (f.Length < 3)
        {
            return "missing argument";
        }

        if (f[1] != "fd")
        {
            return "Unknown logging type";
        }

        var error = CheckFdName(f[2]);
        if (error is not null)
        {
            return error;
        }

        _logDest = f[2];
        if (!_handles.ContainsKey(f[2]))
        {
            c.Send($"warning\tfd \"{f[2]}\" does not exist\n", now);
        }

        return null;
    }

    private string? CmdSocketCreate(Controller c, string[] f, string line, long now)
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

    private string? CmdTerminate(Controller c, string[] f, string line, long now)
    {
        if (!TryInt(Arg(f, 1), out var code))
        {
            return "Expected integer";
        }

        if (_guard != 0)
        {
            if (f.Length < 3)
            {
                return "terminate guard code required";
            }

            if (!TryInt(f[2], out var guard) || guard != _guard)
            {
                return "incorrect terminate guard code";
            }

            if (_execArgs is null)
            {
                return "cannot exit, and exec-on-exit is not configured"; // defect 11, replicated
            }
        }

        _exitCode = (int)(code & 0xFF);
        _exitMessage = "terminated normally";
        _terminate = true;
        return null;
    }

    private string? CmdTerminateGuard(Controller c, string[] f, string line, long now)
    {
        var op = Arg(f, 1);
        if (op is not ("+" or "-"))
        {
            return "expected + or -";
        }

        if (!TryInt(Arg(f, 2), out var code))
        {
            return "Expected integer";
        }

        if (code == 0)
        {
            return "code cannot be 0";
        }

        if (op == "+")
        {
            if (_guard != 0)
            {
                return "terminate guard code is already set";
            }

            _guard = code;
            return null;
        }

        if (_guard == 0)
        {
            return "terminate guard was not set";
        }

        if (_guard != code)
        {
            return "incorrect guard code";
        }

        _guard = 0;
        return null;
    }

    private string? CmdExecArgs(Controller c, string[] f, string line, long now)
    {
        var rest = Rest(line, 1);
        if (rest.Length > 255)
        {
            return "exec arguments exceed buffer size (255)";
        }

        _execArgs = rest.Length == 0 ? null : rest;
        return null;
    }
}
