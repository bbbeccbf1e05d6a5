using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd;

/// <summary>Systemd integration and control socket log events: ids 5000-5999; never reuse a retired id.</summary>
internal static partial class SystemdLog
{
    // 5000 (NotifySocketUnsupported) is retired: NOTIFY_SOCKET is parsed by Microsoft.Extensions.Hosting.Systemd.

    [LoggerMessage(5001, LogLevel.Warning, "sd_notify {Assignment} not delivered: {Error}", EventName = "NotifyFailed")]
    public static partial void NotifyFailed(ILogger logger, string assignment, string error);

    [LoggerMessage(5002, LogLevel.Information, "Ready: {Status}", EventName = "Ready")]
    public static partial void Ready(ILogger logger, string status);

    [LoggerMessage(5003, LogLevel.Information, "Stopping ({Reason})", EventName = "Stopping")]
    public static partial void Stopping(ILogger logger, string reason);

    [LoggerMessage(5004, LogLevel.Information, "Reloading configuration ({Trigger})", EventName = "Reloading")]
    public static partial void Reloading(ILogger logger, string trigger);

    [LoggerMessage(5005, LogLevel.Information, "Configuration reloaded; log levels: {Levels}", EventName = "Reloaded")]
    public static partial void Reloaded(ILogger logger, string levels);

    [LoggerMessage(5006, LogLevel.Error, "Configuration reload failed; keeping the previous settings where possible", EventName = "ReloadFailed")]
    public static partial void ReloadFailed(ILogger logger, Exception exception);

    [LoggerMessage(5007, LogLevel.Information, "Watchdog enabled: pinging every {IntervalMs} ms (timeout {TimeoutMs} ms)", EventName = "WatchdogEnabled")]
    public static partial void WatchdogEnabled(ILogger logger, double intervalMs, double timeoutMs);

    [LoggerMessage(5008, LogLevel.Error, "Watchdog pings withheld: {Reason}", EventName = "WatchdogWithheld")]
    public static partial void WatchdogWithheld(ILogger logger, string reason);

    [LoggerMessage(5009, LogLevel.Information, "Adopted socket-activated listener fd {Fd} ('{Name}') for {Address}", EventName = "ListenFdAdopted")]
    public static partial void ListenFdAdopted(ILogger logger, int fd, string name, string address);

    [LoggerMessage(5010, LogLevel.Warning, "LISTEN_FDS ignored: {Reason}", EventName = "ListenFdsIgnored")]
    public static partial void ListenFdsIgnored(ILogger logger, string reason);

    [LoggerMessage(5011, LogLevel.Warning, "Socket-activated fd {Fd} ('{Name}') matches no listener; closing it", EventName = "ListenFdUnused")]
    public static partial void ListenFdUnused(ILogger logger, int fd, string name);

    [LoggerMessage(5012, LogLevel.Information, "Received {Signal}", EventName = "SignalReceived")]
    public static partial void SignalReceived(ILogger logger, string signal);

    [LoggerMessage(5013, LogLevel.Information, "Stopped with exit code {ExitCode}", EventName = "Stopped")]
    public static partial void Stopped(ILogger logger, int exitCode);

    [LoggerMessage(5014, LogLevel.Information, "Detached; the daemon runs as PID {Pid}", EventName = "Detached")]
    public static partial void Detached(ILogger logger, int pid);

    [LoggerMessage(5100, LogLevel.Information, "Control socket listening on {Path}", EventName = "ControlListening")]
    public static partial void ControlListening(ILogger logger, string path);

    [LoggerMessage(5101, LogLevel.Warning, "Control socket {Path} is in use by another running process; this instance runs without a control socket", EventName = "ControlInUse")]
    public static partial void ControlInUse(ILogger logger, string path);

    [LoggerMessage(5102, LogLevel.Warning, "control[{ConnectionId}] sent unknown command {Name}", EventName = "ControlUnknownCommand")]
    public static partial void ControlUnknownCommand(ILogger logger, long connectionId, string name);

    [LoggerMessage(5103, LogLevel.Warning, "control[{ConnectionId}] command exceeds buffer size", EventName = "ControlLineTooLong")]
    public static partial void ControlLineTooLong(ILogger logger, long connectionId);

    [LoggerMessage(5104, LogLevel.Warning, "control[{ConnectionId}] command failed: '{Line}': {Error}", EventName = "ControlCommandFailed")]
    public static partial void ControlCommandFailed(ILogger logger, long connectionId, string line, string error);

    [LoggerMessage(5105, LogLevel.Error, "control[{ConnectionId}] command crashed: '{Line}'", EventName = "ControlCommandCrashed")]
    public static partial void ControlCommandCrashed(ILogger logger, long connectionId, string line, Exception exception);

    [LoggerMessage(5106, LogLevel.Debug, "control[{ConnectionId}] {Line}", EventName = "ControlCommand")]
    public static partial void ControlCommand(ILogger logger, long connectionId, string line);

    [LoggerMessage(5107, LogLevel.Warning, "Control socket disabled: {Reason}", EventName = "ControlDisabled")]
    public static partial void ControlDisabled(ILogger logger, string reason);
}
