using System.Globalization;
using Mono.Unix.Native;

namespace CacheHost.Systemd.Tests;

/// <summary>sd_notify behaviour of the real program against a fake NOTIFY_SOCKET (ecosystem.md 4.5).</summary>
public sealed class NotifyTests
{
    private static readonly TimeSpan Start = TimeSpan.FromSeconds(30);

    internal static string[] ProbeArgs(string dir, params string[] extra) =>
    [
        "--CacheHost:Roles:0=Probe",
        $"--CacheHost:Probe:Listen=UNIX:{dir}/probe.sock",
        $"--CacheHost:Control:Socket={dir}/control.sock",
        .. extra,
    ];

    [Fact]
    public void Ready_is_sent_only_after_the_listener_accepts_connections()
    {
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        // A slow role start: READY=1 must wait for the bind that follows the delay.
        using var daemon = DaemonProcess.StartProbe(ProbeArgs(dir, "--CacheHost:Probe:StartDelay=00:00:01.5", "--CacheHost:Probe:Greeting=hi"),
            new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = notify.NotifySocket });

        var ready = notify.WaitForReady(Start);
        // The very first thing after READY: the role's listener answers.
        using var client = Wire.ConnectUnix($"{dir}/probe.sock");
        Assert.Equal("hi", Wire.ReadLine(client));
        Wire.Send(client, "ping\n");
        Assert.Equal("ping", Wire.ReadLine(client));

        Assert.Contains("STATUS=Probe UNIX:" + dir + "/probe.sock conns=", ready.Text);
        Assert.Contains("control UNIX:" + dir + "/control.sock", ready.Text);
        Assert.DoesNotContain(notify.All, m => m.At < ready.At && m.Text.Contains("READY=1"));
        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Start));
    }

    [Fact]
    public void A_path_notify_socket_gets_ready_status_and_stopping_and_SIGTERM_exits_zero()
    {
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.AtPath();
        using var daemon = DaemonProcess.StartProbe(ProbeArgs(dir), new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = notify.NotifySocket });

        var ready = notify.WaitForReady(Start);
        Assert.Matches("^READY=1\nSTATUS=Probe UNIX:.*probe.sock conns=0 served=0; control UNIX:.*control.sock$", ready.Text);

        daemon.Signal(Signum.SIGTERM);
        notify.WaitFor(m => m.Contains("STOPPING=1"), Start, "STOPPING=1");
        Assert.Contains(notify.All, m => m.Text == "STATUS=stopping");
        Assert.Equal(0, daemon.WaitForExit(Start));
        Assert.Contains("Stopped listening on UNIX:" + dir + "/probe.sock", daemon.Output);
    }

    [Fact]
    public void Watchdog_pings_at_half_the_timeout_and_stop_while_a_role_is_wedged()
    {
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = DaemonProcess.StartProbe(ProbeArgs(dir), new Dictionary<string, string?>
        {
            ["NOTIFY_SOCKET"] = notify.NotifySocket,
            ["WATCHDOG_USEC"] = "1000000",
        });
        notify.WaitFor(m => m.Contains("READY=1"), Start, "READY=1");
        var pings = Enumerable.Range(0, 4).Select(_ => notify.WaitFor(m => m.StartsWith("WATCHDOG=1", StringComparison.Ordinal), TimeSpan.FromSeconds(5), "WATCHDOG=1").At).ToArray();
        for (var i = 1; i < pings.Length; i++)
        {
            var gap = pings[i] - pings[i - 1];
            // Every 500 ms; a ping must land well inside the 1 s deadline.
            Assert.InRange(gap.TotalMilliseconds, 250, 999);
        }

        // A role that says it is wedged withholds the heartbeat, so systemd would restart us.
        using (var control = Wire.ConnectUnix($"{dir}/control.sock"))
        {
            Assert.Equal(["probe.health\twedged"], Wire.Exchange(control, "probe.health\twedged"));
            Thread.Sleep(700); // a ping may have been in flight
            notify.Drain(); // pings sent before the role reported itself wedged (a slow exchange under load)
            Assert.False(notify.Receives(m => m.StartsWith("WATCHDOG=1", StringComparison.Ordinal), TimeSpan.FromSeconds(1.5)));
            daemon.WaitForLine("Watchdog pings withheld: role Probe reports itself unhealthy", TimeSpan.FromSeconds(10));
            Assert.Equal(["probe.health\tok"], Wire.Exchange(control, "probe.health\tok"));
        }

        notify.WaitFor(m => m.StartsWith("WATCHDOG=1", StringComparison.Ordinal), TimeSpan.FromSeconds(5), "WATCHDOG=1 after recovery");
        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Start));
    }

    [Fact]
    public void A_watchdog_meant_for_another_pid_is_ignored()
    {
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = DaemonProcess.StartProbe(ProbeArgs(dir), new Dictionary<string, string?>
        {
            ["NOTIFY_SOCKET"] = notify.NotifySocket,
            ["WATCHDOG_USEC"] = "400000",
            ["WATCHDOG_PID"] = "1",
        });
        notify.WaitFor(m => m.Contains("READY=1"), Start, "READY=1");
        Assert.False(notify.Receives(m => m.Contains("WATCHDOG=1"), TimeSpan.FromSeconds(1.5)));
        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Start));
    }

    [Fact]
    public void SIGHUP_reloads_with_RELOADING_and_MONOTONIC_USEC_then_READY_and_applies_the_new_settings()
    {
        var dir = Wire.TempDir();
        var config = Path.Combine(dir, "appsettings.json");
        File.WriteAllText(config, """
            { "Serilog": { "MinimumLevel": { "Default": "Information" } },
              "CacheHost": { "Roles": [ "Probe" ], "Probe": { "Greeting": "before" } } }
            """);
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = DaemonProcess.StartProbe(ProbeArgs(dir), new Dictionary<string, string?>
        {
            ["NOTIFY_SOCKET"] = notify.NotifySocket,
            ["CACHEHOST_CONFIG"] = config,
        });
        notify.WaitFor(m => m.Contains("READY=1"), Start, "READY=1");
        using (var first = Wire.ConnectUnix($"{dir}/probe.sock"))
        {
            Assert.Equal("before", Wire.ReadLine(first));
        }

        File.WriteAllText(config, """
            { "Serilog": { "MinimumLevel": { "Default": "Information", "Override": { "CacheHost.Roles.Probe": "Debug" } } },
              "CacheHost": { "Roles": [ "Probe" ], "Probe": { "Greeting": "after" } } }
            """);
        // No file watching: nothing changes until the reload signal.
        Thread.Sleep(300);
        Assert.False(notify.Receives(m => m.Contains("RELOADING=1"), TimeSpan.FromMilliseconds(300)));
        var beforeMonotonic = MonotonicMicroseconds();
        daemon.Signal(Signum.SIGHUP);
        var reloading = notify.WaitFor(m => m.Contains("RELOADING=1"), Start, "RELOADING=1");
        var fields = reloading.Text.Split('\n').Select(l => l.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv[1]);
        var monotonic = long.Parse(fields["MONOTONIC_USEC"], CultureInfo.InvariantCulture);
        Assert.InRange(monotonic, beforeMonotonic, MonotonicMicroseconds());
        notify.WaitFor(m => m.StartsWith("READY=1", StringComparison.Ordinal), Start, "READY=1 after reload");

        using (var second = Wire.ConnectUnix($"{dir}/probe.sock"))
        {
            Assert.Equal("after", Wire.ReadLine(second));
        }

        // The Probe namespace now logs at Debug: its per-connection line appears (it did not before).
        var line = daemon.WaitForLine("Probe connection #", TimeSpan.FromSeconds(10));
        Assert.Contains("DBG", line);
        Assert.Single(daemon.Output.Split('\n'), l => l.Contains("Probe connection #"));
        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Start));
        Assert.Contains("STOPPING=1", string.Join("|", notify.All.Select(m => m.Text)));
    }

    [Theory]
    [InlineData(Signum.SIGINT)]
    [InlineData(Signum.SIGQUIT)]
    public void SIGINT_and_SIGQUIT_stop_like_SIGTERM(Signum signal)
    {
        // Microsoft.Extensions.Hosting.Systemd's lifetime handles SIGTERM only; HostSignals adds these two.
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = DaemonProcess.StartProbe(ProbeArgs(dir), new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = notify.NotifySocket });
        notify.WaitForReady(Start);
        daemon.Signal(signal);
        notify.WaitFor(m => m.Contains("STOPPING=1"), Start, "STOPPING=1");
        Assert.Equal(0, daemon.WaitForExit(Start));
        Assert.Contains("Received " + signal, daemon.Output);
    }

    [Fact]
    public void A_role_that_throws_makes_the_process_exit_non_zero()
    {
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = DaemonProcess.StartProbe(ProbeArgs(dir, "--CacheHost:Probe:FailAfter=00:00:00.3"),
            new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = notify.NotifySocket });
        notify.WaitFor(m => m.Contains("READY=1"), Start, "READY=1");
        var exit = daemon.WaitForExit(Start);
        Assert.NotEqual(0, exit);
        Assert.Contains("role Probe failed: probe role crashed on purpose", daemon.Output);
        notify.WaitFor(m => m.Contains("STOPPING=1"), TimeSpan.FromSeconds(5), "STOPPING=1");
    }

    [Fact]
    public void A_failed_start_exits_non_zero_without_READY()
    {
        var dir = Wire.TempDir();
        File.WriteAllText(Path.Combine(dir, "probe.sock"), "not a socket");
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = DaemonProcess.StartProbe(ProbeArgs(dir), new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = notify.NotifySocket });
        Assert.Equal(1, daemon.WaitForExit(Start));
        Assert.DoesNotContain(notify.All, m => m.Text.Contains("READY=1"));
        Assert.Contains("exists and is not a socket", daemon.Output);
    }

    private static long MonotonicMicroseconds()
    {
        // On Linux the Stopwatch timestamp is CLOCK_MONOTONIC in nanoseconds.
        Assert.Equal(1_000_000_000, System.Diagnostics.Stopwatch.Frequency);
        return System.Diagnostics.Stopwatch.GetTimestamp() / 1000;
    }
}
