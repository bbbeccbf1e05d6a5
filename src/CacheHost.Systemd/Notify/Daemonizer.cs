using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd.Notify;

/// <summary>
/// The <c>-daemon</c> option of the original tools on a runtime that cannot fork(): the program starts
/// itself again in a new session (util-linux <c>setsid</c>, which execs in place so the PID is the child's),
/// with stdio on /dev/null, tells systemd <c>MAINPID=&lt;child&gt;</c> (accepted from the main process under
/// Type=notify / NotifyAccess=main), and the parent exits 0. The child inherits NOTIFY_SOCKET explicitly so
/// it can send READY=1 as the new main process. Without systemd it is the classic background start.
/// </summary>
public static class Daemonizer
{
    /// <summary>Starts <paramref name="childArgs"/> detached; returns the child's PID.</summary>
    public static int Detach(IReadOnlyList<string> childArgs, SystemdNotifier notifier, SystemdEnvironment environment, ILogger? logger = null)
    {
        var self = Environment.ProcessPath ?? throw new InvalidOperationException("cannot find this program's path");
        var start = new ProcessStartInfo("setsid")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = false,
            RedirectStandardError = false,
            WorkingDirectory = "/",
        };
        start.ArgumentList.Add(self);
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            // Framework-dependent "dotnet cachehost.dll": keep the dll argument.
            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "cachehost.dll"));
        }

        foreach (var arg in childArgs)
        {
            start.ArgumentList.Add(arg);
        }

        if (environment.NotifySocket is not null)
        {
            start.Environment["NOTIFY_SOCKET"] = environment.NotifySocket;
        }

        using var child = Process.Start(start) ?? throw new InvalidOperationException("could not start the background process");
        child.StandardInput.Close();
        notifier.Notify("MAINPID=" + child.Id);
        if (logger is not null)
        {
            SystemdLog.Detached(logger, child.Id);
        }

        return child.Id;
    }
}
