using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using CacheHost.Core;
using CacheHost.Transport;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// The daemonproxy core: one thread runs the event loop of daemonproxy §1 over raw descriptors with poll(). Signal
/// handlers and the socket accept task only queue work and write a byte to a wake pipe; all state is touched by
/// the loop thread alone.
/// </summary>
internal sealed partial class Supervisor : IDisposable
{
    public const string Version = "1.1.0-cachehost";
    private const long Second = 1_000_000_000L;
    private const int SignalSlots = 16;
    private const int CommandsPerPass = 16;

    private static readonly int[] CountedSignals = [1, 2, 3, 15, 10, 12]; // HUP INT QUIT TERM USR1 USR2 (daemonproxy §8)
    private static readonly int[] WakeSignals = [17, 14]; // CHLD ALRM: only wake the loop

    // ILL ABRT BUS FPE SEGV: fatal (daemonproxy §8). Sent with kill(2) they reach the runtime's signal thread and are
    // caught here; SIGTRAP is not registered because the runtime aborts on it before any handler runs, and a
    // real fault is the runtime's (a crash), not a catchable event (docs/daemonproxy.md).
    private static readonly int[] FatalSignals = [4, 6, 7, 8, 11];

    private readonly SupervisorSettings _settings;
    private readonly TimeProvider _clock;
    private readonly SortedList<string, NamedHandle> _handles = new(StringComparer.Ordinal);
    private readonly SortedList<string, Service> _services = new(StringComparer.Ordinal);
    private readonly Controller?[] _slots;
    private readonly List<SignalRecord> _signals = [];
    private readonly ConcurrentQueue<int> _caught = new();
    private volatile int _fatalSignal;
    private readonly List<PosixSignalRegistration> _registrations = [];
    private readonly int _wakeRead;
    private readonly int _wakeWrite;
    private long _signalSeq;
    private long _triggerMarker;
    private Socket? _listenSocket;
    private string? _socketPath;
    private string? _socketFullPath;
    private int _listenFd = -1;
    private long _acceptWarnAtNs;
    private bool _terminate;
    private int _exitCode;
    private string _exitMessage = "terminated normally";
    private long _guard;
    private string? _execArgs;
    private string _logDest = "stderr";
    private volatile bool _stopRequested;
    private volatile bool _childExited = true;
    private long _nextReapScanNs;
    private bool _warmUpStarted;

    /// <summary>
    /// A supervisor over <paramref name="settings"/>; every deadline, schedule and timestamp of the loop is read
    /// from <paramref name="clock"/> (default: the system clock, whose timestamps are CLOCK_MONOTONIC).
    /// </summary>
    public unsafe Supervisor(SupervisorSettings settings, TimeProvider? clock = null)
    {
        _settings = settings;
        _clock = clock ?? TimeProvider.System;
        _slots = new Controller?[Math.Max(1, settings.MaxControllers)];
        _guard = settings.Guard;
        _execArgs = settings.ExecArgs;
        Log = new DaemonLog
        {
            Clock = _clock,
            Filter = (DaemonLogLevel)Math.Clamp((int)DaemonLogLevel.Debug + settings.Verbosity, 0, (int)DaemonLogLevel.Fatal),
        };
        // Before the handle table exists (option warnings) the log goes straight to fd 2.
        Log.Destination = () => _handles.Count == 0 ? 2 : _handles.TryGetValue(_logDest, out var h) ? h.Fd : -1;
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
                dry.Execute(c, line, now);
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

        AddHandle(new NamedHandle("null", devNull, "special", "read,write", "/dev/null", constant: true));
        AddHandle(new NamedHandle("control.cmd", -1, "special", "write", "daemonproxy command pipe", constant: true));
        AddHandle(new NamedHandle("control.event", -1, "special", "read", "daemonproxy event stream", constant: true));
        AddHandle(new NamedHandle("control.socket", -1, "special", "read,write", "daemonproxy control socket", constant: true));
        RegisterInherited();
        Log.RefreshDestination(); // the log's private descriptor exists from start-up, not from its first line
        if (_settings.HandlePool is { } pool && PooledHandleCount > pool)
        {
            Fatal(2, "Not enough FD objects to register all open FDs"); // the original's text (exit 2, daemonproxy §2.3)
        }

        InstallSignals();

        if (_settings.SocketPath is not null)
        {
            var error = CreateControlSocket(_settings.SocketPath);
            if (error is not null)
            {
                Fatal(3, error);
            }
        }

        if (_settings.Interactive)
        {
            Libc.SetNonBlocking(0);
            Libc.SetNonBlocking(1);
            var c = new Controller(Log, FreeSlot(), ControllerKind.Interactive, 0, 1, ownsFds: false) { CanReceiveFds = IsSocket(0) };
            _slots[c.Slot] = c;
            SendBanner(c);
            RepointToNull("stdin", Libc.O_RDONLY);
            RepointToNull("stdout", Libc.O_WRONLY);
        }

        if (_settings.ConfigFile is not null)
        {
            int fd;
            if (_settings.ConfigFile == "-")
            {
                fd = Libc.fcntl(0, Libc.F_DUPFD_CLOEXEC, 3);
                Libc.SetNonBlocking(fd);
                RepointToNull("stdin", Libc.O_RDONLY);
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
                var slot = FreeSlot();
                _slots[slot] = new Controller(Log, slot, ControllerKind.ConfigFile, fd, -1, ownsFds: true);
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

    private void RepointToNull(string name, int mode)
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
    private void RegisterInherited()
    {
        string[] std = ["stdin", "stdout", "stderr"];
        for (var i = 0; i < 3; i++)
        {
            var fd = Libc.fcntl(i, Libc.F_DUPFD_CLOEXEC, 3);
            if (fd < 0)
            {
                fd = Libc.Open("/dev/null", (i == 0 ? Libc.O_RDONLY : Libc.O_WRONLY) | Libc.O_CLOEXEC, 0);
            }

            AddHandle(NamedHandle.Inspect(std[i], fd));
        }

        foreach (var entry in SafeListFds())
        {
            if (entry < 3 || entry >= 1024 || entry == _wakeRead || entry == _wakeWrite)
            {
                continue;
            }

            var flags = Libc.fcntl(entry, Libc.F_GETFD, 0);
            if (flags < 0 || (flags & Libc.FD_CLOEXEC) != 0)
            {
                continue;
            }

            Libc.SetCloseOnExec(entry);
            AddHandle(NamedHandle.Inspect($"fd_{entry}", entry));
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

    private static unsafe bool IsSocket(int fd)
    {
        int type = 0;
        uint len = sizeof(int);
        return Libc.getsockopt(fd, Libc.SOL_SOCKET, Libc.SO_TYPE, &type, &len) == 0;
    }

    private void AddHandle(NamedHandle handle) => _handles[handle.Name] = handle;

    /// <summary>Handles that occupy pool objects: all of them, the four constants included, as in the original
    /// (so `--fd-pool 1`, raised to the minimum 7, is full with the constants and stdin/stdout/stderr).</summary>
    private int PooledHandleCount => _handles.Count;

    private void InstallSignals()
    {
        foreach (var signo in CountedSignals)
        {
            var number = signo;
            _registrations.Add(PosixSignalRegistration.Create((PosixSignal)number, ctx =>
            {
                // Counted and reported, never fatal (daemonproxy §8): the registration must cancel the default action.
                ctx.Cancel = true;
                _caught.Enqueue(number);
                Wake();
            }));
        }

        foreach (var signo in FatalSignals)
        {
            var number = signo;
            _registrations.Add(PosixSignalRegistration.Create((PosixSignal)number, ctx =>
            {
                ctx.Cancel = true;
                _fatalSignal = number;
                Wake();
            }));
        }

        foreach (var signo in WakeSignals)
        {
            var number = signo;
            _registrations.Add(PosixSignalRegistration.Create((PosixSignal)signo, ctx =>
            {
                ctx.Cancel = true;
                if (number == 17)
                {
                    _childExited = true;
                }

                Wake();
            }));
        }
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

    private int FreeSlot()
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
                _terminate = true;
            }

            ReapChildren(now);
            RunServices(now);
            AcceptPending();
            var busy = RunControllers(now);
            RunHostCommands(now);
            FlushControllers(now);
            UpdateHostStatus();
            if (_terminate)
            {
                return FinishTerminate();
            }

            if (!_warmUpStarted)
            {
                // After the first pass, so the banner and the first events are not delayed by it.
                _warmUpStarted = true;
                StartWarmUp();
            }

            Poll(busy ? 0 : NextTimeoutMs(Now()));
        }
    }

    private sealed class SignalRecord
    {
        public int Signo { get; init; }

        public long TsNs { get; set; }

        public long Seq { get; set; }

        public long Count { get; set; }
    }

    private void PickUpSignals(long now)
    {
        if (_fatalSignal is var fatal and not 0)
        {
            // daemonproxy §8/§12: the fatal path (exec-on-exit, else `fatal: Received signal …`); like the original the
            // program ends with 4 even when a guard makes the fatal path "attempt to continue".
            _fatalSignal = 0;
            var message = $"Received signal {SignalNames.Name(fatal)} ({fatal})";
            Fatal(4, message);
            throw new SupervisorExitException(4, message);
        }

        while (_caught.TryDequeue(out var signo))
        {
            var record = _signals.Find(r => r.Signo == signo);
            if (record is null)
            {
                if (_signals.Count >= SignalSlots)
                {
                    _signals.RemoveAt(_signals.Count - 1); // a full table overwrites the last slot (daemonproxy §8)
                }

                record = new SignalRecord { Signo = signo };
                _signals.Add(record);
            }

            record.Count++;
            record.TsNs = now;
            record.Seq = ++_signalSeq;
        }
    }

    private string SignalLine(SignalRecord r) => $"signal\t{SignalNames.Name(r.Signo)}\t{r.TsNs / Second}\t{r.Count}\n";

    /// <summary>daemonproxy §4.5: every record with a count and a newer stamp than the controller has seen, oldest first.</summary>
    private void DeliverSignals(Controller c, long now)
    {
        if (!c.HasOutput)
        {
            return;
        }

        foreach (var r in _signals.Where(r => r.Count > 0 && r.Seq > c.SignalMarker).OrderBy(r => r.Seq).ToList())
        {
            c.Send(SignalLine(r), now);
            c.SignalMarker = r.Seq;
        }
    }

    private long PendingSignalCount(int signo) => _signals.Find(r => r.Signo == signo)?.Count ?? 0;

    private void Broadcast(string line, long now)
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

    // ---- socket controllers (daemonproxy §4.1) -------------------------------------------------------------

    /// <summary>
    /// Creates (or replaces) the controller listening socket (backlog 2, daemonproxy §13) and hands it to the
    /// transport's listener for accepting. The supervisor keeps the descriptor so it can notice clients
    /// waiting in the backlog while every controller slot is taken (daemonproxy §4.1).
    /// </summary>
    private string? CreateControlSocket(string path)
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

    private void DeleteControlSocket()
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
    private unsafe void AcceptPending()
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

    // ---- controllers ------------------------------------------------------------------------------

    private bool RunControllers(long now)
    {
        var busy = false;
        foreach (var c in _slots)
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
            if (c.Dead || _terminate)
            {
                return false;
            }

            if (c.Dump is not null)
            {
                ContinueDump(c, now);
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

            DeliverSignals(c, now);
            if (c.CloseRequested || c.WatchHangup)
            {
                return false;
            }

            var status = c.TryReadLine(out var line, out var comment);
            switch (status)
            {
                case Protocols.Tsv.TsvLineStatus.Line:
                    Execute(c, line, now);
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
                    Execute(c, rest, now); // a final line without LF is run (daemonproxy §4.1)
                }

                CloseController(c);
                break;
            case ControllerKind.Interactive:
                // A final unterminated line is ignored; EOF ends the program unless guarded (daemonproxy §4.1).
                c.TakeRemainder();
                if (_guard != 0)
                {
                    Log.Warn("interactive controller reached EOF, but terminate guard is set; continuing");
                    c.StopInput();
                }
                else
                {
                    _terminate = true;
                }

                break;
            default:
                c.TakeRemainder();
                CloseController(c);
                break;
        }
    }

    private void CloseController(Controller c)
    {
        c.Flush(Now());
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

    private void FlushControllers(long now)
    {
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
                    _terminate = _terminate || _guard == 0;
                }

                CloseController(c);
            }
        }
    }

    private long NextTimeoutMs(long now)
    {
        var next = now + 200 * Second;
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

        return Math.Clamp((next - now + 999_999) / 1_000_000, 0, 200_000);
    }

    private unsafe void Poll(long timeoutMs)
    {
        var list = new List<Libc.PollFd>(_slots.Length * 2 + 1) { new() { Fd = _wakeRead, Events = Libc.POLLIN } };
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
        var watchBacklog = _listenFd >= 0 && (!full || Now() >= _acceptWarnAtNs);
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
            _acceptWarnAtNs = Now() + 5 * Second;
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

    // ---- termination (daemonproxy §12) ---------------------------------------------------------------------

    /// <summary>
    /// The single fatal path (daemonproxy §2.3): exec-on-exit when configured; with only a guard, log and continue;
    /// otherwise log and exit with <paramref name="code"/>.
    /// </summary>
    private void Fatal(int code, string message)
    {
        if (_execArgs is not null)
        {
            // The original logs nothing but the exec warning before the exec; the message travels in
            // DAEMONPROXY_ERROR and is logged below only when the exec failed.
            ExecOnExit(code, message);
        }

        if (_guard != 0)
        {
            Log.Fatal("(attempting to continue) " + message);
            return;
        }

        Log.Fatal(message);
        throw new SupervisorExitException(code, message);
    }

    private int FinishTerminate()
    {
        foreach (var svc in _services.Values)
        {
            if (svc.State == ServiceState.Up)
            {
                Log.Warn($"service '{svc.Name}' running as pid {svc.Pid}");
            }
        }

        // Give controllers a moment to receive what is queued (the reference flushes before exiting).
        var deadline = Now() + Second / 2;
        while (_slots.Any(c => c is { Dead: false, Queued: > 0 }) && Now() < deadline)
        {
            foreach (var c in _slots)
            {
                c?.Flush(Now());
            }

            Thread.Sleep(5);
        }

        if (_execArgs is not null)
        {
            ExecOnExit(_exitCode, _exitMessage);
        }

        foreach (var c in _slots)
        {
            c?.Close();
        }

        DeleteControlSocket();
        return _exitCode & 0xFF;
    }

    /// <summary>
    /// Replaces the process with the exec-on-exit argv (daemonproxy §12), keeping the PID so services stay its
    /// children. Returns only when the exec failed.
    /// </summary>
    internal unsafe void ExecOnExit(int code, string message)
    {
        var argv = _execArgs!.Split('\t');
        SetEnv("DAEMONPROXY_EXITCODE", code.ToString(System.Globalization.CultureInfo.InvariantCulture));
        SetEnv("DAEMONPROXY_ERROR", message);
        Log.Warn($"daemonproxy exec_on_exit to '{argv[0]}'");
        foreach (var svc in _services.Values)
        {
            if (svc.State == ServiceState.Up)
            {
                Log.Warn($"service '{svc.Name}' running as pid {svc.Pid}");
            }
        }

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
        foreach (var r in _registrations)
        {
            r.Dispose();
        }

        _registrations.Clear();
        DeleteControlSocket();
        Log.Dispose();
        Libc.close(_wakeRead);
        Libc.close(_wakeWrite);
    }
}
