using System.Text;
using static CacheHost.ProcessSupervisor.Tests.DaemonProxyProcess;

namespace CacheHost.ProcessSupervisor.Tests;

/// <summary>Statedump under output pressure, config from stdin, chdir, control sockets, controller restarts.</summary>
public sealed class MoreCommandTests
{
    [Fact]
    public void LargeStatedumpIsDeliveredCompletelyAndInOrder()
    {
        var dir = TempDir.Create();
        var sock = Path.Combine(dir, "s");
        using var dp = Start(["-S", sock], skipBanner: false);
        using var c = SocketClient.Connect(sock);
        var args = new string('a', 600);
        var burst = new StringBuilder();
        for (var i = 0; i < 400; i++)
        {
            burst.Append($"service.args\tsvc{i:D3}\t/bin/echo\t{args}\n");
        }

        c.SendRaw(burst.ToString());
        c.Sync("defined");
        c.Send("statedump");
        var dump = c.Sync("dumped").Where(l => !l.StartsWith("fd.state", StringComparison.Ordinal)).ToList();
        Assert.Equal(400 * 5, dump.Count);
        for (var i = 0; i < 400; i++)
        {
            Assert.Equal($"service.state\tsvc{i:D3}\tdown\t-\t-\t-\t-\t-\t-", dump[i * 5]);
            Assert.Equal($"service.args\tsvc{i:D3}\t/bin/echo\t{args}", dump[i * 5 + 2]);
            Assert.Equal($"service.auto_up\tsvc{i:D3}\t-", dump[i * 5 + 4]);
        }
    }

    [Fact]
    public void ConfigFromStdinChdirAndRelativePaths()
    {
        var dir = TempDir.Create();
        var sock = Path.Combine(dir, "s");
        using var dp = Start(["-c", "-", "-S", sock], skipBanner: false);
        dp.Send($"chdir\t{dir}");
        dp.Send("fd.open\trel\twrite,create\tout.txt");
        dp.Send("service.args\tw\t/bin/sh\t-c\tpwd; echo written");
        dp.Send("service.fds\tw\tnull\trel\trel");
        dp.Send("service.start\tw");
        dp.Send("chdir");
        dp.CloseInput(); // end of the config stream: the controller closes, the program keeps running
        var text = WorkedSessionTests.WaitForFile(Path.Combine(dir, "out.txt"), "written");
        Assert.Equal($"{dir}\nwritten\n", text);
        Assert.True(dp.WaitForStderr(l => l == "error:   with error: 'missing path argument'", TimeSpan.FromSeconds(5)));
        using var client = SocketClient.Connect(sock);
        client.Send("statedump");
        var dump = client.Sync();
        Assert.Contains("fd.state\trel\tfile\twrite,create\tout.txt", dump);
        Assert.Contains("fd.state\tstdin\tfile\tread\tunknown", dump); // -c - re-points stdin to /dev/null
        Assert.False(dp.Process.HasExited);
    }

    [Fact]
    public void SocketCreateAndDelete()
    {
        var dir = TempDir.Create();
        var first = Path.Combine(dir, "a.sock");
        var second = Path.Combine(dir, "b.sock");
        using var dp = Start(["-i", "-S", first]);
        dp.Send("socket.create\tbad\t" + second);
        dp.Expect($"error\tInvalid options, for command \"{("socket.create\tbad\t" + second)[..30]}...\"");
        dp.Send("socket.create\t-\t" + second);
        dp.Sync();
        Assert.False(File.Exists(first));
        using (var c = SocketClient.Connect(second))
        {
            c.Sync("on-second");
        }

        dp.Send("socket.delete");
        dp.Sync("deleted");
        Assert.False(File.Exists(second));
        Assert.True(dp.WaitForStderr(l => l == $"info: Unlinked control socket {first}", TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public void CrashingControllerIsRestartedAndResyncs()
    {
        var dir = TempDir.Create();
        var log = Path.Combine(dir, "runs.txt");
        var script = Path.Combine(dir, "ctl.sh");
        // Each run resyncs with statedump, records the dump's end marker and then crashes.
        File.WriteAllText(script, "#!/bin/sh\nprintf 'statedump\\necho\\tresynced\\n'\nwhile read -r line; do case \"$line\" in resynced) echo run >> " + log + "; exit 1;; esac; done\n");
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        using var dp = Start(["-i"]);
        dp.Send($"service.args\tctl\t{script}");
        dp.Send("service.fds\tctl\tcontrol.event\tcontrol.cmd\tstderr");
        dp.Send("service.auto_up\tctl\t1\talways");
        for (var run = 1; run <= 2; run++)
        {
            dp.WaitFor(l => l.StartsWith("service.state\tctl\tdown\t", StringComparison.Ordinal) && l.Contains("\texit\t1\t"), TimeSpan.FromSeconds(10));
        }

        var runs = WorkedSessionTests.WaitForFile(log, "run\nrun\n");
        Assert.StartsWith("run\nrun\n", runs);
        dp.Send("service.auto_up\tctl\t-");
        dp.Send("service.start\tctl\t-");
        dp.Sync();
    }
}
