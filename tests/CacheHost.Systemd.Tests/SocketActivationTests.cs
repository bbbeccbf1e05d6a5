using CacheHost.Testing;
using System.Globalization;
using System.Net;
using Mono.Unix.Native;

namespace CacheHost.Systemd.Tests;

/// <summary>Socket activation through systemd-socket-activate, which execs the daemon with LISTEN_FDS=1.</summary>
public sealed class SocketActivationTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    // The daemon is exec'd on the first connection: READY=1 includes the runtime's cold start, which took
    // longer than a socket budget at a CI load peak. Socket reads start only after READY=1.
    private static readonly TimeSpan ColdStart = TimeSpan.FromMinutes(2);

    private static DaemonProcess StartActivated(string listen, FakeNotifySocket notify, string[] daemonArgs)
    {
        string[] args =
        [
            "-l", listen, "--fdname=Probe",
            "-E", "NOTIFY_SOCKET=" + notify.NotifySocket,
            "-E", "DOTNET_ROOT=" + (Environment.GetEnvironmentVariable("DOTNET_ROOT") ?? Path.GetDirectoryName(Path.GetFullPath(Environment.ProcessPath!)) ?? "/usr/share/dotnet"),
            "-E", "PATH",
            "-E", "HOME",
            .. ProgramUnderTest.ProbeCommand, .. daemonArgs,
        ];
        var start = DaemonProcess.StartInfo(args, fileName: "systemd-socket-activate");
        return DaemonProcess.Start(start);
    }

    [Fact]
    public void A_unix_listener_is_adopted_from_LISTEN_FDS_by_name_and_made_close_on_exec()
    {
        var dir = Wire.TempDir();
        var activated = Path.Combine(dir, "activated.sock");
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = StartActivated(activated, notify,
            ["--CacheHost:Roles:0=Probe", $"--CacheHost:Probe:Listen=UNIX:{dir}/configured.sock", "--CacheHost:Probe:Greeting=adopted", $"--CacheHost:Control:Socket={dir}/control.sock"]);
        daemon.WaitForLine("Listening on", Timeout); // systemd-socket-activate's own line: it has bound

        // The first connection makes systemd-socket-activate exec the daemon; it must be served by it.
        using var client = Wire.ConnectUnix(activated);
        var ready = notify.WaitForReady(ColdStart);
        Assert.Equal("adopted", Wire.ReadLine(client));
        Wire.Send(client, "x\n");
        Assert.Equal("x", Wire.ReadLine(client));

        Assert.Contains($"STATUS=Probe UNIX:{activated} conns=", ready.Text);
        Assert.False(File.Exists($"{dir}/configured.sock"), "the configured address must not be bound when the socket was passed in");
        daemon.WaitForLine("Adopted socket-activated listener fd 3 ('Probe')", Timeout);
        AssertCloseOnExec(daemon.Pid, 3);

        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Timeout));
    }

    [Fact]
    public void A_tcp_listener_is_adopted_and_other_listeners_still_bind()
    {
        var dir = Wire.TempDir();
        var port = Wire.FreeTcpPort();
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = StartActivated($"127.0.0.1:{port}", notify,
            ["--CacheHost:Roles:0=Probe", "--CacheHost:Probe:Listen=IP:127.0.0.1:1", $"--CacheHost:Control:Socket={dir}/control.sock"]);
        daemon.WaitForLine("Listening on", Timeout);

        using var client = Wire.Connect(new IPEndPoint(IPAddress.Loopback, port));
        var ready = notify.WaitForReady(ColdStart);
        Wire.Send(client, "tcp\n");
        Assert.Equal("tcp", Wire.ReadLine(client));
        Assert.Contains($"Probe IP:127.0.0.1:{port} conns=", ready.Text);

        // The control socket was not passed in, so it was bound normally.
        using var control = Wire.ConnectUnix($"{dir}/control.sock");
        Assert.Equal(["probe.stats\tconnections\t1"], Wire.Exchange(control, "probe.stats"));
        AssertCloseOnExec(daemon.Pid, 3);
        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Timeout));
    }

    private static void AssertCloseOnExec(int pid, int fd)
    {
        var flagsLine = File.ReadAllLines($"/proc/{pid}/fdinfo/{fd}").First(l => l.StartsWith("flags:", StringComparison.Ordinal));
        var flags = Convert.ToInt32(flagsLine["flags:".Length..].Trim(), 8);
        const int oCloexec = 0x80000; // 02000000 octal
        Assert.True((flags & oCloexec) != 0, $"fd {fd} of {pid} is not close-on-exec ({flagsLine})");
        _ = CultureInfo.InvariantCulture;
    }
}
