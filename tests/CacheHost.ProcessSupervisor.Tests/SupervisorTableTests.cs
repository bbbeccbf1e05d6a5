using System.Diagnostics;
using System.Text;
using CacheHost.Posix;
using CacheHost.Roles.ProcessSupervisor;

namespace CacheHost.ProcessSupervisor.Tests;

/// <summary>
/// The supervisor's tables in-process, without the loop: every table method takes the loop's monotonic time as a
/// parameter, so the tests drive time by hand (durations never depend on the machine's speed). Beside the
/// child-process tests, which run the same behaviour through the real program.
/// </summary>
public sealed class SupervisorTableTests
{
    private const long Second = 1_000_000_000L;

    /// <summary>One set of tables wired as the supervisor wires them, with a capturing controller in slot 0.</summary>
    private sealed class Tables : IDisposable
    {
        public Tables(SupervisorSettings? settings = null)
        {
            Settings = settings ?? new SupervisorSettings();
            Settings.OnBroadcast = line => Events.Append(line);
            Log = new DaemonLog { Destination = () => -1 };
            Controllers = new ControllerTable(Settings, Log, () => Now);
            Handles = new HandleTable(Settings, Controllers.Broadcast);
            Services = new ServiceTable(Settings, Log, Handles, Signals, Controllers, Statistics);
            Termination = new TerminationState(Settings.Guard, Settings.ExecArgs);
            Commands = new CommandTable(Log, Handles, Services, Signals, Controllers, Termination);
            Client = new Controller(Log, Controllers.FreeSlot(), ControllerKind.Socket, -1, -1, ownsFds: false) { Capture = Output };
            Controllers.Attach(Client);
        }

        public long Now { get; set; } = 1000 * Second;

        public ProcessSupervisorStatistics Statistics { get; } = new();

        /// <summary>The constant handles as start-up adds them; a service's default fd list is null, null, null.</summary>
        public void AddConstants() => Handles.AddConstants(Libc.Open("/dev/null", Libc.O_RDWR | Libc.O_CLOEXEC, 0));

        public SupervisorSettings Settings { get; }

        public DaemonLog Log { get; }

        public ControllerTable Controllers { get; }

        public HandleTable Handles { get; }

        public SignalTable Signals { get; } = new();

        public ServiceTable Services { get; }

        public TerminationState Termination { get; }

        public CommandTable Commands { get; }

        public Controller Client { get; }

        /// <summary>Everything the client received: replies and events.</summary>
        public StringBuilder Output { get; } = new();

        /// <summary>Broadcast events only (the host hook).</summary>
        public StringBuilder Events { get; } = new();

        /// <summary>Runs one command line for the client; returns its reply (what it received, less the events).</summary>
        public string Run(string line)
        {
            var before = Output.Length;
            var eventsBefore = Events.Length;
            Commands.Execute(Client, line, Now);
            var reply = Output.ToString(before, Output.Length - before);
            foreach (var e in Events.ToString(eventsBefore, Events.Length - eventsBefore).Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                var at = reply.IndexOf(e + "\n", StringComparison.Ordinal);
                Assert.True(at >= 0, $"event {e} did not reach the controller");
                reply = reply.Remove(at, e.Length + 1);
            }

            return reply;
        }

        public string TakeEvents()
        {
            var text = Events.ToString();
            Events.Clear();
            return text;
        }

        /// <summary>
        /// Reaps at loop time <paramref name="at"/> until the service is no longer up: the child is real, so its
        /// exit is waited for (generous bound) while the loop clock stays where the test put it.
        /// </summary>
        public void ReapAt(string name, long at)
        {
            Assert.True(Services.TryGet(name, out var svc));
            var limit = Stopwatch.StartNew();
            while (svc.State == ServiceState.Up)
            {
                Assert.True(limit.Elapsed < TimeSpan.FromSeconds(30), $"service {name} (pid {svc.Pid}) did not exit");
                Signals.ChildExited(); // what the SIGCHLD handler does
                Services.ReapChildren(at);
                if (svc.State == ServiceState.Up)
                {
                    Thread.Sleep(10);
                }
            }
        }

        public void Dispose()
        {
            Controllers.CloseAll();
            Signals.Dispose();
            Log.Dispose();
        }
    }

    [Fact]
    public void Command_table_answers_unknown_commands_ignores_comments_and_formats_errors()
    {
        using var t = new Tables();
        Assert.Equal("error\tUnknown command: bogus\n", t.Run("bogus\tx"));
        Assert.Equal("", t.Run("# a comment"));
        Assert.Equal("", t.Run(" \t "));
        Assert.Equal("error\tNo such service, for command \"service.start\tnope\"\n", t.Run("service.start\tnope"));
        // daemonproxy §3.2: the command is quoted up to 30 characters.
        Assert.Equal("error\tNo such service, for command \"service.start\tabcdefghijklmnop...\"\n",
            t.Run("service.start\tabcdefghijklmnopqrstuvwxyz"));
        Assert.Equal("hello\tworld\n", t.Run("echo\thello\tworld"));
    }

    [Fact]
    public void A_start_in_the_future_waits_for_the_loop_clock_and_can_be_cancelled()
    {
        using var t = new Tables();
        Assert.Equal("", t.Run("service.args\ts\t/bin/true"));
        Assert.Equal("service.args\ts\t/bin/true\n", t.TakeEvents());
        var at = t.Now / Second + 100;
        Assert.Equal("", Errors(t.Run($"service.start\ts\t{at}")));
        Assert.Equal($"service.state\ts\tstart\t{at}\t-\t-\t-\t-\t-\n", t.TakeEvents());
        Assert.Equal(at * Second, t.Services.NextDeadline(long.MaxValue));

        t.Now += 99 * Second;
        t.Services.RunServices(t.Now); // not due: nothing is forked
        Assert.True(t.Services.TryGet("s", out var svc));
        Assert.Equal(ServiceState.Start, svc.State);
        Assert.Equal("", t.TakeEvents());

        Assert.Equal("", t.Run("service.start\ts\t-"));
        Assert.Equal("service.state\ts\tdown\t-\t-\t-\t-\t-\t-\n", t.TakeEvents());
        Assert.Equal("error\tno service.start pending, for command \"service.start\ts\t-\"\n", t.Run("service.start\ts\t-"));
        Assert.Equal("", t.Run("service.delete\ts"));
        Assert.Equal("service.state\ts\tdeleted\t-\t-\t-\t-\t-\t-\n", t.TakeEvents());
        Assert.False(t.Services.TryGet("s", out _));
    }

    [Fact]
    public void Auto_up_restarts_a_short_run_one_interval_after_the_reap()
    {
        using var t = new Tables();
        t.AddConstants();
        t.Run("service.args\ts\t/bin/true");
        t.TakeEvents();
        Assert.Equal("", t.Run("service.auto_up\ts\t5\talways"));
        // daemonproxy §5: the start event comes before the auto_up event.
        Assert.Equal($"service.state\ts\tstart\t{t.Now / Second}\t-\t-\t-\t-\t-\nservice.auto_up\ts\t5\talways\n", t.TakeEvents());

        t.Services.RunServices(t.Now);
        Assert.True(t.Services.TryGet("s", out var svc));
        Assert.Equal(ServiceState.Up, svc.State);
        Assert.StartsWith($"service.state\ts\tup\t{t.Now / Second}\t{svc.Pid}\t", t.TakeEvents());

        var pid = svc.Pid;
        var reapAt = t.Now + 2 * Second; // ran 2 s of loop time: shorter than the 5 s interval
        t.ReapAt("s", reapAt);
        var reapSec = reapAt / Second;
        var start = $"service.state\ts\tstart\t{reapSec + 5}\t-\t-\t-\t-\t-\n";
        // daemonproxy §7.3 (defect 6, replicated): the restart's start is broadcast twice.
        Assert.Equal($"service.state\ts\tdown\t{reapSec}\t{pid}\texit\t0\t2\t0\n" + start + start, t.TakeEvents());
        Assert.Equal(reapAt + 5 * Second, svc.StartAtNs);
        Assert.Equal(1, t.Statistics.Restarts); // the meter's restart count (issue 18)

        t.Services.RunServices(reapAt + 5 * Second - 1);
        Assert.Equal(ServiceState.Start, svc.State);
        Assert.Equal("", t.Run("service.delete\ts")); // not running: deletable before it forks again
    }

    [Fact]
    public void Auto_up_restarts_a_long_run_at_once_and_a_signal_trigger_starts_a_down_service()
    {
        using var t = new Tables();
        t.AddConstants();
        t.Run("service.args\ts\t/bin/true");
        Assert.Equal("", t.Run("service.auto_up\ts\t3\tSIGUSR1"));
        Assert.True(t.Services.TryGet("s", out var svc));
        Assert.Equal(ServiceState.Down, svc.State); // no pending SIGUSR1 yet
        t.TakeEvents();

        t.Signals.Caught(10);
        t.Signals.PickUp(t.Now);
        t.Services.RunServices(t.Now);
        Assert.Equal(ServiceState.Up, svc.State);
        var upAt = t.Now;
        Assert.Equal($"service.state\ts\tstart\t{upAt / Second}\t-\t-\t-\t-\t-\n", t.TakeEvents().Split("service.state\ts\tup")[0]);

        var reapAt = upAt + 10 * Second; // ran longer than the interval; SIGUSR1 still pending: restart now
        t.ReapAt("s", reapAt);
        Assert.Equal(ServiceState.Start, svc.State);
        Assert.Equal(reapAt, svc.StartAtNs);

        t.Run("service.start\ts\t-");
        Assert.Equal("", t.Run("signal.clear\tSIGUSR1\t1"));
        Assert.Equal(0, t.Signals.PendingCount(10));
        Assert.False(t.Services.WantsUp(svc)); // cleared: level trigger off (daemonproxy §7.3)
    }

    [Fact]
    public void Signal_table_counts_stamps_delivers_once_and_overwrites_its_last_slot_when_full()
    {
        using var signals = new SignalTable();
        var sb = new StringBuilder();
        using var log = new DaemonLog { Destination = () => -1 };
        var c = new Controller(log, -1, ControllerKind.Socket, -1, -1, ownsFds: false) { Capture = sb };

        signals.Caught(1);
        signals.Caught(1);
        signals.PickUp(7 * Second);
        signals.Caught(10);
        signals.PickUp(9 * Second + 5);
        signals.DeliverTo(c, 9 * Second);
        Assert.Equal("signal\tSIGHUP\t7\t2\nsignal\tSIGUSR1\t9\t1\n", sb.ToString());
        sb.Clear();
        signals.DeliverTo(c, 10 * Second);
        Assert.Equal("", sb.ToString()); // seen already

        signals.Clear(1, 5);
        Assert.Equal(0, signals.PendingCount(1)); // never below zero
        signals.Caught(1);
        signals.PickUp(11 * Second);
        signals.DeliverTo(c, 11 * Second);
        Assert.Equal("signal\tSIGHUP\t11\t1\n", sb.ToString());

        for (var signo = 20; signo < 20 + SignalTable.Slots; signo++)
        {
            signals.Caught(signo);
        }

        signals.PickUp(12 * Second);
        Assert.Equal(SignalTable.Slots, signals.Records.Count);
        Assert.Equal(20 + SignalTable.Slots - 1, signals.Records[^1].Signo);
        Assert.Equal(1, signals.Records[0].Signo); // earlier slots stay

        Assert.Equal(0, signals.TakeFatal());
        Assert.True(signals.TakeChildExited()); // the first pass scans
        Assert.False(signals.TakeChildExited());
        signals.ChildExited();
        Assert.True(signals.TakeChildExited());
    }

    [Fact]
    public void Handle_table_pairs_pipe_ends_protects_constants_and_keeps_its_pool_limit()
    {
        using var t = new Tables(new SupervisorSettings { HandlePool = 7 });
        t.Handles.AddConstants(-1);
        Assert.Equal("", t.Run("fd.pipe\tr\tw"));
        Assert.Equal("fd.state\tr\tpipe\tfrom\tw\nfd.state\tw\tpipe\tto\tr\n", t.TakeEvents());
        Assert.True(t.Handles.TryGet("r", out var r));
        Assert.True(r.Fd >= 0);

        Assert.Equal("", t.Run("fd.delete\tw"));
        Assert.Equal("fd.state\tw\tdeleted\n", t.TakeEvents());
        Assert.Equal("?", r.Description); // the surviving end loses its peer (daemonproxy §6.3)

        Assert.Contains("File descriptor cannot be altered", t.Run("fd.delete\tnull"));
        Assert.Contains("Invalid file descriptor name", t.Run("fd.delete\tno/slash"));
        Assert.Contains("No such file descriptor", t.Run("fd.delete\tw"));

        // 4 constants + r = 5 of 7: two more names fit, a third does not.
        Assert.Equal("", t.Run("fd.open\ta\tread\t/dev/null"));
        Assert.Equal("", t.Run("fd.open\tb\twrite\t/dev/null"));
        Assert.Contains("Unable to allocate new file descriptor object", t.Run("fd.open\tc\tread\t/dev/null"));
        Assert.Equal("", t.Run("fd.open\ta\tread\t/dev/null")); // replacing a name needs no new object

        t.Handles.LogDest = "b";
        Assert.True(t.Handles.TryGet("b", out var b));
        Assert.Equal(b.Fd, t.Handles.LogFd);
        t.Handles.LogDest = "missing";
        Assert.Equal(-1, t.Handles.LogFd);
    }

    [Fact]
    public void Statedump_lists_handles_then_services_in_byte_order_then_signals()
    {
        using var t = new Tables();
        t.Run("fd.open\tb\tread\t/dev/null");
        t.Run("fd.open\tB\tread\t/dev/null");
        t.Run("service.tags\tzz\tt1");
        t.Run("service.args\tA\t/bin/true");
        t.Signals.Caught(15);
        t.Signals.PickUp(t.Now);
        t.Signals.DeliverTo(t.Client, t.Now);
        t.Output.Clear();

        t.Run("statedump");
        Assert.NotNull(t.Client.Dump);
        t.Commands.ContinueDump(t.Client, t.Now);
        t.Signals.DeliverTo(t.Client, t.Now);
        var lines = t.Output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string[] expected =
            [
                "fd.state\tB\tfile\tread\t/dev/null",
                "fd.state\tb\tfile\tread\t/dev/null",
                "service.state\tA\tdown\t-\t-\t-\t-\t-\t-",
                "service.tags\tA\t",
                "service.args\tA\t/bin/true",
                "service.fds\tA\tnull\tnull\tnull",
                "service.auto_up\tA\t-",
                "service.state\tzz\tdown\t-\t-\t-\t-\t-\t-",
                "service.tags\tzz\tt1",
                "service.args\tzz\t",
                "service.fds\tzz\tnull\tnull\tnull",
                "service.auto_up\tzz\t-",
                $"signal\tSIGTERM\t{t.Now / Second}\t1",
            ];
        Assert.Equal(expected, lines);
    }

    [Fact]
    public unsafe void Controller_table_closes_a_controller_blocked_past_its_close_timeout()
    {
        var settings = new SupervisorSettings { MaxControllers = 3 };
        using var t = new Tables(settings);
        var pair = stackalloc int[2];
        Assert.Equal(0, Libc.socketpair(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC, 0, pair));
        try
        {
            var c = new Controller(t.Log, t.Controllers.FreeSlot(), ControllerKind.Socket, pair[0], pair[0], ownsFds: true);
            t.Controllers.Attach(c);
            Assert.Equal(1, c.Slot);
            Assert.Equal("", t.Run("conn.event_timeout\t2\t4") + Run(t, c, "conn.event_timeout\t2\t4"));

            // The peer never reads: broadcast until the kernel buffer is full and the controller is blocked.
            var line = new string('x', 1000) + "\n";
            for (var i = 0; i < 100_000 && c.BlockedSinceNs == 0; i++)
            {
                t.Controllers.Broadcast(line, t.Now);
                t.Controllers.Flush(t.Now);
            }

            Assert.Equal(t.Now, c.BlockedSinceNs);
            Assert.Equal(t.Now + Second, t.Controllers.NextDeadline(t.Now, long.MaxValue)); // checked each second

            t.Now += 3 * Second; // past the reset timeout: still open
            t.Controllers.Flush(t.Now);
            Assert.False(c.Dead);
            Assert.Same(c, t.Controllers.Slots[1]);

            t.Now += Second; // 4 s blocked: the close timeout (daemonproxy §4.4)
            t.Controllers.Flush(t.Now);
            Assert.True(c.Dead);
            Assert.Null(t.Controllers.Slots[1]);
            Assert.Same(t.Client, t.Controllers.Slots[0]);
        }
        finally
        {
            Libc.close(pair[1]);
        }
    }

    [Fact]
    public void Broadcast_reaches_every_controller_and_the_host_hook_and_exit_frees_a_socket_slot()
    {
        using var t = new Tables(new SupervisorSettings { MaxControllers = 2 });
        var second = new StringBuilder();
        var c = new Controller(t.Log, t.Controllers.FreeSlot(), ControllerKind.Socket, -1, -1, ownsFds: false) { Capture = second };
        t.Controllers.Attach(c);
        Assert.Equal(-1, t.Controllers.FreeSlot());
        t.Run("service.tags\ts\tx");
        Assert.Equal("service.tags\ts\tx\n", second.ToString());
        Assert.Equal("service.tags\ts\tx\n", t.TakeEvents());

        Assert.Equal("", Run(t, c, "exit"));
        Assert.False(t.Controllers.Flush(t.Now)); // a socket controller: the program goes on
        Assert.Equal(1, t.Controllers.FreeSlot());
    }

    [Fact]
    public void Termination_commands_keep_the_guard_rules()
    {
        using var t = new Tables();
        Assert.Contains("Expected integer", t.Run("terminate\tx"));
        Assert.Equal("", t.Run("terminate.guard\t+\t42"));
        Assert.Contains("already set", t.Run("terminate.guard\t+\t7"));
        Assert.Contains("terminate guard code required", t.Run("terminate\t3"));
        Assert.Contains("incorrect terminate guard code", t.Run("terminate\t3\t41"));
        Assert.Contains("exec-on-exit is not configured", t.Run("terminate\t3\t42"));
        Assert.False(t.Termination.Requested);
        Assert.Contains("exceed buffer size", t.Run("terminate.exec_args\t" + new string('a', 256)));
        Assert.Equal("", t.Run("terminate.exec_args\t/bin/echo\tbye"));
        Assert.Equal("/bin/echo\tbye", t.Termination.ExecArgs);
        Assert.Equal("", t.Run("terminate\t259\t42"));
        Assert.True(t.Termination.Requested);
        Assert.Equal(3, t.Termination.ExitCode); // the low byte (daemonproxy §12)
        Assert.Contains("incorrect guard code", t.Run("terminate.guard\t-\t1"));
        Assert.Equal("", t.Run("terminate.guard\t-\t42"));
        Assert.Equal(0, t.Termination.Guard);
    }

    private static string Run(Tables t, Controller c, string line)
    {
        var sb = c.Capture;
        var before = sb?.Length ?? 0;
        t.Commands.Execute(c, line, t.Now);
        return sb is null ? "" : sb.ToString(before, sb.Length - before);
    }

    private static string Errors(string output) =>
        string.Concat(output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error", StringComparison.Ordinal)));
}
