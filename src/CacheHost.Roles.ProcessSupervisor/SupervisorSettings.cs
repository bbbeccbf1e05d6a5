namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>What the command line (daemonproxy §2) or the appsettings host asks the supervisor to do.</summary>
internal sealed class SupervisorSettings
{
    public bool Interactive { get; set; }

    /// <summary>Config file (command stream read once), <c>-</c> for stdin.</summary>
    public string? ConfigFile { get; set; }

    /// <summary>Unix socket path for controller connections.</summary>
    public string? SocketPath { get; set; }

    /// <summary>Terminate-guard code; 0 = none (daemonproxy §12).</summary>
    public long Guard { get; set; }

    /// <summary>Exec-on-exit argv as one TSV string, or null.</summary>
    public string? ExecArgs { get; set; }

    /// <summary>Maximum number of named handles (<c>--fd-pool</c>); unlimited when null.</summary>
    public int? HandlePool { get; set; }

    /// <summary>Bytes per handle object; limits the stored description (daemonproxy §6.3).</summary>
    public int HandleObjectSize { get; set; } = 96;

    /// <summary>Maximum number of services (<c>--service-pool</c>); unlimited when null.</summary>
    public int? ServicePool { get; set; }

    /// <summary>Bytes per service object; limits argv + fds + tags.</summary>
    public int ServiceObjectSize { get; set; } = 512;

    /// <summary>Log filter steps: negative = more verbose (<c>-v</c>), positive = quieter (<c>-q</c>).</summary>
    public int Verbosity { get; set; }

    public bool MLockAll { get; set; }

    /// <summary>Controller slots across all kinds (daemonproxy §4.1: 2 in the original).</summary>
    public int MaxControllers { get; set; } = 2;

    /// <summary>Called once start-up is complete (daemonize readiness).</summary>
    public Action? OnReady { get; set; }

    /// <summary>Also receives every broadcast event line (with its LF), e.g. for the host control socket.</summary>
    public Action<string>? OnBroadcast { get; set; }
}

/// <summary>Ends the supervisor with an exit code through the fatal path (daemonproxy §2.3).</summary>
internal sealed class SupervisorExitException(int code, string message) : Exception(message)
{
    public int Code { get; } = code;
}
