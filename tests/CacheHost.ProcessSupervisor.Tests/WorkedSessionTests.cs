using static CacheHost.ProcessSupervisor.Tests.DaemonProxyProcess;

namespace CacheHost.ProcessSupervisor.Tests;

/// <summary>The worked sessions of daemonproxy §14 against the real program over stdin/stdout (-i).</summary>
public sealed class WorkedSessionTests
{
    private static readonly string[] Interactive = ["-i"];

    private static string[] FdStateLines(string stdin = "stdin", string stdout = "stdout") =>
    [
        "fd.state\tcontrol.cmd\tspecial\twrite\tdaemonproxy command pipe",
        "fd.state\tcontrol.event\tspecial\tread\tdaemonproxy event stream",
        "fd.state\tcontrol.socket\tspecial\tread,write\tdaemonproxy control socket",
        "fd.state\tnull\tspecial\tread,write\t/dev/null",
        "fd.state\tstderr\tfile\twrite\tunknown",
        $"fd.state\t{stdin}\tfile\tread\tunknown",
        $"fd.state\t{stdout}\tfile\twrite\tunknown",
    ];

    [Fact]
    public void S14_1_BasicServiceRun()
    {
        using var dp = Start(Interactive);
        dp.Send("service.args\tfoo\t/bin/sh\t-c\texit 42");
        dp.Expect("service.args\tfoo\t/bin/sh\t-c\texit 42");
        dp.Send("service.start\tfoo");
        var start = dp.Expect("service.state\tfoo\tstart\t{n}\t-\t-\t-\t-\t-");
        var up = dp.Expect("service.state\tfoo\tup\t{n}\t{n}\t-\t-\t0\t-");
        var pid = up.Split('\t')[4];
        dp.Expect($"service.state\tfoo\tdown\t{{n}}\t{pid}\texit\t42\t0\t0");
        Assert.Equal(start.Split('\t')[3], up.Split('\t')[3]);

        dp.Send("service.args\tfoo\t/bin/sh\t-c\tkill -TERM $$");
        dp.Expect("service.args\tfoo\t/bin/sh\t-c\tkill -TERM $$");
        dp.Send("service.start\tfoo");
        dp.Expect("service.state\tfoo\tstart\t{n}\t-\t-\t-\t-\t-");
        up = dp.Expect("service.state\tfoo\tup\t{n}\t{n}\t-\t-\t0\t-");
        dp.Expect($"service.state\tfoo\tdown\t{{n}}\t{up.Split('\t')[4]}\tsignal\tSIGTERM\t0\t0");
    }

    [Fact]
    public void S14_2_Errors()
    {
        using var dp = Start(Interactive);
        dp.Send("typo");
        dp.Expect("error\tUnknown command: typo");
        dp.Send("service.start\tnosuch");
        dp.Expect("error\tNo such service, for command \"service.start\tnosuch\"");
        dp.Send("service.args\t" + new string('x', 32) + "\t/bin/true");
        dp.Expect("error\tInvalid service name, for command \"service.args\txxxxxxxxxxxxxxxxx...\"");
        dp.Send("terminate");
        dp.Expect("error\tExpected integer, for command \"terminate\"");
        dp.Send("echo\t" + new string('b', 1024 - 5));
        dp.Expect("error\tline too long");
        dp.Send("# " + new string('c', 3000));
        dp.Send("echo\tafter");
        dp.Expect("after");
        // stderr is read by another thread: the line may land a moment after the stdout line that followed it.
        Assert.True(dp.WaitForStderr(l => l == "error: controller[0] sent unknown command typo", TimeSpan.FromSeconds(5)), string.Join("\n", dp.Stderr));
        Assert.True(dp.WaitForStderr(l => l == "error: controller[0] command exceeds buffer size", TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public void S14_3_PipeFromServiceToLogger()
    {
        using var dp = Start(Interactive);
        dp.Send("fd.pipe\tapp.log.r\tapp.log.w");
        dp.Expect("fd.state\tapp.log.r\tpipe\tfrom\tapp.log.w");
        dp.Expect("fd.state\tapp.log.w\tpipe\tto\tapp.log.r");
        dp.Send("service.args\tapp-log\tcat");
        dp.Expect("service.args\tapp-log\tcat");
        dp.Send("service.fds\tapp-log\tapp.log.r\tstderr\tstderr");
        dp.Expect("service.fds\tapp-log\tapp.log.r\tstderr\tstderr");
        dp.Send("service.auto_up\tapp-log\t2\talways");
        dp.Expect("service.state\tapp-log\tstart\t{n}\t-\t-\t-\t-\t-");
        dp.Expect("service.auto_up\tapp-log\t2\talways");
        var logUp = dp.Expect("service.state\tapp-log\tup\t{n}\t{n}\t-\t-\t0\t-");
        dp.Send("service.args\tapp\t/bin/sh\t-c\techo hello from app");
        dp.Expect("service.args\tapp\t/bin/sh\t-c\techo hello from app");
        dp.Send("service.fds\tapp\tnull\tapp.log.w\tapp.log.w");
        dp.Expect("service.fds\tapp\tnull\tapp.log.w\tapp.log.w");
        dp.Send("service.start\tapp");
        dp.Expect("service.state\tapp\tstart\t{n}\t-\t-\t-\t-\t-");
        var up = dp.Expect("service.state\tapp\tup\t{n}\t{n}\t-\t-\t0\t-");
        dp.Expect($"service.state\tapp\tdown\t{{n}}\t{up.Split('\t')[4]}\texit\t0\t0\t0");
        Assert.True(dp.WaitForStderr(l => l == "hello from app", TimeSpan.FromSeconds(5)), "the logger did not pass the line on");
        dp.Send("service.auto_up\tapp-log\t-");
        dp.Expect("service.auto_up\tapp-log\t-");
        dp.Send("service.signal\tapp-log\tSIGTERM");
        dp.Expect($"service.state\tapp-log\tdown\t{{n}}\t{logUp.Split('\t')[4]}\tsignal\tSIGTERM\t{{n}}\t0");
    }

    [Fact]
    public void S14_4_ScheduledStartAndCancel()
    {
        using var dp = Start(Interactive);
        dp.Send("service.args\tfoo\t/bin/true");
        dp.Expect("service.args\tfoo\t/bin/true");
        var at = TestLibc.MonotonicSeconds() + 30;
        dp.Send($"service.start\tfoo\t{at}");
        dp.Expect($"service.state\tfoo\tstart\t{at}\t-\t-\t-\t-\t-");
        dp.Send("service.start\tfoo\t-");
        dp.Expect("service.state\tfoo\tdown\t-\t-\t-\t-\t-\t-");
        dp.Send("service.start\tfoo\t-");
        dp.Expect("error\tno service.start pending, for command \"service.start\tfoo\t-\"");
        dp.Send($"service.start\tfoo\t{TestLibc.MonotonicSeconds() - 200000}");
        dp.Expect("error\tinvalid timestamp, for command \"service.start\tfoo\t{n}\"");

        // A start 2 s ahead happens at that second, not before.
        var soon = TestLibc.MonotonicSeconds() + 2;
        dp.Send($"service.start\tfoo\t{soon}");
        dp.Expect($"service.state\tfoo\tstart\t{soon}\t-\t-\t-\t-\t-");
        var up = dp.Expect("service.state\tfoo\tup\t{n}\t{n}\t-\t-\t0\t-", TimeSpan.FromSeconds(6));
        Assert.True(long.Parse(up.Split('\t')[3]) >= soon);
    }

    [Fact]
    public void S14_5_SignalsCountingAndClearing()
    {
        using var dp = Start(Interactive);
        dp.Sync();
        dp.Signal(12);
        var first = dp.Expect("signal\tSIGUSR2\t{n}\t1");
        Thread.Sleep(300);
        dp.Signal(12);
        dp.Expect("signal\tSIGUSR2\t{n}\t2");
        dp.Send("signal.clear\tSIGUSR2\t1");
        dp.Send("statedump");
        dp.Send("echo\tend");
        foreach (var line in FdStateLines())
        {
            dp.Expect(line);
        }

        dp.Expect("signal\tSIGUSR2\t{n}\t1");
        dp.Expect("end");
        Assert.False(dp.Process.HasExited);

        // TERM, INT, HUP and QUIT are counted too and do not end the program (daemonproxy §8).
        foreach (var (signo, name) in new[] { (15, "SIGTERM"), (2, "SIGINT"), (1, "SIGHUP"), (3, "SIGQUIT") })
        {
            dp.Signal(signo);
            dp.Expect($"signal\t{name}\t{{n}}\t1");
        }

        dp.Send("echo\tstill-here");
        dp.Expect("still-here");
        _ = first;
    }

    [Fact]
    public void S14_6_FullStatedumpWithServices()
    {
        using var dp = Start(Interactive);
        dp.Send("service.fds\tfoo\tnull\tnull\tnull");
        dp.Expect("service.fds\tfoo\tnull\tnull\tnull");
        dp.Send("service.args\tbar\ta\tb\tc");
        dp.Expect("service.args\tbar\ta\tb\tc");
        dp.Send("statedump");
        dp.Send("echo\tcomplete");
        foreach (var line in FdStateLines())
        {
            dp.Expect(line);
        }

        foreach (var line in new[]
        {
            "service.state\tbar\tdown\t-\t-\t-\t-\t-\t-", "service.tags\tbar\t", "service.args\tbar\ta\tb\tc",
            "service.fds\tbar\tnull\tnull\tnull", "service.auto_up\tbar\t-",
            "service.state\tfoo\tdown\t-\t-\t-\t-\t-\t-", "service.tags\tfoo\t", "service.args\tfoo\t",
            "service.fds\tfoo\tnull\tnull\tnull", "service.auto_up\tfoo\t-", "complete",
        })
        {
            dp.Expect(line);
        }

        // A running service shows its uptime in the dump.
        dp.Send("service.args\ts1\tsleep\t30");
        dp.Send("service.start\ts1");
        var up = dp.WaitFor(l => l.StartsWith("service.state\ts1\tup\t", StringComparison.Ordinal)).Line;
        Thread.Sleep(2100);
        dp.Send("statedump");
        var dump = dp.Sync("dumped");
        var state = Assert.Single(dump, l => l.StartsWith("service.state\ts1\t", StringComparison.Ordinal));
        var f = up.Split('\t');
        AssertLine($"service.state\ts1\tup\t{f[3]}\t{f[4]}\t-\t-\t{{n}}\t-", state);
        Assert.InRange(long.Parse(state.Split('\t')[7]), 2, 4);
        dp.Send("service.signal\ts1\tKILL");
        dp.Expect($"service.state\ts1\tdown\t{{n}}\t{f[4]}\tsignal\tSIGKILL\t{{n}}\t0");
    }

    [Fact]
    public void S14_7_ControllerService()
    {
        var dir = TempDir.Create();
        var seen = Path.Combine(dir, "seen.txt");
        var script = Path.Combine(dir, "ctl.sh");
        // The controller script: sends three commands, then copies its event stream to a file.
        File.WriteAllText(script, "#!/bin/sh\nprintf 'echo\\thello-from-ctl\\nstatedump\\necho\\tdump-done\\n'\nexec cat > " + seen + "\n");
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var config = Path.Combine(dir, "dp.conf");
        File.WriteAllText(config, $"service.args\tctl\t{script}\nservice.fds\tctl\tcontrol.event\tcontrol.cmd\tstderr\nservice.auto_up\tctl\t1\talways\n");

        using var dp = Start(["-c", config, "-S", Path.Combine(dir, "s")], skipBanner: false);
        var text = WaitForFile(seen, "dump-done\n");
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        AssertLine("service.state\tctl\tup\t{n}\t{n}\t-\t-\t0\t-", lines[0]);
        Assert.Equal("hello-from-ctl", lines[1]);
        var dumpStart = Array.IndexOf(lines, "fd.state\tcontrol.cmd\tspecial\twrite\tdaemonproxy command pipe");
        Assert.True(dumpStart > 1);
        var tail = lines[^6..];
        AssertLine("service.state\tctl\tup\t{n}\t{n}\t-\t-\t{n}\t-", tail[0]);
        Assert.Equal("service.tags\tctl\t", tail[1]);
        Assert.Equal($"service.args\tctl\t{script}", tail[2]);
        Assert.Equal("service.fds\tctl\tcontrol.event\tcontrol.cmd\tstderr", tail[3]);
        Assert.Equal("service.auto_up\tctl\t1\talways", tail[4]);
        Assert.Equal("dump-done", tail[5]);
    }

    [Fact]
    public void S14_7_PendingSignalIsReplayedToANewController()
    {
        var dir = TempDir.Create();
        var seen = Path.Combine(dir, "seen.txt");
        using var dp = Start(Interactive);
        dp.Signal(10);
        dp.Expect("signal\tSIGUSR1\t{n}\t1");
        dp.Send($"service.args\tctl\t/bin/sh\t-c\texec cat > {seen}");
        dp.Send("service.fds\tctl\tcontrol.event\tcontrol.cmd\tstderr");
        dp.Send("service.start\tctl");
        dp.WaitFor(l => l.StartsWith("service.state\tctl\tup", StringComparison.Ordinal));
        var text = WaitForFile(seen, "SIGUSR1");
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        AssertLine("service.state\tctl\tup\t{n}\t{n}\t-\t-\t0\t-", lines[0]);
        AssertLine("signal\tSIGUSR1\t{n}\t1", lines[1]);
    }

    [Fact]
    public void S14_8_TerminateGuard()
    {
        using var dp = Start(["-i", "--exit-guard", "54321"]);
        dp.Send("terminate\t0");
        dp.Expect("error\tterminate guard code required, for command \"terminate\t0\"");
        dp.Send("terminate\t0\t12345");
        dp.Expect("error\tincorrect terminate guard code, for command \"terminate\t0\t12345\"");
        dp.Send("terminate\t0\t54321");
        dp.Expect("error\tcannot exit, and exec-on-exit is not configured, for command \"terminate\t0\t54321\"");
        dp.Send("terminate.guard\t-\t54321");
        dp.Send("terminate\t0");
        Assert.Equal(0, dp.WaitForExit());
    }

    [Fact]
    public void S14_8_GuardKeepsRunningAtEndOfInput()
    {
        var dir = TempDir.Create();
        var sock = Path.Combine(dir, "s");
        using var dp = Start(["-i", "-S", sock, "--exit-guard", "7"]);
        dp.Sync();
        dp.CloseInput();
        Assert.True(dp.WaitForStderr(l => l.StartsWith("warning: ", StringComparison.Ordinal) && l.Contains("guard"), TimeSpan.FromSeconds(5)));
        using var client = SocketClient.Connect(sock);
        client.Send("terminate\t9");
        client.Expect("error\tterminate guard code required, for command \"terminate\t9\"");
        client.Send("terminate.guard\t-\t7");
        client.Send("terminate\t9");
        Assert.Equal(9, dp.WaitForExit());
    }

    [Fact]
    public void S14_9_EventOverflow()
    {
        var dir = TempDir.Create();
        var sock = Path.Combine(dir, "s");
        using var dp = Start(["-i", "-S", sock], readStdout: false);
        dp.Send("conn.event_timeout\t2\t8");
        var burst = new System.Text.StringBuilder();
        for (var i = 0; i < 1000; i++)
        {
            burst.Append("service.args\tfoo\t").Append(new string('v', 330)).Append('\n');
        }

        var writer = new Thread(() => dp.SendRaw(burst.ToString())) { IsBackground = true };
        writer.Start();
        // Meanwhile a socket controller stays responsive.
        using (var other = SocketClient.Connect(sock))
        {
            other.Sync("responsive");
        }

        Assert.True(writer.Join(TimeSpan.FromSeconds(15)), "the stalled controller's commands never ran");
        Assert.True(dp.WaitForStderr(l => l.StartsWith("warning: controller 0 blocked pipe for ", StringComparison.Ordinal), TimeSpan.FromSeconds(5)));
        dp.StartReadingStdout();
        for (var i = 0; i < 6; i++)
        {
            Assert.StartsWith("info\t", dp.NextLine());
        }

        var (buffered, _) = dp.WaitFor(l => l == "overflow");
        Assert.NotEmpty(buffered);
        Assert.All(buffered, l => Assert.Equal("service.args\tfoo\t" + new string('v', 330), l));
        // Commands still queued behind the stall run now and their events are delivered normally again.
        dp.Send("echo\t-marker-");
        var (after, _) = dp.WaitFor(l => l == "-marker-");
        Assert.All(after, l => Assert.Equal("service.args\tfoo\t" + new string('v', 330), l));
        Assert.True(buffered.Count + after.Count < 1000, "nothing was dropped although the controller overflowed");
    }

    [Fact]
    public void S14_10_SocketClientAndFdTake()
    {
        var dir = TempDir.Create();
        var sock = Path.Combine(dir, "dp.sock");
        using var dp = Start(["-S", sock], skipBanner: false);
        using var a = SocketClient.Connect(sock);
        using var b = SocketClient.Connect(sock);
        a.Sync();
        b.Sync();
        unsafe
        {
            var fds = stackalloc int[2];
            Assert.Equal(0, TestLibc.pipe(fds));
            TestLibc.SendWithFd(a.Socket, "fd.take\ttaken.w\n"u8.ToArray(), fds[1]);
            TestLibc.close(fds[1]);
            a.Expect("fd.state\ttaken.w\tfile\twrite\tunknown");
            b.Expect("fd.state\ttaken.w\tfile\twrite\tunknown");

            // The taken pipe really works: a service writes into it and we read our end.
            a.Send("service.args\tw\t/bin/sh\t-c\techo through-taken-pipe");
            a.Send("service.fds\tw\tnull\ttaken.w\tnull");
            a.Send("service.start\tw");
            a.WaitFor(l => l.StartsWith("service.state\tw\tdown", StringComparison.Ordinal));
            var buffer = new byte[64];
            fixed (byte* p = buffer)
            {
                var n = TestLibc.read(fds[0], p, 64);
                Assert.Equal("through-taken-pipe\n", System.Text.Encoding.ASCII.GetString(buffer, 0, (int)n));
            }

            TestLibc.close(fds[0]);
        }

        a.Send("fd.take\tnothing");
        Assert.Equal("error\tNo ancillary file descriptor received, for command \"fd.take\tnothing\"", a.WaitFor(l => l.StartsWith("error", StringComparison.Ordinal)).Line);
        a.Send("exit");
        Assert.True(a.WaitForEof(TimeSpan.FromSeconds(5)));
        b.Send("echo\tb-alive");
        b.WaitFor(l => l == "b-alive");
    }

    internal static string WaitForFile(string path, string contains)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            if (File.Exists(path))
            {
                var text = File.ReadAllText(path, System.Text.Encoding.Latin1);
                if (text.Contains(contains, StringComparison.Ordinal))
                {
                    return text;
                }
            }

            Thread.Sleep(50);
        }

        Assert.Fail($"{path} did not get '{contains}': {(File.Exists(path) ? File.ReadAllText(path) : "(missing)")}");
        return "";
    }
}
