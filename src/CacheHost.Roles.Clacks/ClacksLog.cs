using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.Clacks;

/// <summary>Clacks log messages (EventIds 4000-4999).</summary>
internal static partial class ClacksLog
{
    [LoggerMessage(4000, LogLevel.Information, "Clacks listening on {Address}")]
    public static partial void Listening(ILogger logger, string address);

    [LoggerMessage(4001, LogLevel.Debug, "Clacks connection {Cid} opened")]
    public static partial void Connected(ILogger logger, string cid);

    [LoggerMessage(4002, LogLevel.Debug, "Clacks connection {Cid} closed ({Reason})")]
    public static partial void Disconnected(ILogger logger, string cid, string reason);

    [LoggerMessage(4003, LogLevel.Warning, "Clacks login failed on {Cid}")]
    public static partial void LoginFailed(ILogger logger, string cid);

    [LoggerMessage(4004, LogLevel.Information, "TLS handshake with {Remote} failed: {Error}")]
    public static partial void TlsFailed(ILogger logger, string remote, string error);

    [LoggerMessage(4005, LogLevel.Information, "Interclacks link to master {Master} established")]
    public static partial void MasterConnected(ILogger logger, string master);

    [LoggerMessage(4006, LogLevel.Warning, "Interclacks link to master {Master} failed: {Error}; retrying in {Seconds:0.#} s")]
    public static partial void MasterFailed(ILogger logger, string master, string error, double seconds);

    [LoggerMessage(4007, LogLevel.Information, "Loaded {Count} cache entries from {File}")]
    public static partial void PersistenceLoaded(ILogger logger, int count, string file);

    [LoggerMessage(4008, LogLevel.Warning, "Persistence file {File} is not usable: {Error}")]
    public static partial void PersistenceInvalid(ILogger logger, string file, string error);

    [LoggerMessage(4009, LogLevel.Error, "Saving persistence file {File} failed")]
    public static partial void PersistenceSaveFailed(ILogger logger, string file, Exception error);

    [LoggerMessage(4010, LogLevel.Warning, "Socket command '{Command}' for {Socket} exited with {ExitCode}")]
    public static partial void SocketCommandFailed(ILogger logger, string command, string socket, int exitCode);

    [LoggerMessage(4011, LogLevel.Information, "Client sent error: {Cid}: {Text}")]
    public static partial void ClientError(ILogger logger, string cid, string text);

    [LoggerMessage(4012, LogLevel.Information, "Shutdown requested by {Cid} in {Seconds} s")]
    public static partial void ShutdownRequested(ILogger logger, string cid, double seconds);

    [LoggerMessage(4013, LogLevel.Warning, "Clacks connection {Cid}: {Problem}")]
    public static partial void BadInput(ILogger logger, string cid, string problem);

    [LoggerMessage(4014, LogLevel.Information, "Starting with an empty cache: no valid persistence file at {File}")]
    public static partial void PersistenceBlank(ILogger logger, string file);
}
