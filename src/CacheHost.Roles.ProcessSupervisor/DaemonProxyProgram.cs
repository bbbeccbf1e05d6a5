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

        var readyFd = TakeReadyFd();
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
            settings.OnReady = () =>
            {
                Libc.WriteAll(readyFd, "1"u8);
                Libc.close(readyFd);
            };
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

    private static int TakeReadyFd()
    {
        var text = Environment.GetEnvironmentVariable(ReadyFdVariable);
        if (text is null)
        {
            return -1;
        }

        Environment.SetEnvironmentVariable(ReadyFdVariable, null); // services must not see it
        if (!int.TryParse(text, out var fd))
        {
            return -1;
        }

        Libc.SetCloseOnExec(fd);
        return fd;
    }

    /// <summary>
    /// <c>-D</c> (daemonproxy §2.1, §16): .NET cannot fork, so the program re-spawns itself in a new session with fds 0-2
    /// on /dev/null, waits until the child has finished start-up (so its socket exists), prints the child's PID
    /// without a newline and exits 0. A child that fails start-up makes the parent exit with its code.
    /// </summary>
    private static unsafe int Daemonize()
    {
        var cmdline = File.ReadAllBytes("/proc/self/cmdline");
        var argv = Encoding.Latin1.GetString(cmdline).TrimEnd('\0').Split('\0');
        var pipe = stackalloc int[2];
        if (Libc.pipe2(pipe, Libc.O_CLOEXEC) != 0)
        {
            WriteStderr("fatal: pipe: " + Libc.StrError(Libc.Errno) + "\n");
            return 3;
        }

        var devNull = Libc.Open("/dev/null", Libc.O_WRONLY | Libc.O_CLOEXEC, 0);
        var devNullIn = Libc.Open("/dev/null", Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        var env = new Dictionary<string, string> { [ReadyFdVariable] = pipe[1].ToString(System.Globalization.CultureInfo.InvariantCulture) };
        var pid = ServiceSpawner.SpawnKeepingFds(argv, [(devNullIn, 0), (devNull, 1), (devNull, 2), (pipe[1], pipe[1])], newSession: true, env);
        if (pid < 0)
        {
            // argv[0] not found in PATH (e.g. a relative name): fall back to the running executable.
            argv[0] = "/proc/self/exe";
            pid = ServiceSpawner.SpawnKeepingFds(argv, [(devNullIn, 0), (devNull, 1), (devNull, 2), (pipe[1], pipe[1])], newSession: true, env);
        }

        Libc.close(pipe[1]);
        Libc.close(devNull);
        Libc.close(devNullIn);
        if (pid < 0)
        {
            WriteStderr("fatal: daemonize: " + Libc.StrError(-pid) + "\n");
            return 3;
        }

        byte ready = 0;
        var pfd = new Libc.PollFd { Fd = pipe[0], Events = Libc.POLLIN };
        Libc.poll(&pfd, 1, 60_000);
        var n = Libc.read(pipe[0], &ready, 1);
        Libc.close(pipe[0]);
        if (n == 1)
        {
            Libc.WriteAll(1, Encoding.ASCII.GetBytes(pid.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            return 0;
        }

        int status;
        Libc.waitpid(pid, &status, 0);
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 4;
    }
}
