using CacheHost.Core;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.Snoop;

/// <summary>Log events of the Snoop role (EventIds 6100-6199). Frame lines keep dc_snoop's exact text (distcache §12).</summary>
internal static partial class SnoopLog
{
    [LoggerMessage(EventId = 6100, Level = LogLevel.Information, Message = "SNOOP_DBG_MSG: connection {Connection}, {Direction}, message completed (request_uid = {Uid}), total_len={TotalLength}")]
    public static partial void Frame(ILogger logger, long connection, string direction, uint uid, int totalLength);

    [LoggerMessage(EventId = 6101, Level = LogLevel.Warning, Message = "SNOOP_DBG_MSG: connection {Connection}, {Direction}, message has illegal 'data_len' ({DataLength})")]
    public static partial void IllegalDataLength(ILogger logger, long connection, string direction, int dataLength);

    // The text is dc_snoop's literal output (distcache §12), kept so log watchers written for it still match.
    [LoggerMessage(EventId = 6102, Level = LogLevel.Warning, Message = "[TODO: change me] {Direction} error")]
    public static partial void DirectionError(ILogger logger, string direction);

    [LoggerMessage(EventId = 6103, Level = LogLevel.Warning, Message = "connection {Connection}: can't connect to server {Server}: {Reason}; dropping the client")]
    public static partial void ServerConnectFailed(ILogger logger, long connection, string server, string reason);

    [LoggerMessage(EventId = 6104, Level = LogLevel.Information, Message = "snoop listening on {Listen}, forwarding to {Server}")]
    public static partial void Started(ILogger logger, string listen, string server);

    [LoggerMessage(EventId = 6105, Level = LogLevel.Debug, Message = "connection {Connection}: {Wait} timeout ({Seconds} s without progress); closing the pair")]
    public static partial void TimedOut(ILogger logger, long connection, ConnectionWait wait, double seconds);
}
