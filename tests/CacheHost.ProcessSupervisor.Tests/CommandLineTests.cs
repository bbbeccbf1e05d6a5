using System.Diagnostics;
using System.Text.RegularExpressions;

namespace CacheHost.ProcessSupervisor.Tests;

/// <summary>daemonproxy's command line (daemonproxy §2), exec-on-exit (daemonproxy §12) and the appsettings host role.</summary>
public sealed class CommandLineTests
{
    private static (int Code, string Out, string Err) RunToEnd(params string[] args)
    {
        using var p = DaemonProxyProcess.Start(args, skipBanner: false);
        p.CloseInput();
        var code = p.WaitForExit(TimeSpan.FromSeconds(20));
        return (code, p.StdoutRaw, string.Join("\n", p.Stderr));
    }

    // The drop-in name: a link called `daemonproxy` to the apphost selects this tool (argv[0]) with the
    // original's exit codes; `cachehost daemonproxy --help` is CacheHost's own interface (exit 0, issue 19).
    private static (int Code, string Out) RunDropIn(params string[] args)
    {
        var dir = TempDir.Create();
        var link = Path.Combine(dir, "daemonproxy");
        File.CreateSymbolicLink(link, Path.Combine(AppContext.BaseDirectory, "cachehost"));
        var env = new Dictionary<string, string> { ["DOTNET_ROOT"] = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(typeof(object).Assembly.Location)!)!)! };
        using var p = DaemonProxyProcess.Start(args, skipBanner: false, programName: link, env: env);
        p.CloseInput();
        var code = p.WaitForExit(TimeSpan.FromSeconds(20));
        return (code, p.StdoutRaw);
    }

    [Fact]
    public void HelpVersionAndUsageErrors()
    {
        var (code, output) = RunDropIn("--help");
        Assert.Equal(1, code);
        Assert.Contains("options", output);
        Assert.Contains("--interactive", output);
        Assert.Contains("--exit-exec", output);

        (code, output, _) = RunToEnd("--help");
        Assert.Equal(0, code);
        Assert.Contains("--interactive", output);

        (code, output, _) = RunToEnd("--version");
        Assert.Equal(1, code);
        var lines = output.Split('\n');
        Assert.Matches(new Regex("daemonproxy.*version", RegexOptions.IgnoreCase), lines[0]);
        Assert.Contains(lines, l => l.Contains("build timestamp: ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("git HEAD:", StringComparison.Ordinal));
        Assert.Contains(lines, l => Regex.IsMatch(l, "copyright.*[0-9]{4}-[0-9]{4}", RegexOptions.IgnoreCase));
        Assert.Contains("LICENSE", output);

        string err;
        (code, _, err) = RunToEnd();
        Assert.Equal(2, code);
        Assert.Contains("fatal: require -i or -c or -S", err);
        (code, _, _) = RunToEnd("-x");
        Assert.Equal(2, code);
        (code, _, _) = RunToEnd("-i", "stray");
        Assert.Equal(2, code);
        (code, _, _) = RunToEnd("-S");
        Assert.Equal(2, code);
        (code, _, _) = RunToEnd("--config=/dev/null");
        Assert.Equal(2, code);
        (code, _, err) = RunToEnd("-i", "--exit-guard", "12x");
        Assert.Equal(2, code);
        Assert.Contains("fatal: Terminate guard must be an integer", err);
        (code, _, _) = RunToEnd("-c", "/nonexistent/dp.conf");
        Assert.Equal(2, code);
        (code, _, _) = RunToEnd("-E", new string('a', 256), "-i");
        Assert.Equal(2, code);
        // The minimum pool of 7 is exactly full with the constants and fds 0-2, so no other descriptor may be inherited.
        using (var pooled = SupervisionUnderFailureTests.StartThroughShell(SupervisionUnderFailureTests.CloseInheritedFds, ["-ivv", "--fd-pool", "3x8192"], shell: "/bin/bash", skipBanner: false))
        {
            pooled.CloseInput();
            Assert.Equal(0, pooled.WaitForExit(TimeSpan.FromSeconds(20)));
            Assert.Contains("warning: At least 7 fd objects required; using minimum", pooled.Stderr);
            Assert.Contains("warning: fd obj size limited to maximum of 4096", pooled.Stderr);
        }
    }

    [Fact]
    public void EnvironmentErrorsExitThreeAndPoolsLimitObjects()
    {
        var (code, _, err) = RunToEnd("-S", "/nonexistent/dir/dp.sock");
        Assert.Equal(3, code);
        Assert.Contains("fatal: Failed to create control socket", err);

        using var dp = DaemonProxyProcess.Start(["-i", "--service-pool", "2"]);
        dp.Send("service.args\ta\t/bin/true");
        dp.Send("service.args\tb\t/bin/true");
        dp.Send("service.args\tc\t/bin/true");
        dp.Expect("service.args\ta\t/bin/true");
        dp.Expect("service.args\tb\t/bin/true");
        dp.Expect("error\tUnable to allocate new service, for command \"service.args\tc\t/bin/true\"");
        dp.Send("service.args\ta\t" + new string('x', 600));
        dp.Expect("error\tunable to set argv, for command \"service.args\ta\txxxxxxxxxxxxxxx...\"");
    }

    [Fact]
    public void InheritedDescriptorsBecomeFdNHandles()
    {
        var dir = TempDir.Create();
        var file = Path.Combine(dir, "inherited.txt");
        File.WriteAllText(file, "from-the-parent\n");
        using var dp = DaemonProxyProcess.Start(
            ["-c", $"exec 7<{file} 8>>{file}.out; exec dotnet {DaemonProxyProcess.ProgramDll} daemonproxy -i"], programName: "/bin/sh");
        dp.Send("statedump");
        var dump = dp.SyncAll("inherited");
        Assert.Contains("fd.state\tfd_7\tfile\tread\tunknown", dump);
        Assert.Contains("fd.state\tfd_8\tfile\twrite,append\tunknown", dump);
        // A service gets it only when mapped, and then it works.
        dp.Send("service.args\tcopy\tcat");
        dp.Send("service.fds\tcopy\tfd_7\tfd_8\tstderr");
        dp.Send("service.start\tcopy");
        dp.WaitFor(l => l.StartsWith("service.state\tcopy\tdown", StringComparison.Ordinal));
        Assert.Equal("from-the-parent\n", File.ReadAllText(file + ".out"));
    }

    [Fact]
    public void DaemonizeFailureReachesTheParent()
    {
        var (code, output, _) = RunToEnd("-D", "-S", "/nonexistent/dir/s");
        Assert.Equal(3, code);
        Assert.Equal("", output);
    }

    [Fact]
    public void BundledShortOptionsConsumeArgumentsInOrder()
    {
        var dir = TempDir.Create();
        var conf = Path.Combine(dir, "c.conf");
        File.WriteAllText(conf, "service.tags\tfromconf\tyes\n# comment\nservice.args\tlast\t/bin/true"); // last line has no LF: still run
        using var dp = DaemonProxyProcess.Start(["-ic", conf]);
        dp.WaitFor(l => l == "service.args\tlast\t/bin/true");
        dp.Send("statedump");
        var dump = dp.Sync("x");
        Assert.Contains("service.tags\tfromconf\tyes", dump);
        Assert.Contains("service.args\tlast\t/bin/true", dump);
        dp.Send("exit");
        Assert.Equal(0, dp.WaitForExit());
    }

    [Fact]
    public void TerminateExitCodesAndEndOfInput()
    {
        using (var dp = DaemonProxyProcess.Start(["-i"]))
        {
            dp.Send("terminate\t256");
            Assert.Equal(0, dp.WaitForExit());
        }

        using (var dp = DaemonProxyProcess.Start(["-i"]))
        {
            dp.Send("terminate\t-1");
            Assert.Equal(255, dp.WaitForExit());
        }

        using (var dp = DaemonProxyProcess.Start(["-i"]))
        {
            dp.SendRaw("echo\tunterminated"); // a final line without LF is ignored on -i
            dp.CloseInput();
            Assert.Equal(0, dp.WaitForExit());
            Assert.DoesNotContain("unterminated", dp.StdoutRaw);
        }
    }

    [Fact]
    public void ExecOnExitReplacesTheProcess()
    {
        using var dp = DaemonProxyProcess.Start(["-i", "-E", "/bin/sh\t-c\techo replaced pid=$$ code=$DAEMONPROXY_EXITCODE err=$DAEMONPROXY_ERROR"]);
        dp.Send("service.args\tkeep\tsleep\t30");
        dp.Send("service.start\tkeep");
        var up = dp.WaitFor(l => l.StartsWith("service.state\tkeep\tup", StringComparison.Ordinal)).Line;
        dp.Send("terminate\t7");
        var line = dp.WaitFor(l => l.StartsWith("replaced ", StringComparison.Ordinal)).Line;
        Assert.Equal($"replaced pid={dp.Pid} code=7 err=terminated normally", line);
        Assert.Equal(0, dp.WaitForExit());
        Assert.Contains($"warning: service 'keep' running as pid {up.Split('\t')[4]}", dp.Stderr);
        Assert.Contains("warning: daemonproxy exec_on_exit to '/bin/sh'", dp.Stderr);
        TestLibc.kill(int.Parse(up.Split('\t')[4]), 9);

        // terminate.exec_args, and the guard with exec-on-exit configured.
        using var dp2 = DaemonProxyProcess.Start(["-i", "--exit-guard", "5"]);
        dp2.Send("terminate.exec_args\t/bin/sh\t-c\techo second $DAEMONPROXY_EXITCODE");
        dp2.Send("terminate\t4\t5");
        dp2.WaitFor(l => l == "second 4");
        Assert.Equal(0, dp2.WaitForExit());

        // Bad options go through the same path (exit code 2).
        using var dp3 = DaemonProxyProcess.Start(["-E", "/bin/sh\t-c\techo bad-option $DAEMONPROXY_EXITCODE", "--bogus"], skipBanner: false);
        dp3.WaitFor(l => l == "bad-option 2");
        Assert.Equal(0, dp3.WaitForExit());
    }

    [Fact]
    public void DaemonizePrintsPidWithoutNewlineAndRunsUnderTheName()
    {
        var dir = TempDir.Create();
        var sock = Path.Combine(dir, "s");
        // The drop-in name: a link called `daemonproxy` to the apphost selects this tool (argv[0]).
        var link = Path.Combine(dir, "daemonproxy");
        File.CreateSymbolicLink(link, Path.Combine(AppContext.BaseDirectory, "cachehost"));
        var env = new Dictionary<string, string> { ["DOTNET_ROOT"] = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(typeof(object).Assembly.Location)!)!)! };
        using var parent = DaemonProxyProcess.Start(["-D", "-S", sock], skipBanner: false, programName: link, env: env);
        Assert.Equal(0, parent.WaitForExit(TimeSpan.FromSeconds(20)));
        var printed = parent.StdoutRaw;
        Assert.Matches("^[0-9]+$", printed);
        var pid = int.Parse(printed);
        try
        {
            Assert.Equal("daemonproxy", File.ReadAllText($"/proc/{pid}/comm").Trim());
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            Assert.Equal(pid.ToString(System.Globalization.CultureInfo.InvariantCulture), fields[3]); // session id = pid (setsid)
            using var client = SocketClient.Connect(sock);
            client.Send("statedump");
            var dump = client.Sync("daemonized");
            Assert.Contains("fd.state\tstdin\tfile\tread\tunknown", dump);
            client.Send("terminate\t0");
            Assert.True(client.WaitForEof(TimeSpan.FromSeconds(10)));
        }
        finally
        {
            TestLibc.kill(pid, 9);
        }
    }

    [Fact]
    public void AppsettingsHostRunsTheRoleWithConfigFileAndSocket()
    {
        var dir = TempDir.Create();
        var sock = Path.Combine(dir, "host.sock");
        var conf = Path.Combine(dir, "dp.conf");
        File.WriteAllText(conf, "service.tags\tconfigured\tby-host\n");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(DaemonProxyProcess.ProgramDll);
        psi.ArgumentList.Add("--CacheHost:Roles:0=ProcessSupervisor");
        psi.ArgumentList.Add($"--CacheHost:ProcessSupervisor:SocketPath={sock}");
        psi.ArgumentList.Add($"--CacheHost:ProcessSupervisor:ConfigFile={conf}");
        using var host = Process.Start(psi)!;
        host.BeginOutputReadLine();
        host.BeginErrorReadLine();
        try
        {
            using var client = SocketClient.Connect(sock);
            client.Send("statedump");
            Assert.Contains("service.tags\tconfigured\tby-host", client.Sync("host"));
            client.Send("terminate\t0");
            Assert.True(host.WaitForExit(15000), "host did not stop after terminate");
            Assert.Equal(0, host.ExitCode);
        }
        finally
        {
            if (!host.HasExited)
            {
                host.Kill();
            }
        }
    }
}
