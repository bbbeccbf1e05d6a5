using System.Net.Sockets;
using CacheHost.Testing;
using Mono.Unix.Native;

namespace CacheHost.Systemd.Tests;

/// <summary>The systemd integration end to end with the real CacheServer role and the dc_server command line.</summary>
public sealed class CacheServerSystemdTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static void AnswersAddThenGet(string socketPath) =>
        new DistCacheVectorReplayer(() => Wire.ConnectUnix(socketPath)).Replay(DistCacheVectors.Server("add_tiny_ok"));

    [Fact]
    public void dc_server_is_ready_only_once_it_serves_and_stops_cleanly_on_SIGTERM()
    {
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = DaemonProcess.Start(["server", "-listen", $"UNIX:{dir}/dc.sock"], new Dictionary<string, string?>
        {
            ["NOTIFY_SOCKET"] = notify.NotifySocket,
            ["RUNTIME_DIRECTORY"] = dir,
        });
        var ready = notify.WaitForReady(Timeout);
        AnswersAddThenGet($"{dir}/dc.sock");
        Assert.Contains($"STATUS=CacheServer UNIX:{dir}/dc.sock conns=", ready.Text);
        // Under systemd the control socket lives in $RUNTIME_DIRECTORY.
        Assert.Contains($"control UNIX:{dir}/control.sock", ready.Text);

        daemon.Signal(Signum.SIGTERM);
        notify.WaitFor(m => m.StartsWith("STOPPING=1", StringComparison.Ordinal), Timeout, "STOPPING=1");
        Assert.Equal(0, daemon.WaitForExit(Timeout));
    }

    [Fact]
    public void dc_server_daemon_hands_the_main_pid_to_its_detached_child()
    {
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        using var parent = DaemonProcess.Start(["server", "-listen", $"UNIX:{dir}/dc.sock", "-daemon", "-pidfile", $"{dir}/dc.pid"], new Dictionary<string, string?>
        {
            ["NOTIFY_SOCKET"] = notify.NotifySocket,
            ["RUNTIME_DIRECTORY"] = dir,
        });
        var mainPid = notify.WaitFor(m => m.StartsWith("MAINPID=", StringComparison.Ordinal), Timeout, "MAINPID=");
        var childPid = int.Parse(mainPid.Text["MAINPID=".Length..], System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            Assert.NotEqual(parent.Pid, childPid);
            var ready = notify.WaitFor(m => m.Contains("READY=1"), Timeout, "READY=1 from the child");
            Assert.True(ready.At >= mainPid.At);
            Assert.Equal(0, parent.WaitForExit(Timeout));
            Assert.Equal(childPid.ToString(System.Globalization.CultureInfo.InvariantCulture), File.ReadAllText($"{dir}/dc.pid"));
            AnswersAddThenGet($"{dir}/dc.sock");

            Assert.Equal(0, Syscall.kill(childPid, Signum.SIGTERM));
            notify.WaitFor(m => m.StartsWith("STOPPING=1", StringComparison.Ordinal), Timeout, "STOPPING=1 from the child");
            var deadline = DateTime.UtcNow + Timeout;
            while (Directory.Exists($"/proc/{childPid}") && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(50);
            }

            Assert.False(Directory.Exists($"/proc/{childPid}"), "the daemon child did not stop");
        }
        finally
        {
            _ = Syscall.kill(childPid, Signum.SIGKILL);
        }
    }

    [Fact]
    public void dc_server_adopts_a_socket_activated_listener_named_CacheServer()
    {
        var dir = Wire.TempDir();
        var activated = $"{dir}/activated.sock";
        using var notify = FakeNotifySocket.Abstract();
        var start = DaemonProcess.StartInfo(
        [
            "-l", activated, "--fdname=CacheServer",
            "-E", "NOTIFY_SOCKET=" + notify.NotifySocket,
            "-E", "RUNTIME_DIRECTORY=" + dir,
            "-E", "DOTNET_ROOT=" + (Environment.GetEnvironmentVariable("DOTNET_ROOT") ?? "/usr/share/dotnet"),
            "-E", "PATH",
            .. DaemonProcess.ProgramCommand(), "server", "-listen", $"UNIX:{dir}/configured.sock",
        ], fileName: "systemd-socket-activate");
        using var daemon = DaemonProcess.Start(start);
        daemon.WaitForLine("Listening on", Timeout);
        // The first connection triggers the exec. The exchange's read budget must not include the cold start
        // of the runtime (it failed once at a CI load peak): wait for READY=1 first, then it must be answered
        // by the adopted listener.
        using (Wire.ConnectUnix(activated))
        {
            notify.WaitFor(m => m.Contains("READY=1"), TimeSpan.FromMinutes(2), "READY=1");
        }

        AnswersAddThenGet(activated);
        Assert.False(File.Exists($"{dir}/configured.sock"));
        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Timeout));
        _ = typeof(Socket);
    }
}
