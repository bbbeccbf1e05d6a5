using System.Text;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// <c>daemonproxy …</c> / <c>cachehost daemonproxy …</c>: the original's command line, start-up order and exit
/// codes (daemonproxy §2).
/// </summary>
public static class DaemonProxyProgram
{
    private const string ReadyFdVariable = "DAEMONPROXY_DAEMON_READY_FD";

    /// <summary>Runs the supervisor and returns the exit code.</summary>
    public static int Run(string[] args)
    {
        // First: a parent that left SIGCHLD ignored would make the kernel auto-reap our services (research 2.6).
        Libc.signal(17, 0);
        Libc.umask(0x3F); // 077, inherited by services (daemonproxy §2.4 step 1)

        var cl = new DaemonProxyCommandLine();
        var error = cl.Parse(args);
        var settings = cl.Settings;
        if (Libc.getpid() == 1)
        {
            // daemonproxy §2.2: PID 1 defaults.
            settings.ConfigFile ??= File.Exists("/etc/daemonproxy.conf") ? "/etc/daemonproxy.conf" : null;
            if (settings.Guard == 0)
            {
                settings.Guard = 1;
            }
        }

        if (error is not null)
        {
            return EarlyExit(settings, 2, error, stdout: null);
        }

        if (cl.Help)
        {
            return EarlyExit(settings, 1, "help", DaemonProxyCommandLine.HelpText());
        }

        if (cl.ShowVersion)
        {
            return EarlyExit(settings, 1, "version", DaemonProxyCommandLine.VersionText());
        }

        if (!settings.Interactive && settings.ConfigFile is null && settings.SocketPath is null)
        {
            return EarlyExit(settings, 2, "require -i or -c or -S", stdout: null);
        }

        var readyFd = Daemonizer.TakeReadyDescriptor(ReadyFdVariable);
        if (cl.Daemonize && readyFd < 0)
        {
            if (Libc.getpid() == 1 || settings.Interactive)
            {
                WriteStderr("warning: ignoring --daemonize (pid 1 or interactive mode)\n");
            }
            else
            {
                return Daemonize();
            }
        }

        if (readyFd >= 0)
        {
            settings.OnReady = () => Daemonizer.ReportReady(readyFd);
        }

        using var supervisor = new Supervisor(settings);
        foreach (var warning in cl.Warnings)
        {
            supervisor.Log.Warn(warning);
        }

        return supervisor.Run();
    }

    /// <summary>
    /// Exit through the fatal path: exec-on-exit when configured (daemonproxy §12), else print and exit. Like the
    /// original, the fatal message is not printed before the exec (it is in DAEMONPROXY_ERROR); it is printed
    /// when there is no exec or the exec failed.
    /// </summary>
    private static int EarlyExit(SupervisorSettings settings, int code, string message, string? stdout)
    {
        if (stdout is not null)
        {
            Libc.WriteAll(1, Encoding.UTF8.GetBytes(stdout));
        }

        if (settings.ExecArgs is not null)
        {
            var argv = settings.ExecArgs.Split('\t');
            Environment.SetEnvironmentVariable("DAEMONPROXY_EXITCODE", code.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Environment.SetEnvironmentVariable("DAEMONPROXY_ERROR", message);
            SetNativeEnv("DAEMONPROXY_EXITCODE", code.ToString(System.Globalization.CultureInfo.InvariantCulture));
            SetNativeEnv("DAEMONPROXY_ERROR", message);
            WriteStderr($"warning: daemonproxy exec_on_exit to '{argv[0]}'\n");
            Supervisor.ExecArgv(argv);
            WriteStderr($"error: exec({argv[0]}) failed: {Libc.StrError(Libc.Errno)}\n");
        }

        if (stdout is null)
        {
            WriteStderr($"fatal: {message}\n");
        }

        return code;
    }

    private static unsafe void SetNativeEnv(string name, string value)
    {
        fixed (byte* n = Libc.Z(name))
        fixed (byte* v = Libc.Z(value))
        {
            Libc.setenv(n, v, 1);
        }
    }

    private static void WriteStderr(string text) => Libc.WriteAll(2, Encoding.UTF8.GetBytes(text));

    /// <summary>
    /// <c>-D</c> (daemonproxy §2.1, §16) through the daemonize routine <c>-daemon</c> uses too: the program re-spawns itself
    /// in a new session with fds 0-2 on /dev/null and every other inherited descriptor kept at its number, waits
    /// until the child has finished start-up (so its socket exists), prints the child's PID without a newline
    /// and exits 0. A child that fails start-up makes the parent exit with its code (4 when killed by a signal).
    /// </summary>
    private static int Daemonize()
    {
        var cmdline = File.ReadAllBytes("/proc/self/cmdline");
        var argv = Encoding.Latin1.GetString(cmdline).TrimEnd('\0').Split('\0');
        var outcome = Daemonizer.Start(argv, ReadyFdVariable, environment: null, forwardOutput: false, keepDescriptors: true, workingDirectory: null);
        if (outcome.Pid == 0)
        {
            WriteStderr("fatal: daemonize: " + Libc.StrError(-outcome.ExitCode) + "\n");
            return 3;
        }

        if (outcome.Ready)
        {
            Libc.WriteAll(1, Encoding.ASCII.GetBytes(outcome.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            return 0;
        }

        return outcome.Signal == 0 ? outcome.ExitCode : 4;
    }
}
