using System.Globalization;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// The command table of daemonproxy §5: command names to handlers, the line classification and error replies of
/// daemonproxy §3.2, the per-controller commands (<c>echo</c>, <c>exit</c>, <c>conn.event_timeout</c>,
/// <c>statedump</c>), the process-wide ones (<c>chdir</c>, <c>log.*</c>), and the argument rules of daemonproxy §3.3.
/// The other commands are handlers of the table that owns their state. Each handler returns null on success or
/// the error message.
/// </summary>
internal sealed class CommandTable
{
    public delegate string? CommandHandler(Controller c, string[] f, string line, long now);

    internal const NumberStyles NumberStyles = System.Globalization.NumberStyles.None;

    private readonly DaemonLog Log;
    private readonly HandleTable _handles;
    private readonly ServiceTable _services;
    private readonly TerminationState _termination;
    private readonly Dictionary<string, CommandHandler> _commands;

    public CommandTable(DaemonLog log, HandleTable handles, ServiceTable services, SignalTable signals, ControllerTable controllers, TerminationState termination)
    {
        Log = log;
        _handles = handles;
        _services = services;
        _termination = termination;
        _commands = new(StringComparer.Ordinal)
        {
            ["echo"] = CmdEcho,
            ["statedump"] = (c, _, _, _) => { c.Dump = new DumpCursor(); return null; },
            ["exit"] = CmdExit,
            ["conn.event_timeout"] = CmdEventTimeout,
            ["chdir"] = CmdChdir,
            ["service.args"] = (c, f, l, now) => services.CmdServiceText(c, f, now, "service.args", (s, v) => s.Args = v),
            ["service.tags"] = (c, f, l, now) => services.CmdServiceText(c, f, now, "service.tags", (s, v) => s.Tags = v),
            ["service.fds"] = services.CmdServiceFds,
            ["service.auto_up"] = services.CmdAutoUp,
            ["service.start"] = services.CmdServiceStart,
            ["service.signal"] = services.CmdServiceSignal,
            ["service.delete"] = services.CmdServiceDelete,
            ["fd.pipe"] = handles.CmdFdPipe,
            ["fd.open"] = handles.CmdFdOpen,
            ["fd.socket"] = handles.CmdFdSocket,
            ["fd.take"] = handles.CmdFdTake,
            ["fd.delete"] = handles.CmdFdDelete,
            ["signal.clear"] = signals.CmdSignalClear,
            ["log.filter"] = CmdLogFilter,
            ["log.dest"] = CmdLogDest,
            ["socket.create"] = controllers.CmdSocketCreate,
            ["socket.delete"] = controllers.CmdSocketDelete,
            ["terminate"] = termination.CmdTerminate,
            ["terminate.guard"] = termination.CmdTerminateGuard,
            ["terminate.exec_args"] = termination.CmdExecArgs,
        };
    }

    /// <summary>The command names (the host offers these, see <see cref="Supervisor.HostCommandNames"/>).</summary>
    public IEnumerable<string> Names => _commands.Keys;

    /// <summary>Line classification of daemonproxy §3.2 and the error reply form.</summary>
    public void Execute(Controller c, string line, long now)
    {
        if (Log.Enabled(DaemonLogLevel.Debug))
        {
            Log.Debug($"controller[{c.Slot}] command: \"{line}\""); // daemonproxy §11 debug texts
        }

        var tab = line.IndexOf('\t');
        var name = tab < 0 ? line : line[..tab];
        if (!_commands.TryGetValue(name, out var handler))
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

    internal static string Arg(string[] f, int i) => i < f.Length ? f[i] : "";

    /// <summary>Everything after the first <paramref name="count"/> fields, raw (TABs kept).</summary>
    internal static string Rest(string line, int count)
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
    internal static bool TryInt(string s, out long value)
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

    internal static bool ValidNameChars(string s) =>
        s.Length is > 0 and < 32 && s.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '.' or '_' or '-');

    internal static string? CheckServiceName(string s) =>
        s.Length == 0 ? "Expected service name" : ValidNameChars(s) ? null : "Invalid service name";

    internal static string? CheckFdName(string s) =>
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
            if (_termination.Guard != 0)
            {
                Log.Warn("exit requested on interactive controller, but terminate guard is set; continuing");
                c.CloseRequested = false;
                c.StopInput();
            }
            else
            {
                _termination.Requested = true;
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

    // ---- statedump (daemonproxy §9) -------------------------------------------------------------------

    /// <summary>Continues a statedump (daemonproxy §9) as far as the output has room; resumes by name.</summary>
    public void ContinueDump(Controller c, long now)
    {
        var dump = c.Dump!;
        while (true)
        {
            string chunk;
            string key;
            if (dump.Phase == 0)
            {
                var next = NextKey(_handles.Names, dump.Last);
                if (next < 0)
                {
                    dump.Phase = 1;
                    dump.Last = null;
                    continue;
                }

                var h = _handles.Handles[next];
                key = h.Name;
                chunk = h.StateLine();
            }
            else if (dump.Phase == 1)
            {
                var next = NextKey(_services.Names, dump.Last);
                if (next < 0)
                {
                    // Part 3 is the signal list: resetting the marker makes the next delivery list every
                    // signal that has not been cleared.
                    c.SignalMarker = 0;
                    c.Dump = null;
                    return;
                }

                var s = _services.Services[next];
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

    // ---- log -------------------------------------------------------------------------------------------

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

        _handles.LogDest = f[2];
        if (!_handles.Contains(f[2]))
        {
            c.Send($"warning\tfd \"{f[2]}\" does not exist\n", now);
        }

        return null;
    }
}
