using CacheHost.Posix;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost.Core;

/// <summary>
/// dc_server's start-up order after listening (distcache §9.2): daemonise, write the pid file, drop privileges.
/// The pid file and the privilege drop run after every role has bound its listeners and before READY.
/// </summary>
public static class ProcessControl
{
    /// <summary>
    /// Environment variable that marks the detached child of a <c>-daemon</c> start and names its ready pipe
    /// (<see cref="Daemonizer"/>, the routine daemonproxy's -D uses too).
    /// </summary>
    public const string DaemonReadyVariable = "CACHEHOST_DAEMON_READY_FD";

    /// <summary>The ready pipe of a -daemon child, -1 in any other process.</summary>
    private static int s_daemonReadyFd = -1;

    /// <summary>True in the detached child of a <c>-daemon</c> start (after <see cref="BeginDaemonChild"/>).</summary>
    public static bool IsDaemonChild => s_daemonReadyFd >= 0;

    /// <summary>
    /// Registers the -pidfile / -user steps as the last hosted service, so they run after every role has
    /// bound its listeners (distcache §9.2 order) but before the host reports that it started (READY=1, the
    /// -daemon parent's exit): a failure stops start-up with exit 1 instead of serving as root.
    /// Call after the roles are added.
    /// </summary>
    public static void AddProcessControl(this IServiceCollection services) => services.AddHostedService<ProcessControlService>();

    /// <summary>Writes the pid without a newline, atomically (write then rename).</summary>
    public static void WritePidFile(string path)
    {
        var full = Path.GetFullPath(path);
        var temporary = full + ".tmp";
        try
        {
            File.WriteAllText(temporary, Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            File.Move(temporary, full, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            var reason = ex is DirectoryNotFoundException ? $"no such directory {Path.GetDirectoryName(full)}" : ex.Message;
            throw new ProcessControlException($"{ProcessOptions.SectionName}:PidFile: cannot write '{path}': {reason}", ex);
        }
    }

    /// <summary>initgroups + setgid + setuid to <paramref name="user"/>; glibc applies them to every thread.</summary>
    public static void DropPrivileges(string user, ILogger logger)
    {
        if (!PosixFiles.TryUser(user, out var name, out var uid, out var gid))
        {
            throw new ProcessControlException($"{ProcessOptions.SectionName}:User: unknown user '{user}'");
        }

        // initgroups, not setgroups([gid]): the user's supplementary groups (e.g. ssl-cert for a key file)
        // are part of what "running as that user" means, and the README promises them.
        if (InitGroups(name, gid) != 0)
        {
            throw new ProcessControlException($"{ProcessOptions.SectionName}:User: cannot set the groups of '{user}': {Libc.StrError(Libc.Errno)}");
        }

        if (Libc.setgid(gid) != 0 || Libc.setuid(uid) != 0)
        {
            throw new ProcessControlException($"{ProcessOptions.SectionName}:User: cannot switch to user '{user}': {Libc.ErrnoName(Libc.Errno)}");
        }

        logger.LogInformation("Dropped privileges to user {User} (uid {Uid}, gid {Gid})", name, uid, gid);
    }

    /// <summary>
    /// Starts a detached copy of this program (new session, cwd /, stdio on /dev/null once running) and
    /// returns its exit status for the parent: 0 once the child reported that it runs, 1 if it died first.
    /// The child's output until then (start-up log lines, errors) passes through to the caller.
    /// </summary>
    /// <param name="childArguments">The arguments that start the same configuration.</param>
    /// <param name="environment">Extra variables for the child (the systemd integration passes NOTIFY_SOCKET).</param>
    /// <param name="started">Called with the child's PID as soon as it exists (systemd: MAINPID=).</param>
    public static int StartDaemonChild(IReadOnlyList<string> childArguments, IReadOnlyDictionary<string, string>? environment = null, Action<int>? started = null)
    {
        var argv = new List<string> { Environment.ProcessPath! };
        if (Path.GetFileNameWithoutExtension(argv[0]) == "dotnet")
        {
            // AppContext.BaseDirectory, not Assembly.Location (empty in a single-file publish: IL3000 fails it).
            argv.Add(Path.Combine(AppContext.BaseDirectory, "cachehost.dll"));
        }

        argv.AddRange(childArguments);
        Console.Out.Flush();
        // Only stdio and the ready pipe reach the child: a daemon must hold none of its parent's pipes, or
        // whoever waits for the parent's output to end waits for the daemon's death.
        var outcome = Daemonizer.Start(argv, DaemonReadyVariable, environment, forwardOutput: true, keepDescriptors: false, workingDirectory: "/", started);
        if (!outcome.Ready && outcome.Pid == 0)
        {
            Console.Error.WriteLine($"cachehost: -daemon: cannot start the daemon child: {Libc.StrError(-outcome.ExitCode)}");
        }

        return outcome.Ready ? 0 : 1;
    }

    /// <summary>In the daemon child, first thing: take the ready pipe (the spawn already left the parent's session).</summary>
    public static void BeginDaemonChild()
    {
        if (s_daemonReadyFd < 0)
        {
            s_daemonReadyFd = Daemonizer.TakeReadyDescriptor(DaemonReadyVariable);
        }
    }

    /// <summary>
    /// The pid file and privilege drop, in StartAsync of the last hosted service: an exception here fails the
    /// host's start, so nothing reports ready and the exit status is 1 (never serve with more privilege than asked).
    /// </summary>
    private sealed class ProcessControlService(IOptions<ProcessOptions> options, IHostApplicationLifetime lifetime, ILoggerFactory loggerFactory) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            var process = options.Value;
            if (!string.IsNullOrEmpty(process.PidFile))
            {
                WritePidFile(process.PidFile);
            }

            if (!string.IsNullOrEmpty(process.User))
            {
                DropPrivileges(process.User, loggerFactory.CreateLogger("CacheHost.Process"));
            }

            if (IsDaemonChild)
            {
                // The -daemon parent exits 0 only once the child has started completely.
                lifetime.ApplicationStarted.Register(CompleteDaemonStart);
            }

            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private static void CompleteDaemonStart()
    {
        // Tell the parent we run, then put stdio on /dev/null as daemon(0,0) does (the Console's own
        // duplicates of the descriptors are replaced too).
        Console.Out.Flush();
        Console.Error.Flush();
        Daemonizer.ReportReady(s_daemonReadyFd);
        Console.SetOut(TextWriter.Null);
        Console.SetError(TextWriter.Null);
        Daemonizer.DetachStandardDescriptors();
    }

    private static unsafe int InitGroups(string user, uint gid)
    {
        fixed (byte* name = Libc.Utf8Z(user))
        {
            return Libc.initgroups(name, gid);
        }
    }
}

/// <summary>A -pidfile or -user step failed; the message names the key and the reason in one line.</summary>
public sealed class ProcessControlException(string message, Exception? inner = null) : Exception(message, inner);
