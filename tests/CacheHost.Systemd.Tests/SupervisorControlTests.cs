using System.Net.Sockets;
using Mono.Unix.Native;

namespace CacheHost.Systemd.Tests;

/// <summary>
/// The ProcessSupervisor role's daemonproxy commands on the daemon control socket, against the real program:
/// run by the supervisor exactly as a socket controller's lines (its replies and error format), its events
/// broadcast to every control client, its statedump lines inside the host's statedump.
/// </summary>
public sealed class SupervisorControlTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public void Supervisor_commands_events_and_statedump_work_over_the_control_socket()
    {
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = StartSupervisor(dir, notify);
        using var control = Wire.ConnectUnix($"{dir}/control.sock");
        using var events = Wire.ConnectUnix($"{dir}/control.sock");
        Assert.Equal([], Wire.Exchange(events)); // registered for broadcasts

        var help = Wire.Exchange(control, "help");
        foreach (var name in new[] { "service.args", "service.start", "service.signal", "fd.pipe", "signal.clear", "supervisor.log.filter", "terminate" })
        {
            Assert.Contains($"command\t{name}", help);
        }

        // Errors come in the supervisor's own wording and the connection survives.
        Assert.Equal(
        [
            "error\tNo such service, for command \"service.start\tnosuch\"",
            "error\tInvalid service name, for command \"service.args\tbad name\t/bin/tru...\"",
        ], Wire.Exchange(control, "service.start\tnosuch", "service.args\tbad name\t/bin/true"));

        // Commands with replies to the sender.
        Assert.Equal(["log.filter\tinfo"], Wire.Exchange(control, "supervisor.log.filter\tinfo"));

        // Configure and start a service; the events reach every control client.
        Wire.Exchange(control, "service.args\tsleeper\t/bin/sleep\t30", "fd.pipe\tp.r\tp.w", "service.start\tsleeper");
        WaitForLine(events, l => l == "service.args\tsleeper\t/bin/sleep\t30");
        WaitForLine(events, l => l.StartsWith("fd.state\tp.r\tpipe\t", StringComparison.Ordinal));
        WaitForLine(events, l => l.StartsWith("service.state\tsleeper\tup\t", StringComparison.Ordinal));

        // statedump: the host's lines, the role's status, then the supervisor's fd.state/service.* lines.
        var dump = Wire.Exchange(control, "statedump");
        Assert.Contains("role\tProcessSupervisor\tservices=1 up=1", dump);
        Assert.Contains(dump, l => l.StartsWith("fd.state\tnull\t", StringComparison.Ordinal));
        Assert.Contains(dump, l => l.StartsWith("fd.state\tp.w\tpipe\t", StringComparison.Ordinal));
        Assert.Contains(dump, l => l.StartsWith("service.state\tsleeper\tup\t", StringComparison.Ordinal));
        Assert.Contains("service.args\tsleeper\t/bin/sleep\t30", dump);

        // The same through `cachehost ctl`.
        var (code, stdout, _) = ControlSocketTests.RunCtl("--socket", $"{dir}/control.sock", "service.signal", "sleeper", "SIGTERM");
        Assert.Equal(0, code);
        WaitForLine(events, l => l.StartsWith("service.state\tsleeper\tdown\t", StringComparison.Ordinal) && l.Contains("\tsignal\tSIGTERM\t", StringComparison.Ordinal));
        Assert.DoesNotContain("error", stdout, StringComparison.Ordinal);
        (code, stdout, _) = ControlSocketTests.RunCtl("--socket", $"{dir}/control.sock", "fd.delete", "nosuch");
        Assert.Equal(1, code);
        Assert.StartsWith("error\t", stdout, StringComparison.Ordinal);
        Assert.EndsWith(", for command \"fd.delete\tnosuch\"\n", stdout, StringComparison.Ordinal);

        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Timeout));
    }

    [Fact]
    public void Terminate_over_the_control_socket_stops_the_daemon()
    {
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = StartSupervisor(dir, notify);
        using var control = Wire.ConnectUnix($"{dir}/control.sock");
        Wire.Send(control, "terminate\t0\n");
        Assert.Equal(0, daemon.WaitForExit(Timeout));
    }

    /// <summary>Starts the daemon with the ProcessSupervisor role and its control socket in <paramref name="dir"/>; waits for READY=1.</summary>
    internal static DaemonProcess StartSupervisor(string dir, FakeNotifySocket notify)
    {
        var daemon = DaemonProcess.Start(
        [
            "--CacheHost:Roles:0=ProcessSupervisor",
            $"--CacheHost:ProcessSupervisor:SocketPath={dir}/dp.sock",
            $"--CacheHost:Control:Socket={dir}/control.sock",
        ], new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = notify.NotifySocket });
        notify.WaitFor(m => m.Contains("READY=1"), Timeout, "READY=1");
        return daemon;
    }

    private static string WaitForLine(Socket socket, Func<string, bool> match)
    {
        var deadline = DateTime.UtcNow + Timeout;
        var seen = new List<string>();
        while (DateTime.UtcNow < deadline)
        {
            var line = Wire.ReadLine(socket);
            if (match(line))
            {
                return line;
            }

            seen.Add(line);
        }

        throw new TimeoutException("no matching event; got:\n" + string.Join('\n', seen));
    }
}
