using System.Runtime.InteropServices;
using CacheHost.Core;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// The daemonproxy core: one thread runs the event loop of daemonproxy §1 over raw descriptors with poll(). Signal
/// handlers and host commands only queue work and write a byte to a wake pipe; all state is touched by the loop
/// thread alone. The state lives in tables that own it: <see cref="HandleTable"/> (fd.*), <see cref="ServiceTable"/>
/// (service.*, fork, reap), <see cref="SignalTable"/>, <see cref="ControllerTable"/> (slots, control socket, poll),
/// <see cref="CommandTable"/> (dispatch, statedump) and <see cref="TerminationState"/>; this class is start-up,
/// the loop pass and the fatal/exit paths.
/// </summary>
internal sealed partial class Supervisor : IDisposable
{
    public const string Version = "1.1.0-cachehost";
    internal const long Second = 1_000_000_000L;
    private const int CommandsPerPass = 16;

    private readonly SupervisorSettings _settings;
    private readonly TimeProvider _clock;
    private readonly HandleTable _handles;
    private readonly ServiceTable _services;
    private readonly SignalTable _signals = new();
    private readonly ControllerTable _controllers;
    private readonly CommandTable _commands;
    private readonly TerminationState _termination;
    private readonly int _wakeRead;
    private readonly int _wakeWrite;
    private volatile bool _stopRequested;
    private bool _warmUpStarted;

    /// <summary>
    /// A supervisor over <paramref name="settings"/>; every deadline, schedule and timestamp of the loop is read
    /// from <paramref name="clock"/> (default: the system clock, whose timestamps are CLOCK_MONOTONIC).
    /// </summary>
    public unsafe Supervisor(SupervisorSettings settings, TimeProvider? clock = null)
    {
        _settings = settings;
        _clock = clock ?? TimeProvider.System;
        _termination = new TerminationState(settings.Guard, settings.ExecArgs);
        Log = new DaemonLog
        {
            Clock = _clock,
            Filter = (DaemonLogLevel)Math.Clamp((int)DaemonLogLevel.Debug + settings.Verbosity, 0, (int)DaemonLogLevel.Fatal),
        };
        _controllers = new ControllerTable(settings, Log, Now);
        _handles = new HandleTable(settings, _controllers.Broadcast);
        _services = new ServiceTable(settings, Log, _handles, _signals, _controllers, Statistics);
        _commands = new CommandTable(Log, _handles, _services, _signals, _controllers, _termination);

        // Before the handle table is filled (option warnings) the log goes straight to fd 2.
        Log.Destination = () => _handles.LogFd;
        var fds = stackalloc int[2];
        if (Libc.pipe2(fds, Libc.O_CLOEXEC | Libc.O_NONBLOCK) != 0)
        {
            throw new SupervisorExitException(5, "cannot create wake pipe: " + Libc.StrError(Libc.Errno));
        }

        _wakeRead = fds[0];
        _wakeWrite = fds[1];
    }

    public DaemonLog Log { get; }

    /// <summary>
    /// Monotonic clock of the wire in nanoseconds (whole seconds of CLOCK_MONOTONIC on the wire, daemonproxy
    /// §3.3), read through the injected clock.
    /// </summary>
    private long Now() => _clock.MonotonicNanoseconds();

    /// <summary>Runs start-up (daemonproxy §2.4 steps 3-9) and the loop; returns the exit code.</summary>
    public int Run()
    {
        try
        {
            Startup();
            _settings.OnReady?.Invoke();
            while (true)
            {
                try
                {
                    return Loop();
                }
                catch (Exception ex) when (ex is not SupervisorExitException)
                {
                    // A bug must not take the services' supervisor down silently: this is the fatal path
                    // (exec-on-exit, or "attempting to continue" under a guard, else exit 4).
                    Fatal(4, $"internal error: {ex.GetType().Name}: {ex.Message}");
                }
            }
        }
        catch (SupervisorExitException ex)
        {
            return ex.Code;
        }
        finally
        {
            CloseHostCommands();
            Log.Drain(); // the last lines (fatal, running services) before the process ends
        }
    }

    /// <summary>
    /// Issue 14 item 6: the first reply on a new controller, the first <c>service.start</c> and the first use
    /// of each command paid for JIT compilation (tens of ms on a loaded machine). A background thread, started
    /// after the loop's first pass, compiles the supervisor's methods in parallel with the idle loop, so the
    /// first client is served by compiled code. Nothing to do where code is compiled ahead of time (NativeAOT).
    /// </summary>
    private static void StartWarmUp()
    {
        if (!System.Runtime.CompilerServices.RuntimeFeature.IsDynamicCodeCompiled)
        {
            return;
        }

        var thread = new Thread(() =>
        {
            DryRun();
            const System.Reflection.BindingFlags all = System.Reflection.BindingFlags.DeclaredOnly | System.Reflection.BindingFlags.Instance
                | System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic;
            Prepare(typeof(Supervisor).GetMethods(all), typeof(Supervisor).GetConstructors(all));
            Prepare(typeof(CommandTable).GetMethods(all), typeof(CommandTable).GetConstructors(all));
            Prepare(typeof(HandleTable).GetMethods(all), typeof(HandleTable).GetConstructors(all));
            Prepare(typeof(ServiceTable).GetMethods(all), typeof(ServiceTable).GetConstructors(all));
            Prepare(typeof(SignalTable).GetMethods(all), typeof(SignalTable).GetConstructors(all));
            Prepare(typeof(ControllerTable).GetMethods(all), typeof(ControllerTable).GetConstructors(all));
            Prepare(typeof(TerminationState).GetMethods(all), typeof(TerminationState).GetConstructors(all));
            Prepare(typeof(Controller).GetMethods(all), typeof(Controller).GetConstructors(all));
            Prepare(typeof(DaemonLog).GetMethods(all), typeof(DaemonLog).GetConstructors(all));
            Prepare(typeof(NamedHandle).GetMethods(all), typeof(NamedHandle).GetConstructors(all));
            Prepare(typeof(Service).GetMethods(all), typeof(Service).GetConstructors(all));
            Prepare(typeof(ProcessSpawner).GetMethods(all), []);
            Prepare(typeof(SignalNames).GetMethods(all), []);
            Prepare(typeof(Libc).GetMethods(all), []);
            Prepare(typeof(Protocols.Tsv.TsvLineFramer).GetMethods(all), typeof(Protocols.Tsv.TsvLineFramer).GetConstructors(all));
        })
        { IsBackground = true, Name = "daemonproxy warm-up", Priority = ThreadPriority.BelowNormal };
        thread.Start();

        // One echo through a controller of a private, silent supervisor over a socketpair: the exact path of
        // a client's first command (read, frame, dispatch, reply, flush), generic instantiations included.
        static unsafe void DryRun()
        {
            using var dry = new Supervisor(new SupervisorSettings());
            dry.Log.Destination = () => -1;
            var pair = stackalloc int[2];
            if (Libc.socketpair(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC, 0, pair) != 0)
            {
                return;
            }

            var c = new Controller(dry.Log, -1, ControllerKind.Socket, pair[0], pair[0], ownsFds: true) { CanReceiveFds = true };
            Libc.WriteAll(pair[1], "echo\twarm-up\n"u8);
            c.ReadInput();
            var now = dry.Now();
            if (c.TryReadLine(out var line, out _) == Protocols.Tsv.TsvLineStatus.Line)
            {
                dry._commands.Execute(c, line, now);
            }

            c.Flush(now);
            var reply = stackalloc byte[64];
            Libc.read(pair[1], reply, 64);
            c.Close();
            Libc.close(pair[1]);
        }

        static void Prepare(System.Reflection.MethodInfo[] methods, System.Reflection.ConstructorInfo[] constructors)
        {
            foreach (var m in methods.Cast<System.Reflection.MethodBase>().Concat(constructors))
            {
                if (m.IsAbstract || m.ContainsGenericParameters)
                {
                    continue;
                }

                try
                {
                    System.Runtime.CompilerServices.RuntimeHelpers.PrepareMethod(m.MethodHandle);
                }
                catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or NotSupportedException or TypeLoadException or BadImageFormatException)
                {
                    // A method that cannot be prepared ahead is simply compiled on first use.
                }
            }
        }
    }

    /// <summary>Asks the loop to terminate (host shutdown); thread-safe.</summary>
    public void RequestStop()
    {
        _stopRequested = true;
        Wake();
    }

    private void Startup()
    {
        var devNull = Libc.Open("/dev/null", Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (devNull < 0)
        {
            Fatal(4, "Can't open /dev/null: " + Libc.StrError(Libc.Errno));
        }

        _handles.AddConstants(devNull);
        _handles.RegisterInherited(_wakeRead, _wakeWrite);
        Log.RefreshDestination(); // the log's private descriptor exists from start-up, not from its first line
        if (_settings.HandlePool is { } pool && _handles.PooledCount > pool)
        {
            Fatal(2, "Not enough FD objects to register all open FDs"); // the original's text (exit 2, daemonproxy §2.3)
        }

        _signals.Install(Wake);

        if (_settings.SocketPath is not null)
        {
            var error = _controllers.CreateControlSocket(_settings.SocketPath);
            if (error is not null)
            {
                Fatal(3, error);
            }
        }

        if (_settings.Interactive)
        {
            Libc.SetNonBlocking(0);
            Libc.SetNonBlocking(1);
            var c = new Controller(Log, _controllers.FreeSlot(), ControllerKind.Interactive, 0, 1, ownsFds: false) { CanReceiveFds = IsSocket(0) };
            _controllers.Attach(c);
            SendBanner(c);
            _handles.RepointToNull("stdin", Libc.O_RDONLY);
            _handles.RepointToNull("stdout", Libc.O_WRONLY);
        }

        if (_settings.ConfigFile is not null)
        {
            int fd;
            if (_settings.ConfigFile == "-")
            {
                fd = Libc.fcntl(0, Libc.F_DUPFD_CLOEXEC, 3);
                Libc.SetNonBlocking(fd);
                _handles.RepointToNull("stdin", Libc.O_RDONLY);
            }
            else
            {
                fd = Libc.Open(_settings.ConfigFile, Libc.O_RDONLY | Libc.O_CLOEXEC | Libc.O_NOCTTY, 0);
            }

            if (fd < 0)
            {
                Fatal(3, $"Can't open config file '{_settings.ConfigFile}': {Libc.StrError(Libc.Errno)}");
            }
            else
            {
                _controllers.Attach(new Controller(Log, _controllers.FreeSlot(), ControllerKind.ConfigFile, fd, -1, ownsFds: true));
            }
        }

        if (_settings.MLockAll && Libc.mlockall(3) != 0)
        {
            Log.Error("mlockall: " + Libc.StrError(Libc.Errno));
        }
    }

    private void SendBanner(Controller c)
    {
        var now = Now();
        c.Send($"info\tdaemonproxy version {Version} (git {GitHash()})\n", now);
        c.Send("info\tCopyright (C) 2014-2026  CacheHost authors; protocol of daemonproxy by Michael Conrad\n", now);
        c.Send("info\tThis program is free software; see LICENSE for the terms under which it may be\n", now);
        c.Send("info\tredistributed. It comes with ABSOLUTELY NO WARRANTY, to the extent permitted by\n", now);
        c.Send("info\tlaw. This is a reimplementation; it contains no code of the original.\n", now);
        c.Send("info\tInteractive mode.  Use ^D or 'exit' to terminate.  See 'man daemonproxy' for command syntax.\n", now);
    }

    internal static string GitHash()
    {
        var info = typeof(Supervisor).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion;
        var plus = info?.IndexOf('+') ?? -1;
        var hash = plus >= 0 ? info![(plus + 1)..] : "00000000";
        return hash.Length > 8 ? hash[..8] : hash.PadRight(8, '0');
    }

    private static unsafe bool IsSocket(int fd)
    {
        int type = 0;
        uint len = sizeof(int);
        return Libc.getsockopt(fd, Libc.SOL_SOCKET, Libc.SO_TYPE, &type, &len) == 0;
    }

    private unsafe void Wake()
    {
        byte b = 1;
        Libc.write(_wakeWrite, &b, 1);
    }

    private unsafe void DrainWake()
    {
        var buffer = stackalloc byte[256];
        while (Libc.read(_wakeRead, buffer, 256) > 0)
        {
        }
    }

    /// <summary>The loop of daemonproxy §1, one pass per iteration.</summary>
    private int Loop()
    {
        while (true)
        {
            var now = Now();
            DrainWake();
            PickUpSignals(now);
            if (_stopRequested)
            {
                _termination.Requested = true;
            }

            _services.ReapChildren(now);
            _services.RunServices(now);
            _controllers.AcceptPending();
            var busy = RunControllers(now);
            RunHostCommands(now);
            if (_controllers.Flush(now) && _termination.Guard == 0)
            {
                _termination.Requested = true; // `exit` on the interactive controller ends the program (daemonproxy §4.1)
            }

            UpdateHostStatus();
            if (_termination.Requested)
            {
                return FinishTerminate();
            }

            if (!_warmUpStarted)
            {
                // After the first pass, so the banner and the first events are not delayed by it.
                _warmUpStarted = true;
                StartWarmUp();
            }

            _controllers.Poll(_wakeRead, busy ? 0 : NextTimeoutMs(Now()));
        }
    }

    private void PickUpSignals(long now)
    {
        if (_signals.TakeFatal() is var fatal and not 0)
        {
            // daemonproxy §8, §12: the fatal path (exec-on-exit, else `fatal: Received signal …`); like the original
            // the program ends with 4 even when a guard makes the fatal path "attempt to continue".
            var message = $"Received signal {SignalNames.Name(fatal)} ({fatal})";
            Fatal(4, message);
            throw new SupervisorExitException(4, message);
        }

        _signals.PickUp(now);
    }

    // ---- controllers ------------------------------------------------------------------------------

    private bool RunControllers(long now)
    {
        var busy = false;
        foreach (var c in _controllers.Slots)
        {
            if (c is null || c.Dead)
            {
                continue;
            }

            var readError = c.ReadInput();
            if (readError is not null)
            {
                Log.Error($"read(client[{c.Slot}])): {readError}");
            }

            busy |= RunCommands(c, now);
        }

        return busy;
    }

    /// <summary>Runs up to <see cref="CommandsPerPass"/> commands; true when more work is ready now.</summary>
    private bool RunCommands(Controller c, long now)
    {
        for (var n = 0; n < CommandsPerPass; n++)
        {
            if (c.Dead || _termination.Requested)
            {
                return false;
            }

            if (c.Dump is not null)
            {
                _commands.ContinueDump(c, now);
                if (c.Dump is not null)
                {
                    return false; // waits for output space
                }
            }

            if (c.Queued > Controller.CommandThreshold && !c.Overflow)
            {
                c.Flush(now);
                if (c.Queued > Controller.CommandThreshold)
                {
                    return false; // stalled until the peer reads (daemonproxy §4.4)
                }
            }

            _signals.DeliverTo(c, now);
            if (c.CloseRequested || c.WatchHangup)
            {
                return false;
            }

            var status = c.TryReadLine(out var line, out var comment);
            switch (status)
            {
                case Protocols.Tsv.TsvLineStatus.Line:
                    _commands.Execute(c, line, now);
                    break;
                case Protocols.Tsv.TsvLineStatus.Overlong:
                    Log.Debug($"controller[{c.Slot}] command length exceeds {Controller.InputCapacity} bytes, discarding");
                    if (!comment)
                    {
                        c.Send("error\tline too long\n", now);
                        Log.Error($"controller[{c.Slot}] command exceeds buffer size");
                    }

                    break;
                default:
                    if (c.InputEof)
                    {
                        HandleEof(c, now);
                    }

                    return false;
            }
        }

        return true;
    }

    private void HandleEof(Controller c, long now)
    {
        if (c.EofHandled)
        {
            return;
        }

        c.EofHandled = true;
        switch (c.Kind)
        {
            case ControllerKind.ConfigFile:
                var rest = c.TakeRemainder();
                if (rest.Length > 0)
                {
                    _commands.Execute(c, rest, now); // a final line without LF is run (daemonproxy §4.1)
                }

                _controllers.CloseController(c);
                break;
            case ControllerKind.Interactive:
                // A final unterminated line is ignored; EOF ends the program unless guarded (daemonproxy §4.1).
                c.TakeRemainder();
                if (_termination.Guard != 0)
                {
                    Log.Warn("interactive controller reached EOF, but terminate guard is set; continuing");
                    c.StopInput();
                }
                else
                {
                    _termination.Requested = true;
                }

                break;
            default:
                c.TakeRemainder();
                _controllers.CloseController(c);
                break;
        }
    }

    private long NextTimeoutMs(long now)
    {
        var next = _services.NextDeadline(now + 200 * Second);
        next = _controllers.NextDeadline(now, next);
        return Math.Clamp((next - now + 999_999) / 1_000_000, 0, 200_000);
    }

    // ---- termination (daemonproxy §12) ---------------------------------------------------------------------

    /// <summary>
    /// The single fatal path (daemonproxy §2.3): exec-on-exit when configured; with only a guard, log and continue;
    /// otherwise log and exit with <paramref name="code"/>.
    /// </summary>
    private void Fatal(int code, string message)
    {
        if (_termination.ExecArgs is not null)
        {
            // The original logs nothing but the exec warning before the exec; the message travels in
            // DAEMONPROXY_ERROR and is logged below only when the exec failed.
            ExecOnExit(code, message);
        }

        if (_termination.Guard != 0)
        {
            Log.Fatal("(attempting to continue) " + message);
            return;
        }

        Log.Fatal(message);
        throw new SupervisorExitException(code, message);
    }

    private int FinishTerminate()
    {
        _services.WarnRunning();
        _controllers.DrainQueued();
        if (_termination.ExecArgs is not null)
        {
            ExecOnExit(_termination.ExitCode, _termination.ExitMessage);
        }

        _controllers.CloseAll();
        return _termination.ExitCode & 0xFF;
    }

    /// <summary>
    /// Replaces the process with the exec-on-exit argv (daemonproxy §12), keeping the PID so services stay its
    /// children. Returns only when the exec failed.
    /// </summary>
    internal unsafe void ExecOnExit(int code, string message)
    {
        var argv = _termination.ExecArgs!.Split('\t');
        SetEnv("DAEMONPROXY_EXITCODE", code.ToString(System.Globalization.CultureInfo.InvariantCulture));
        SetEnv("DAEMONPROXY_ERROR", message);
        Log.Warn($"daemonproxy exec_on_exit to '{argv[0]}'");
        _services.WarnRunning();

        Log.Drain();
        ExecArgv(argv);
        Log.Error($"exec({argv[0]}) failed: {Libc.StrError(Libc.Errno)}");
    }

    /// <summary>execvp with default signal dispositions and an empty mask (the runtime ignores SIGPIPE).</summary>
    internal static unsafe void ExecArgv(string[] argv)
    {
        for (var sig = 1; sig < 32; sig++)
        {
            if (sig is not 9 and not 19)
            {
                Libc.signal(sig, 0);
            }
        }

        var empty = stackalloc byte[128];
        Libc.sigprocmask(2 /* SIG_SETMASK */, empty, null);
        var handles = argv.Select(a => GCHandle.Alloc(Libc.Z(a), GCHandleType.Pinned)).ToArray();
        var ptrs = stackalloc byte*[argv.Length + 1];
        for (var i = 0; i < argv.Length; i++)
        {
            ptrs[i] = (byte*)handles[i].AddrOfPinnedObject();
        }

        ptrs[argv.Length] = null;
        Libc.execvp(ptrs[0], ptrs);
        var errno = Libc.Errno;
        foreach (var h in handles)
        {
            h.Free();
        }

        Marshal.SetLastPInvokeError(errno);
    }

    private static unsafe void SetEnv(string name, string value)
    {
        Environment.SetEnvironmentVariable(name, value);
        fixed (byte* n = Libc.Z(name))
        fixed (byte* v = Libc.Z(value))
        {
            Libc.setenv(n, v, 1);
        }
    }

    public void Dispose()
    {
        _signals.Dispose();
        _controllers.DeleteControlSocket();
        Log.Dispose();
        Libc.close(_wakeRead);
        Libc.close(_wakeWrite);
    }
}
