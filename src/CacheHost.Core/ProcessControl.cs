using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Mono.Unix;
using Microsoft.Extensions.Options;
using Mono.Unix.Native;

namespace CacheHost.Core;

/// <summary>
/// dc_server's start-up order after listening (distcache §9.2): daemonise, write the pid file, drop privileges.
/// The pid file and the privilege drop run after every role has bound its listeners and before READY.
/// </summary>
public static class ProcessControl
{
    /// <summary>Environment variable that marks the detached child of a <c>-daemon</c> start.</summary>
    public const string DaemonChildVariable = "CACHEHOST_DAEMON_CHILD";

    /// <summary>Line the daemon child writes to its parent once it is running.</summary>
    public const string DaemonReadyLine = "CACHEHOST-READY";

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
        UnixUserInfo info;
        try
        {
            info = uint.TryParse(user, out var uid) ? new UnixUserInfo(uid) : new UnixUserInfo(user);
        }
        catch (ArgumentException)
        {
            throw new ProcessControlException($"{ProcessOptions.SectionName}:User: unknown user '{user}'");
        }

        // initgroups, not setgroups([gid]): the user's supplementary groups (e.g. ssl-cert for a key file)
        // are part of what "running as that user" means, and the README promises them.
        var gid = (uint)info.GroupId;
        if (Libc.InitGroups(info.UserName, gid) != 0)
        {
            throw new ProcessControlException($"{ProcessOptions.SectionName}:User: cannot set the groups of '{user}': {new System.ComponentModel.Win32Exception(System.Runtime.InteropServices.Marshal.GetLastPInvokeError()).Message}");
        }

        if (Syscall.setgid(gid) != 0 || Syscall.setuid((uint)info.UserId) != 0)
        {
            throw new ProcessControlException($"{ProcessOptions.SectionName}:User: cannot switch to user '{user}': {Stdlib.GetLastError()}");
        }

        logger.LogInformation("Dropped privileges to user {User} (uid {Uid}, gid {Gid})", info.UserName, info.UserId, gid);
    }

    /// <summary>
    /// Starts a detached copy of this program (new session, cwd /, stdio on /dev/null once running) and
    /// returns its exit status for the parent: 0 once the child reported that it runs, 1 if it died first.
    /// .NET cannot fork a running runtime, so "-daemon" re-executes instead of calling daemon(3).
    /// </summary>
    /// <param name="childArguments">The arguments that start the same configuration.</param>
    /// <param name="environment">Extra variables for the child (the systemd integration passes NOTIFY_SOCKET).</param>
    /// <param name="started">Called with the child's PID as soon as it exists (systemd: MAINPID=).</param>
    public static int StartDaemonChild(IReadOnlyList<string> childArguments, IReadOnlyDictionary<string, string>? environment = null, Action<int>? started = null)
    {
        var start = new ProcessStartInfo
        {
            FileName = Environment.ProcessPath!,
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            WorkingDirectory = "/",
        };
        if (Path.GetFileNameWithoutExtension(start.FileName) == "dotnet")
        {
            // AppContext.BaseDirectory, not Assembly.Location (empty in a single-file publish: IL3000 fails it).
            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "cachehost.dll"));
        }

        foreach (var argument in childArguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment[DaemonChildVariable] = "1";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        // Process.Start passes on every descriptor that lacks FD_CLOEXEC (the runtime's and the console's
        // duplicates among them). A daemon must hold none of its parent's pipes, or whoever waits for the
        // parent's output to end waits for the daemon's death. The parent exits right after, so this is safe.
        MarkInheritedDescriptorsCloseOnExec();
        using var child = Process.Start(start)!;
        started?.Invoke(child.Id);
        // The child's stdio are pipes to us, never our own stdio: .NET's Console keeps private duplicates of
        // the standard descriptors, so handing ours down would pin the caller's pipes open for the daemon's
        // whole life. Errors before the child is ready are forwarded; afterwards its console is discarded.
        child.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                Console.Error.WriteLine(e.Data);
            }
        };
        child.BeginErrorReadLine();
        child.StandardInput.Close();
        // Start-up output (log lines) passes through until the child reports that it runs.
        while (child.StandardOutput.ReadLine() is { } line)
        {
            if (line == DaemonReadyLine)
            {
                return 0;
            }

            Console.Out.WriteLine(line);
        }

        child.WaitForExit(5000);
        return 1;
    }

    private static void MarkInheritedDescriptorsCloseOnExec()
    {
        foreach (var entry in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            if (int.TryParse(Path.GetFileName(entry), out var fd) && fd > 2)
            {
                var flags = Syscall.fcntl(fd, FcntlCommand.F_GETFD);
                if (flags >= 0 && (flags & 1) == 0)
                {
                    Syscall.fcntl(fd, FcntlCommand.F_SETFD, flags | 1); // FD_CLOEXEC
                }
            }
        }
    }

    /// <summary>In the daemon child, first thing: leave the parent's session.</summary>
    public static void BeginDaemonChild()
    {
        if (Environment.GetEnvironmentVariable(DaemonChildVariable) == "1")
        {
            Syscall.setsid();
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

            if (Environment.GetEnvironmentVariable(DaemonChildVariable) == "1")
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
        Console.Out.WriteLine(DaemonReadyLine);
        Console.Out.Flush();
        Console.SetOut(TextWriter.Null);
        Console.SetError(TextWriter.Null);
        var devNull = Syscall.open("/dev/null", OpenFlags.O_RDWR);
        if (devNull >= 0)
        {
            Syscall.dup2(devNull, 0);
            Syscall.dup2(devNull, 1);
            Syscall.dup2(devNull, 2);
            if (devNull > 2)
            {
                Syscall.close(devNull);
            }
        }

        Environment.SetEnvironmentVariable(DaemonChildVariable, null);
    }
}

/// <summary>A -pidfile or -user step failed; the message names the key and the reason in one line.</summary>
public sealed class ProcessControlException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>libc calls Mono.Posix lacks.</summary>
internal static partial class Libc
{
    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "initgroups", StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8, SetLastError = true)]
    public static partial int InitGroups(string user, uint group);
}
