using System.Globalization;

namespace CacheHost.Posix;

/// <summary>How a detached start ended for the parent: the child reported that it runs, or it exited first.</summary>
/// <param name="Pid">The child's pid (0 when it could not be spawned).</param>
/// <param name="Ready">True once the child reported that it has finished starting.</param>
/// <param name="ExitCode">When not ready: the child's exit status, or -errno when the spawn failed.</param>
/// <param name="Signal">When not ready: the signal that killed the child, else 0.</param>
internal readonly record struct DaemonStart(int Pid, bool Ready, int ExitCode, int Signal = 0);

/// <summary>
/// The one daemonize routine, for dc_server's <c>-daemon</c> (distcache §9.2) and daemonproxy's <c>-D</c>
/// (daemonproxy §2.1, §16). .NET cannot fork a running runtime, so instead of daemon(3) the program re-spawns
/// itself in a new session (posix_spawn, POSIX_SPAWN_SETSID) with stdin on /dev/null and a ready pipe whose
/// descriptor number travels in an environment variable. The parent waits until the child writes one byte on
/// it (<see cref="ReportReady"/>: start-up complete, sockets bound) or closes it by dying, and so can exit with
/// a meaningful status either way.
/// </summary>
internal static unsafe class Daemonizer
{
    /// <summary>Parent side: spawns <paramref name="argv"/> detached and waits for its report.</summary>
    /// <param name="argv">Program and arguments; argv[0] is looked up in PATH, then /proc/self/exe is tried.</param>
    /// <param name="readyVariable">Variable that carries the ready pipe's descriptor number to the child.</param>
    /// <param name="environment">Extra variables for the child.</param>
    /// <param name="forwardOutput">
    /// True: the child's stdout and stderr are pipes whose bytes the parent copies to its own until the child is
    /// ready (start-up errors reach the caller's terminal); false: they are /dev/null from the start.
    /// </param>
    /// <param name="keepDescriptors">
    /// True: every inherited descriptor stays open at its number (daemonproxy's fd handles); false: only 0-2 and
    /// the ready pipe reach the child, so it holds none of its parent's pipes.
    /// </param>
    /// <param name="workingDirectory">The child's cwd; null keeps the parent's.</param>
    /// <param name="started">Called with the child's pid as soon as it exists (systemd: MAINPID=).</param>
    public static DaemonStart Start(IReadOnlyList<string> argv, string readyVariable, IReadOnlyDictionary<string, string>? environment,
        bool forwardOutput, bool keepDescriptors, string? workingDirectory, Action<int>? started = null)
    {
        var ready = stackalloc int[2];
        var output = stackalloc int[2] { -1, -1 };
        var error = stackalloc int[2] { -1, -1 };
        if (Libc.pipe2(ready, Libc.O_CLOEXEC) != 0)
        {
            return new DaemonStart(0, false, -Libc.Errno);
        }

        var devNullIn = Libc.Open("/dev/null", Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        var devNullOut = Libc.Open("/dev/null", Libc.O_WRONLY | Libc.O_CLOEXEC, 0);
        if (forwardOutput && (Libc.pipe2(output, Libc.O_CLOEXEC) != 0 || Libc.pipe2(error, Libc.O_CLOEXEC) != 0))
        {
            var errno = Libc.Errno;
            CloseAll(ready[0], ready[1], output[0], output[1], error[0], error[1], devNullIn, devNullOut);
            return new DaemonStart(0, false, -errno);
        }

        var childOut = forwardOutput ? output[1] : devNullOut;
        var childErr = forwardOutput ? error[1] : devNullOut;
        // Kept descriptors stay at their numbers, so the pipe does too; otherwise it lands on fd 3, after stdio.
        var readyTarget = keepDescriptors ? ready[1] : 3;
        var env = new Dictionary<string, string>(environment ?? new Dictionary<string, string>(), StringComparer.Ordinal)
        {
            [readyVariable] = readyTarget.ToString(CultureInfo.InvariantCulture),
        };
        var args = argv.ToArray();
        var pid = SpawnDetached(args, devNullIn, childOut, childErr, ready[1], keepDescriptors, env, workingDirectory);
        if (pid < 0 && args[0] != "/proc/self/exe")
        {
            // argv[0] not found in PATH (e.g. a relative name): fall back to the running executable.
            args[0] = "/proc/self/exe";
            pid = SpawnDetached(args, devNullIn, childOut, childErr, ready[1], keepDescriptors, env, workingDirectory);
        }

        CloseAll(ready[1], output[1], error[1], devNullIn, devNullOut);
        if (pid < 0)
        {
            CloseAll(ready[0], output[0], error[0]);
            return new DaemonStart(0, false, pid);
        }

        started?.Invoke(pid);
        var isReady = WaitForReport(ready[0], output[0], error[0]);
        CloseAll(ready[0], output[0], error[0]);
        if (isReady)
        {
            return new DaemonStart(pid, true, 0);
        }

        int status;
        while (Libc.waitpid(pid, &status, 0) < 0 && Libc.Errno == Libc.EINTR)
        {
        }

        return new DaemonStart(pid, false, (status >> 8) & 0xff, status & 0x7f);
    }

    /// <summary>
    /// Child side, first thing: takes the ready descriptor named by <paramref name="readyVariable"/> (and removes
    /// the variable, so the child's own children never see it). Returns -1 when this is not a daemon child.
    /// </summary>
    public static int TakeReadyDescriptor(string readyVariable)
    {
        var text = Environment.GetEnvironmentVariable(readyVariable);
        if (text is null)
        {
            return -1;
        }

        Libc.RemoveEnvironmentVariable(readyVariable);
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var fd))
        {
            return -1;
        }

        Libc.SetCloseOnExec(fd);
        return fd;
    }

    /// <summary>Child side, once start-up is complete: tells the parent, which then exits.</summary>
    public static void ReportReady(int fd)
    {
        if (fd >= 0)
        {
            Libc.WriteAll(fd, "1"u8);
            Libc.close(fd);
        }
    }

    /// <summary>Puts stdin, stdout and stderr on /dev/null, as daemon(3) does once the parent is gone.</summary>
    public static void DetachStandardDescriptors()
    {
        var devNull = Libc.Open("/dev/null", Libc.O_RDWR, 0);
        if (devNull >= 0)
        {
            Libc.dup2(devNull, 0);
            Libc.dup2(devNull, 1);
            Libc.dup2(devNull, 2);
            if (devNull > 2)
            {
                Libc.close(devNull);
            }
        }
    }

    private static int SpawnDetached(string[] argv, int stdin, int stdout, int stderr, int readyWrite, bool keepDescriptors,
        IReadOnlyDictionary<string, string> env, string? workingDirectory) =>
        keepDescriptors
            ? ProcessSpawner.SpawnKeepingFds(argv, [(stdin, 0), (stdout, 1), (stderr, 2), (readyWrite, readyWrite)], newSession: true, env, workingDirectory)
            : ProcessSpawner.Spawn(argv, [stdin, stdout, stderr, readyWrite], newSession: true, env, workingDirectory);

    /// <summary>
    /// Copies the child's output to ours until the ready byte arrives (true) or the ready pipe closes without it
    /// (false: the child died). Output the child wrote before its report is copied before returning.
    /// </summary>
    private static bool WaitForReport(int readyRead, int outputRead, int errorRead)
    {
        var fds = stackalloc Libc.PollFd[3];
        var buffer = stackalloc byte[4096];
        var index = stackalloc int[3];
        var open = new[] { readyRead, outputRead, errorRead };
        bool? result = null;
        while (result is null || open[1] >= 0 || open[2] >= 0)
        {
            var count = 0;
            for (var i = 0; i < 3; i++)
            {
                if (open[i] >= 0 && (i > 0 || result is null))
                {
                    fds[count] = new Libc.PollFd { Fd = open[i], Events = Libc.POLLIN };
                    index[count++] = i;
                }
            }

            if (count == 0)
            {
                break;
            }

            // Once the report is in, only what is already buffered is copied (timeout 0): the child keeps its
            // output pipes until it detaches them, and the parent must not wait for that.
            var n = Libc.poll(fds, (nuint)count, result is null ? -1 : 0);
            if (n < 0 && Libc.Errno == Libc.EINTR)
            {
                continue;
            }

            if (n <= 0)
            {
                break;
            }

            for (var k = 0; k < count; k++)
            {
                if (fds[k].Revents == 0)
                {
                    continue;
                }

                var i = index[k];
                var got = Libc.read(open[i], buffer, 4096);
                if (got < 0 && Libc.Errno == Libc.EINTR)
                {
                    continue;
                }

                if (i == 0)
                {
                    result = got > 0;
                    open[0] = -1;
                }
                else if (got <= 0)
                {
                    open[i] = -1;
                }
                else
                {
                    Libc.WriteAll(i, new ReadOnlySpan<byte>(buffer, (int)got));
                }
            }
        }

        return result == true;
    }

    private static void CloseAll(params ReadOnlySpan<int> fds)
    {
        foreach (var fd in fds)
        {
            if (fd >= 0)
            {
                Libc.close(fd);
            }
        }
    }
}
