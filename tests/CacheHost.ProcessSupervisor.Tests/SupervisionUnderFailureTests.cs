using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using static CacheHost.ProcessSupervisor.Tests.DaemonProxyProcess;

namespace CacheHost.ProcessSupervisor.Tests;

/// <summary>
/// Issue 14 (and the daemonproxy item of issue 21): a stalled log reader, a dying controller, a broken pipe and
/// kill-sent fatal signals never stop supervision; -v/-vv log lines like the original (daemonproxy §8, §11, §12).
/// </summary>
public sealed class SupervisionUnderFailureTests
{
    /// <summary>Runs the supervisor through /bin/sh so its descriptors can be arranged first (SCRIPT then `exec "$@"`).</summary>
    /// <summary>Shell text that closes every descriptor above 2 (bash: dash cannot close descriptors above 9).</summary>
    internal const string CloseInheritedFds = "for f in /proc/$$/fd/*; do n=${f##*/}; if [ \"$n\" -gt 2 ]; then eval \"exec $n>&-\"; fi; done";

    internal static DaemonProxyProcess StartThroughShell(string script, string[] args, string shell = "/bin/sh", bool skipBanner = true) =>
        Start(["-c", script + "; exec \"$@\"", "sh", "dotnet", ProgramDll, "daemonproxy", .. args], skipBanner, programName: shell);

    [Fact]
    public void FullBlockingStderrPipeNeverStallsCommandsAndLostLinesAreReported()
    {
        var dir = TempDir.Create();
        var fifo = Path.Combine(dir, "stderr");
        TestLibc.MakeFifo(fifo);
        var reader = TestLibc.Open(fifo, TestLibc.O_RDONLY | TestLibc.O_NONBLOCK);
        try
        {
            // Fill the pipe through a separate non-blocking description; the supervisor's own is blocking.
            var filler = TestLibc.Open(fifo, TestLibc.O_WRONLY | TestLibc.O_NONBLOCK);
            var filled = TestLibc.FillUntilFull(filler, (byte)'\n');
            TestLibc.close(filler);
            Assert.True(filled >= 4096, $"pipe filled with {filled} bytes");

            using var dp = StartThroughShell($"exec 2>'{fifo}'", ["-i"]);
            const int commands = 40; // 40 error lines of ~50 bytes: more than the 1 KiB log buffer
            var watch = Stopwatch.StartNew();
            var slowest = TimeSpan.Zero;
            for (var i = 0; i < commands; i++)
            {
                var sent = watch.Elapsed;
                dp.Send("invalid\tx");
                dp.Expect("error\tUnknown command: invalid");
                slowest = TimeSpan.FromTicks(Math.Max(slowest.Ticks, (watch.Elapsed - sent).Ticks));
            }

            // Supervision goes on too: a service is started and reaped while the log is still blocked.
            dp.Send("service.args\tquick\t/bin/true");
            dp.Send("service.start\tquick");
            dp.WaitFor(l => l.StartsWith("service.state\tquick\tdown\t", StringComparison.Ordinal));
            Console.WriteLine($"slowest reply with a blocked stderr: {slowest.TotalMilliseconds:F1} ms");

            // Drain: the buffered lines, then `warning: lost N log messages`; written + lost = every line.
            var text = new StringBuilder();
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            Match lost;
            while (!(lost = Regex.Match(text.ToString(), @"warning: lost (\d+) log messages\n")).Success)
            {
                Assert.True(DateTime.UtcNow < deadline, "no 'lost N log messages' line; stderr so far: " + text.ToString().Trim('\n'));
                text.Append(Encoding.UTF8.GetString(TestLibc.ReadAvailable(reader)));
                Thread.Sleep(20);
            }

            dp.CloseInput();
            Assert.Equal(0, dp.WaitForExit());
            text.Append(Encoding.UTF8.GetString(TestLibc.ReadAvailable(reader)));
            var written = Regex.Matches(text.ToString(), "error: controller\\[0\\] sent unknown command invalid\n").Count;
            var lostCount = Regex.Matches(text.ToString(), @"warning: lost (\d+) log messages").Sum(m => int.Parse(m.Groups[1].Value));
            Assert.True(written < commands, $"the 1 KiB buffer cannot hold {commands} lines, yet {written} were written");
            Assert.Equal(commands, written + lostCount);
        }
        finally
        {
            TestLibc.close(reader);
        }
    }

    [Fact]
    public void VerboseLogsEveryCommandAndEventAndLogFilterChangesItAtRunTime()
    {
        using (var dp = Start(["-ivv"]))
        {
            dp.Send("echo\tX");
            dp.Expect("X");
            Assert.True(dp.WaitForStderr(l => l == "debug: controller[0] command: \"echo\tX\"", DefaultTimeout), Show(string.Join("\n", dp.Stderr)));
            Assert.True(dp.WaitForStderr(l => l == "debug: client[0] event: \"X\"", DefaultTimeout), Show(string.Join("\n", dp.Stderr)));
            Assert.True(dp.WaitForStderr(l => Regex.IsMatch(l, @"^trace: controller\[0\] read \d+ bytes \(\d+ in recv buf\)$"), DefaultTimeout));
            Assert.True(dp.WaitForStderr(l => Regex.IsMatch(l, @"^trace: controller\[0\] flushed \d+ bytes$"), DefaultTimeout));
            Assert.Contains("debug: creating client 0 with handles 0,1", dp.Stderr);

            // log.filter info: no more debug or trace lines (an error line marks the point in the log).
            dp.Send("log.filter\tinfo");
            dp.Expect("log.filter\tinfo");
            dp.Send("echo\tY");
            dp.Expect("Y");
            dp.Send("zzz");
            dp.Expect("error\tUnknown command: zzz");
            Assert.True(dp.WaitForStderr(l => l == "error: controller[0] sent unknown command zzz", DefaultTimeout));
            Assert.DoesNotContain(dp.Stderr, l => l.Contains("\"Y\"", StringComparison.Ordinal) || l.Contains("echo\tY", StringComparison.Ordinal));
            dp.CloseInput();
            Assert.Equal(0, dp.WaitForExit());
        }

        // -v shows debug but not trace.
        using (var dp = Start(["-iv"]))
        {
            dp.Send("echo\tZ");
            dp.Expect("Z");
            dp.Send("zzz");
            dp.Expect("error\tUnknown command: zzz");
            Assert.True(dp.WaitForStderr(l => l == "error: controller[0] sent unknown command zzz", DefaultTimeout));
            Assert.Contains("debug: client[0] event: \"Z\"", dp.Stderr);
            Assert.DoesNotContain(dp.Stderr, l => l.StartsWith("trace: ", StringComparison.Ordinal));
            dp.CloseInput();
            Assert.Equal(0, dp.WaitForExit());
            Assert.Contains("debug: destroying client 0", dp.Stderr);
        }
    }

    [Fact]
    public void AControllerServicesLastCommandArrivingWithEpipeIsNeverLost()
    {
        // The service waits for a go on a FIFO, writes 100 `echo` commands (more than the 1024-byte input
        // buffer) and then its real command, and exits without reading anything. The supervisor is stopped
        // (SIGSTOP) meanwhile, so when it runs again the peer is gone: the replies to the first 1024 bytes hit
        // EPIPE while the last command is still unread in the socket. It must still be run.
        var dir = TempDir.Create();
        var fifo = Path.Combine(dir, "go");
        TestLibc.MakeFifo(fifo);
        var script = Path.Combine(dir, "ctl.sh");
        File.WriteAllText(script, $"#!/bin/sh\nread x < '{fifo}'\ni=0\nwhile [ $i -lt 100 ]; do printf 'echo\\tfill-%03d\\n' $i; i=$((i+1)); done\nprintf 'service.tags\\tctl\\tdone-%s\\n' \"$x\"\n");
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        using var dp = Start(["-i"]);
        dp.Send("service.args\tctl\t" + script);
        dp.Send("service.fds\tctl\tcontrol.event\tcontrol.cmd\tstderr");
        dp.Sync("configured");
        for (var run = 0; run < 50; run++)
        {
            dp.Send("service.start\tctl");
            var pid = int.Parse(dp.WaitFor(l => l.StartsWith("service.state\tctl\tup\t", StringComparison.Ordinal)).Line.Split('\t')[4]);
            dp.Signal(19); // SIGSTOP
            try
            {
                File.WriteAllText(fifo, $"{run}\n");
                var deadline = DateTime.UtcNow + DefaultTimeout;
                while (!File.ReadAllText($"/proc/{pid}/stat").Split(')')[1].StartsWith(" Z", StringComparison.Ordinal))
                {
                    Assert.True(DateTime.UtcNow < deadline, $"run {run}: the service did not finish");
                    Thread.Sleep(5);
                }
            }
            finally
            {
                dp.Signal(18); // SIGCONT
            }

            bool done = false, down = false;
            var until = DateTime.UtcNow + DefaultTimeout;
            while (!(done && down))
            {
                var left = until - DateTime.UtcNow;
                string? line = null;
                Assert.True(left > TimeSpan.Zero && dp.TryNextLine(left, out line), $"run {run}: command lost (done={done}, down={down})");
                done |= line == $"service.tags\tctl\tdone-{run}";
                down |= line!.StartsWith("service.state\tctl\tdown\t", StringComparison.Ordinal);
            }
        }

        dp.CloseInput();
        Assert.Equal(0, dp.WaitForExit());
    }

    [Fact]
    public void StdinEofAfterEpipeOnStdoutEndsTheInteractiveSupervisor()
    {
        using var dp = Start(["-iv"], skipBanner: false, readStdout: false);
        dp.CloseOutput();
        dp.Send("echo\tinto-the-void");
        Assert.True(dp.WaitForStderr(l => l.Contains("Broken pipe", StringComparison.Ordinal), DefaultTimeout), "no EPIPE seen: " + string.Join(" | ", dp.Stderr));
        dp.Send("service.args\tstill\t/bin/true"); // commands keep running with the output gone
        dp.CloseInput();
        Assert.Equal(0, dp.WaitForExit(TimeSpan.FromSeconds(10)));
        Assert.Contains(dp.Stderr, l => l.Contains("debug: controller[0] command: \"service.args\tstill\t/bin/true\"", StringComparison.Ordinal));
    }

    [Fact]
    public void FdPoolOfOneIsFullWithTheConstantAndStandardHandles()
    {
        // Only fds 0-2 may reach the supervisor here: an inherited fd_N would not fit the minimum pool (exit 2).
        using var dp = StartThroughShell(CloseInheritedFds, ["-i", "--fd-pool", "1"], shell: "/bin/bash");
        dp.Send("fd.open\tx\twrite\t/dev/null");
        dp.Expect("error\tUnable to allocate new file descriptor object, for command \"fd.open\tx\twrite\t/dev/null\"");
        dp.Send("fd.delete\tstdout");
        dp.Expect("fd.state\tstdout\tdeleted");
        dp.Send("fd.open\tx\twrite\t/dev/null");
        dp.Expect("fd.state\tx\tfile\twrite\t/dev/null");
        dp.CloseInput();
        Assert.Equal(0, dp.WaitForExit());
        Assert.Contains("warning: At least 7 fd objects required; using minimum", dp.Stderr);
    }

    [Fact]
    public void KillSentFatalSignalsRunExecOnExitOrExitFour()
    {
        // SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGSEGV sent with kill(2): the fatal path of daemonproxy §8/§12.
        foreach (var (signo, name) in new[] { (6, "SIGABRT"), (11, "SIGSEGV"), (4, "SIGILL"), (7, "SIGBUS"), (8, "SIGFPE") })
        {
            using var dp = Start(["-i", "-E", "/bin/sh\t-c\techo replaced pid=$$ code=$DAEMONPROXY_EXITCODE err=$DAEMONPROXY_ERROR"]);
            dp.Sync();
            dp.Signal(signo);
            var line = dp.WaitFor(l => l.StartsWith("replaced ", StringComparison.Ordinal)).Line;
            Assert.Equal($"replaced pid={dp.Pid} code=4 err=Received signal {name} ({signo})", line);
            Assert.Equal(0, dp.WaitForExit());
            Assert.Contains("warning: daemonproxy exec_on_exit to '/bin/sh'", dp.Stderr);
            Assert.DoesNotContain(dp.Stderr, l => l.StartsWith("fatal:", StringComparison.Ordinal));
        }

        using (var dp = Start(["-i"]))
        {
            dp.Sync();
            dp.Signal(11);
            Assert.Equal(4, dp.WaitForExit());
            Assert.Contains("fatal: Received signal SIGSEGV (11)", dp.Stderr);
        }

        // With a guard the original still ends (with 4) after "attempting to continue".
        using (var dp = Start(["-i", "--exit-guard", "9"]))
        {
            dp.Sync();
            dp.Signal(6);
            Assert.Equal(4, dp.WaitForExit());
            Assert.Contains("fatal: (attempting to continue) Received signal SIGABRT (6)", dp.Stderr);
        }
    }

    [Fact]
    public void MissingModeWithExitExecExecsWithoutPrintingTheFatalLine()
    {
        using var dp = Start(["-E", "/bin/sh\t-c\techo replaced code=$DAEMONPROXY_EXITCODE err=$DAEMONPROXY_ERROR"], skipBanner: false);
        dp.WaitFor(l => l == "replaced code=2 err=require -i or -c or -S");
        Assert.Equal(0, dp.WaitForExit());
        Assert.Contains("warning: daemonproxy exec_on_exit to '/bin/sh'", dp.Stderr);
        Assert.DoesNotContain(dp.Stderr, l => l.StartsWith("fatal:", StringComparison.Ordinal));
    }

    [Fact]
    public void ASecondSupervisorOnALiveSocketPathIsRefusedAndTheFirstStillAnswers()
    {
        var dir = TempDir.Create();
        var sock = Path.Combine(dir, "s");
        using var first = Start(["-i", "-S", sock]);
        first.Sync();
        using (var second = Start(["-S", sock], skipBanner: false))
        {
            Assert.Equal(3, second.WaitForExit(TimeSpan.FromSeconds(20)));
            Assert.Contains($"error: Failed to create control socket '{sock}': another process is listening on {sock}", second.Stderr);
            Assert.Contains("fatal: Failed to create control socket", second.Stderr);
        }

        using var client = SocketClient.Connect(sock);
        client.Send("echo\tstill-here");
        client.Expect("still-here");

        // socket.create at run time is refused the same way.
        using var other = Start(["-i"]);
        var create = "socket.create\t-\t" + sock;
        other.Send(create);
        other.Expect($"error\tFailed to create control socket, for command \"{create[..30]}...\"");
        client.Send("echo\tstill-here-2");
        client.Expect("still-here-2");
    }
}
