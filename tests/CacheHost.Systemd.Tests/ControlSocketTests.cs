using System.Text;
using Mono.Unix.Native;

namespace CacheHost.Systemd.Tests;

/// <summary>The daemon-wide TSV control socket and the ctl subcommand, against the real program.</summary>
public sealed class ControlSocketTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static (DaemonProcess Daemon, FakeNotifySocket Notify, string Dir) Start(params string[] extra)
    {
        var dir = Wire.TempDir();
        var notify = FakeNotifySocket.Abstract();
        var daemon = DaemonProcess.StartProbe(NotifyTests.ProbeArgs(dir, extra), new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = notify.NotifySocket });
        notify.WaitFor(m => m.Contains("READY=1"), Timeout, "READY=1");
        return (daemon, notify, dir);
    }

    [Fact]
    public void Owner_group_and_mode_are_applied_to_the_socket()
    {
        var (daemon, notify, dir) = Start("--CacheHost:Control:Mode=640", "--CacheHost:Control:Owner=nobody", "--CacheHost:Control:Group=nogroup");
        using (daemon)
        using (notify)
        {
            Assert.Equal(0, Syscall.stat($"{dir}/control.sock", out var st));
            Assert.Equal(FilePermissions.S_IFSOCK, st.st_mode & FilePermissions.S_IFMT);
            Assert.Equal("640", Convert.ToString((int)(st.st_mode & (FilePermissions)0xFFF), 8));
            Assert.Equal(65534u, st.st_uid);
            Assert.Equal(65534u, st.st_gid);
            daemon.Signal(Signum.SIGTERM);
            Assert.Equal(0, daemon.WaitForExit(Timeout));
        }
    }

    [Fact]
    public void Bad_lines_get_error_replies_and_the_connection_survives()
    {
        var (daemon, notify, dir) = Start();
        using (daemon)
        using (notify)
        using (var control = Wire.ConnectUnix($"{dir}/control.sock"))
        {
            var replies = Wire.Exchange(control,
                "nosuch\targ",
                "# a comment",
                "",
                " \t ",
                "\techo",
                "log.filter\tloud",
                "probe.health",
                "log.filter\ta\tb\tc",
                new string('x', 2000),
                "#" + new string('y', 3000),
                "echo\tstill here");
            Assert.Equal(
            [
                "error\tUnknown command: nosuch",
                "error\tUnknown command: ",
                "error\tinvalid log level 'loud' (trace, debug, info, warning, error, fatal, none), for command \"log.filter\tloud\"",
                "error\tmissing state argument, for command \"probe.health\"",
                "error\texpected log.filter [NAMESPACE] LEVEL, for command \"log.filter\ta\tb\tc\"",
                "error\tline too long",
                "still here",
            ], replies);

            // Same connection, still in sync, commands still work.
            Assert.Equal(["probe.stats\tconnections\t0"], Wire.Exchange(control, "probe.stats"));
            daemon.WaitForLine("sent unknown command nosuch", Timeout);
        }
    }

    [Fact]
    public void Role_events_are_broadcast_to_every_control_client()
    {
        var (daemon, notify, dir) = Start();
        using (daemon)
        using (notify)
        using (var sender = Wire.ConnectUnix($"{dir}/control.sock"))
        using (var listener = Wire.ConnectUnix($"{dir}/control.sock"))
        {
            Assert.Equal([], Wire.Exchange(listener)); // registered
            Assert.Equal(["probe.event\tsvc1\tup"], Wire.Exchange(sender, "probe.broadcast\tsvc1\tup"));
            Assert.Equal("probe.event\tsvc1\tup", Wire.ReadLine(listener));
        }
    }

    [Fact]
    public void Role_commands_statedump_and_log_filter_work_live()
    {
        var (daemon, notify, dir) = Start();
        using (daemon)
        using (notify)
        using (var control = Wire.ConnectUnix($"{dir}/control.sock"))
        {
            using (Wire.ConnectUnix($"{dir}/probe.sock"))
            {
                // The probe counts the connection once it is accepted.
                var deadline = DateTime.UtcNow + Timeout;
                while (Wire.Exchange(control, "probe.stats")[0] != "probe.stats\tconnections\t1" && DateTime.UtcNow < deadline)
                {
                    Thread.Sleep(50);
                }

                var dump = Wire.Exchange(control, "statedump");
                Assert.Equal($"host\tpid\t{daemon.Pid}", dump[0]);
                Assert.Equal("host\troles\tProbe", dump[1]);
                Assert.Contains("role\tProbe\tserved=1", dump);
                Assert.Contains($"listener\tProbe\tUNIX:{dir}/probe.sock\t1", dump);
                Assert.Contains("log.filter\tInformation", dump);
                Assert.Contains("probe.stats\tconnections\t1", dump);
            }

            var help = Wire.Exchange(control, "help");
            Assert.Contains("command\tprobe.stats", help);
            Assert.Contains("command\tconfig.reload", help);

            Assert.DoesNotContain("Probe connection #", daemon.Output);
            Assert.Equal(["log.filter\tCacheHost.Roles.Probe\tDebug"], Wire.Exchange(control, "log.filter\tCacheHost.Roles.Probe\tdebug"));
            var filters = Wire.Exchange(control, "log.filter");
            Assert.Equal("log.filter\tInformation", filters[0]);
            Assert.Contains("log.filter\tCacheHost.Roles.Probe\tDebug", filters);
            using (Wire.ConnectUnix($"{dir}/probe.sock"))
            {
                daemon.WaitForLine("Probe connection #", Timeout);
            }

            // config.reload: systemd sees the same RELOADING=1 / READY=1 pair as for SIGHUP, and the
            // runtime override is replaced by the configuration's levels.
            Assert.Equal(["config.reload\tok"], Wire.Exchange(control, "config.reload"));
            notify.WaitFor(m => m.StartsWith("RELOADING=1\nMONOTONIC_USEC=", StringComparison.Ordinal), Timeout, "RELOADING=1");
            notify.WaitFor(m => m.StartsWith("READY=1", StringComparison.Ordinal), Timeout, "READY=1");
            Assert.DoesNotContain("log.filter\tCacheHost.Roles.Probe\tDebug", Wire.Exchange(control, "log.filter"));
        }
    }

    [Fact]
    public void The_ctl_subcommand_prints_replies_and_reports_errors_in_its_exit_code()
    {
        var (daemon, notify, dir) = Start();
        using (daemon)
        using (notify)
        {
            var (code, stdout, _) = RunCtl("--socket", $"{dir}/control.sock", "probe.stats");
            Assert.Equal(0, code);
            Assert.Equal("probe.stats\tconnections\t0\n", stdout);

            (code, stdout, _) = RunCtl("--socket", $"{dir}/control.sock", "log.filter", "CacheHost", "warning");
            Assert.Equal(0, code);
            Assert.Equal("log.filter\tCacheHost\tWarning\n", stdout);

            (code, stdout, _) = RunCtl("--socket", $"{dir}/control.sock", "nosuch");
            Assert.Equal(1, code);
            Assert.Equal("error\tUnknown command: nosuch\n", stdout);

            (code, _, var stderr) = RunCtl("--socket", $"{dir}/missing.sock", "statedump");
            Assert.Equal(2, code);
            Assert.Contains("missing.sock", stderr);

            // A second instance configured with the same socket must not steal it from the live one.
            using var second = DaemonProcess.StartProbe(["--CacheHost:Roles:0=Probe", $"--CacheHost:Probe:Listen=UNIX:{dir}/probe2.sock", $"--CacheHost:Control:Socket={dir}/control.sock"]);
            second.WaitForLine("is in use by another running process", Timeout);
            (code, stdout, _) = RunCtl("--socket", $"{dir}/control.sock", "statedump");
            Assert.Equal(0, code);
            Assert.Contains($"host\tpid\t{daemon.Pid}\n", stdout);
            second.Signal(Signum.SIGTERM);
            Assert.Equal(0, second.WaitForExit(Timeout));
            Assert.True(File.Exists($"{dir}/control.sock"));
        }
    }

    internal static (int Code, string Stdout, string Stderr) RunCtl(params string[] args)
    {
        var start = DaemonProcess.StartInfo(["ctl", .. args]);
        using var process = System.Diagnostics.Process.Start(start)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(30_000), "ctl did not finish");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
