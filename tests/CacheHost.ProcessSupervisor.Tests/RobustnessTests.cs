using System.Text;
using static CacheHost.ProcessSupervisor.Tests.DaemonProxyProcess;

namespace CacheHost.ProcessSupervisor.Tests;

/// <summary>Bad input, floods, vanishing peers, overflow and write timeouts (daemonproxy §3.2, §4.4).</summary>
public sealed class RobustnessTests
{
    [Fact]
    public void GarbageOverlongAndHugeBurstOnASocket_ClearErrorsNoCrashNoLeaks()
    {
        var dir = TempDir.Create();
        var sock = Path.Combine(dir, "s");
        using var dp = Start(["-i", "-S", sock]);
        dp.Sync();
        using (var warm = SocketClient.Connect(sock))
        {
            warm.Sync();
        }

        Thread.Sleep(300);
        dp.Sync("baseline");
        var before = dp.CountFds();
        var beforeLinks = dp.FdLinks();

        using (var c = SocketClient.Connect(sock))
        {
            // Binary garbage: one unknown-command error per line, bytes kept as they are.
            var garbage = new byte[] { 0xff, 0xfe, 0x01, 0x02, (byte)'\t', 0x80, (byte)'\n', 0x00, 0x00, (byte)'\n', 0xc3, 0x28, (byte)'\n' };
            c.Socket.Send(garbage);
            Assert.Equal("error\tUnknown command: \u00ff\u00fe\u0001\u0002", c.NextLine());
            Assert.Equal("error\tUnknown command: \u00c3(", c.NextLine()); // NUL-only line ignored
            c.SendRaw(new string('z', 5000) + "\n");
            c.Expect("error\tline too long");
            c.SendRaw("#" + new string('z', 5000) + "\n");
            c.Sync("after-overlong");

            // 100,000 commands in one burst: every reply arrives, in order.
            const int count = 100_000;
            var burst = new StringBuilder();
            for (var i = 0; i < count; i++)
            {
                burst.Append("echo\t").Append(i).Append('\n');
            }

            var sender = new Thread(() => c.SendRaw(burst.ToString())) { IsBackground = true };
            sender.Start();
            for (var i = 0; i < count; i++)
            {
                var line = c.NextLine(TimeSpan.FromSeconds(30));
                if (line != i.ToString(System.Globalization.CultureInfo.InvariantCulture))
                {
                    Assert.Fail($"reply {i} was '{line}'");
                }
            }

            Assert.True(sender.Join(TimeSpan.FromSeconds(30)));
        }

        // A client that disconnects in the middle of a line.
        using (var c = SocketClient.Connect(sock))
        {
            c.Sync();
            c.SendRaw("service.args\thalf");
        }

        for (var i = 0; i < 20; i++)
        {
            using var c = SocketClient.Connect(sock);
            c.SendRaw("echo\tx\nfd.pipe\ttmp.r");
        }

        Thread.Sleep(500);
        var lines = dp.Sync("after");
        Assert.DoesNotContain(lines, l => l.Contains("half", StringComparison.Ordinal));
        Assert.False(dp.Process.HasExited);
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (dp.CountFds() != before && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(100);
        }

        var afterLinks = dp.FdLinks();
        Assert.True(before == dp.CountFds(), "descriptors changed: " + string.Join(", ", afterLinks.Except(beforeLinks)) + " / gone: " + string.Join(", ", beforeLinks.Except(afterLinks)));
        Assert.Contains(dp.Stderr, l => l.StartsWith("error: controller[1] sent unknown command", StringComparison.Ordinal));
    }

    [Fact]
    public void ControllerThatStopsReadingOverflowsWhileAnotherStaysResponsive()
    {
        var dir = TempDir.Create();
        var sock = Path.Combine(dir, "s");
        using var dp = Start(["-i", "-S", sock]);
        dp.Sync();
        using var slow = SocketClient.Connect(sock, startReading: false, receiveBuffer: 4096);
        slow.Send("conn.event_timeout\t2\t20");
        var payload = new string('p', 330);
        var burst = new StringBuilder();
        for (var i = 0; i < 2000; i++)
        {
            burst.Append("service.args\tfoo\t").Append(payload).Append('\t').Append(i).Append('\n');
        }

        var sender = new Thread(() => slow.SendRaw(burst.ToString())) { IsBackground = true };
        sender.Start();
        // The interactive controller keeps getting replies while the other one is blocked.
        var pings = 0;
        var overflows = 0;
        var started = DateTime.UtcNow;
        while (DateTime.UtcNow - started < TimeSpan.FromSeconds(4))
        {
            // The interactive controller also receives every broadcast; if it falls behind it may get an
            // `overflow` instead of the reply, which is the protocol working: ask again.
            var mark = "ping" + pings;
            dp.Send("echo\t" + mark);
            var got = dp.WaitFor(l => l == mark || l == "overflow", TimeSpan.FromSeconds(5)).Line;
            if (got == "overflow")
            {
                overflows++;
            }

            pings++;
            Thread.Sleep(100);
        }

        Assert.True(pings >= 10);
        Assert.True(overflows < pings, "the interactive controller never got a reply");
        Assert.True(sender.Join(TimeSpan.FromSeconds(20)), "the blocked controller's commands never ran");
        Assert.True(dp.WaitForStderr(l => l.StartsWith("warning: controller 1 blocked pipe for ", StringComparison.Ordinal), TimeSpan.FromSeconds(5)));

        // When it reads again: what was buffered, then `overflow`, then the answer to a new command.
        slow.StartReading();
        var (skipped, _) = slow.WaitFor(l => l == "overflow", TimeSpan.FromSeconds(10));
        Assert.All(skipped, l => Assert.StartsWith("service.args\tfoo\t", l));
        slow.Send("echo\t-marker-");
        slow.WaitFor(l => l == "-marker-");
        dp.Send("echo\tend");
        dp.WaitFor(l => l == "end");
    }

    [Fact]
    public void ControllerBlockedPastCloseTimeoutIsClosed()
    {
        var dir = TempDir.Create();
        var sock = Path.Combine(dir, "s");
        using var dp = Start(["-i", "-S", sock]);
        dp.Sync();
        using var slow = SocketClient.Connect(sock, startReading: false, receiveBuffer: 4096);
        slow.Send("conn.event_timeout\t1\t2");
        var text = new StringBuilder();
        for (var i = 0; i < 1500; i++)
        {
            text.Append("service.tags\tbar\t").Append(new string('t', 300)).Append('\n');
        }

        _ = Task.Run(() =>
        {
            try
            {
                slow.SendRaw(text.ToString());
            }
            catch (System.Net.Sockets.SocketException)
            {
            }
        });
        Assert.True(dp.WaitForStderr(l => l.StartsWith("error: controller 1 blocked pipe for ", StringComparison.Ordinal) && l.EndsWith(", closing connection", StringComparison.Ordinal), TimeSpan.FromSeconds(15)));
        slow.StartReading();
        Assert.True(slow.WaitForEof(TimeSpan.FromSeconds(10)));
        dp.Send("echo\tstill-fine");
        dp.WaitFor(l => l == "still-fine", TimeSpan.FromSeconds(20));
        // The freed slot accepts a new client.
        using var next = SocketClient.Connect(sock);
        next.Sync();
    }

    [Fact]
    public void ThirdControllerWaitsAndServiceControllerRetriesWhenSlotsAreFull()
    {
        var dir = TempDir.Create();
        var sock = Path.Combine(dir, "s");
        using var dp = Start(["-i", "-S", sock]);
        dp.Sync();
        using var second = SocketClient.Connect(sock);
        second.Sync();
        // Both slots used: a service with a control handle fails its fork and retries in 3 s (defect 2 fixed).
        dp.Send("service.args\tctl\t/bin/sh\t-c\tsleep 30");
        dp.Send("service.fds\tctl\tcontrol.event\tnull\tnull");
        dp.Send("service.start\tctl");
        dp.Expect("service.args\tctl\t/bin/sh\t-c\tsleep 30");
        dp.Expect("service.fds\tctl\tcontrol.event\tnull\tnull");
        var start = dp.Expect("service.state\tctl\tstart\t{n}\t-\t-\t-\t-\t-");
        var retry = dp.Expect("service.state\tctl\tstart\t{n}\t-\t-\t-\t-\t-");
        Assert.InRange(long.Parse(retry.Split('\t')[3]), long.Parse(start.Split('\t')[3]) + 2, long.Parse(start.Split('\t')[3]) + 4);
        Assert.True(dp.WaitForStderr(l => l == "info: will retry in 3 seconds", TimeSpan.FromSeconds(5)));
        // A third socket client waits in the backlog until a slot frees.
        using var third = SocketClient.Connect(sock);
        third.Send("echo\tthird");
        Assert.False(third.TryPeekLine(TimeSpan.FromMilliseconds(700)));
        Assert.True(dp.WaitForStderr(l => l == "warning: No free controllers to accpet socket connection", TimeSpan.FromSeconds(5)));
        second.Send("exit");
        Assert.True(second.WaitForEof(TimeSpan.FromSeconds(5)));
        third.WaitFor(l => l == "third", TimeSpan.FromSeconds(10));
        dp.Send("service.start\tctl\t-");
        dp.WaitFor(l => l == "service.state\tctl\tdown\t-\t-\t-\t-\t-\t-");
    }
}
