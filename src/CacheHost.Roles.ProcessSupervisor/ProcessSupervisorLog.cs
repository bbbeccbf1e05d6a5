using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>Host-level log messages of the ProcessSupervisor role (EventIds 3000-3999).</summary>
internal static partial class ProcessSupervisorLog
{
    [LoggerMessage(EventId = 3000, Level = LogLevel.Information, Message = "Process supervisor started (config {ConfigFile}, socket {SocketPath})")]
    public static partial void Started(ILogger logger, string? configFile, string? socketPath);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "Process supervisor terminated with exit code {ExitCode}")]
    public static partial void Terminated(ILogger logger, int exitCode);

    [LoggerMessage(EventId = 3010, Message = "{Message}")]
    public static partial void Forward(ILogger logger, LogLevel level, string message);
}
