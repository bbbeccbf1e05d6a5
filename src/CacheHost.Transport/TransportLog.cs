using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace CacheHost.Transport;

/// <summary>Transport log events. Event ids 1000-1099 belong to the transport; never reuse a retired id.</summary>
internal static partial class TransportLog
{
    [LoggerMessage(1000, LogLevel.Information, "Listening on {Address}", EventName = "Listening")]
    public static partial void Listening(ILogger logger, string address);

    [LoggerMessage(1001, LogLevel.Debug, "Connection #{ConnectionId} accepted from {Remote}", EventName = "ConnectionAccepted")]
    public static partial void ConnectionAccepted(ILogger logger, long connectionId, string remote);

    [LoggerMessage(1002, LogLevel.Warning, "Rejected new connection on {Address}: already at the maximum of {Max} connections", EventName = "ConnectionRejected")]
    public static partial void ConnectionRejected(ILogger logger, string address, int max);

    [LoggerMessage(1003, LogLevel.Debug, "Connection #{ConnectionId} reset by peer ({Error})", EventName = "ConnectionReset")]
    public static partial void ConnectionReset(ILogger logger, long connectionId, SocketError error);

    [LoggerMessage(1004, LogLevel.Debug, "Connection #{ConnectionId} aborted: {Reason}", EventName = "ConnectionAborted")]
    public static partial void ConnectionAborted(ILogger logger, long connectionId, string reason);

    [LoggerMessage(1005, LogLevel.Debug, "Connection #{ConnectionId} received FIN", EventName = "ConnectionReadFin")]
    public static partial void ConnectionReadFin(ILogger logger, long connectionId);

    [LoggerMessage(1006, LogLevel.Error, "Connection #{ConnectionId} failed unexpectedly", EventName = "ConnectionError")]
    public static partial void ConnectionError(ILogger logger, long connectionId, Exception exception);

    [LoggerMessage(1007, LogLevel.Debug, "Transient accept error on {Address}: {Error}", EventName = "AcceptTransient")]
    public static partial void AcceptTransient(ILogger logger, string address, SocketError error);

    [LoggerMessage(1008, LogLevel.Warning, "Accept on {Address} failed ({Error}); backing off {DelayMs} ms and accepting again", EventName = "AcceptBackoff")]
    public static partial void AcceptBackoff(ILogger logger, string address, SocketError error, int delayMs);

    [LoggerMessage(1009, LogLevel.Critical, "Fatal accept error on {Address}", EventName = "AcceptFatal")]
    public static partial void AcceptFatal(ILogger logger, string address, Exception exception);

    [LoggerMessage(1010, LogLevel.Information, "Stopped listening on {Address}", EventName = "Unbound")]
    public static partial void Unbound(ILogger logger, string address);

    [LoggerMessage(1011, LogLevel.Warning, "{Count} connection(s) on {Address} did not close within {TimeoutMs} ms and were aborted", EventName = "ConnectionsAborted")]
    public static partial void ConnectionsAborted(ILogger logger, int count, string address, double timeoutMs);

    [LoggerMessage(1012, LogLevel.Warning, "Could not {Operation} unix socket {Path}: {Error}", EventName = "SocketPermissionFailed")]
    public static partial void SocketPermissionFailed(ILogger logger, string path, string operation, string error);

    [LoggerMessage(1013, LogLevel.Error, "Connection handler for #{ConnectionId} failed", EventName = "HandlerFailed")]
    public static partial void HandlerFailed(ILogger logger, long connectionId, Exception exception);

    [LoggerMessage(1014, LogLevel.Information, "Adopted inherited listening socket fd {Fd} for {Address}", EventName = "AdoptedListener")]
    public static partial void AdoptedListener(ILogger logger, int fd, string address);

    [LoggerMessage(1015, LogLevel.Warning, "{Count} more {Kind} warnings not logged (at most {Burst} in full per {IntervalSeconds} s; Transport:Warnings)", EventName = "WarningsSuppressed")]
    public static partial void WarningsSuppressed(ILogger logger, long count, string kind, int burst, double intervalSeconds);

    [LoggerMessage(1016, LogLevel.Information, "Connection #{ConnectionId} from {Remote} closed: {Adapter} adapter failed: {Error}", EventName = "AdapterFailed")]
    public static partial void AdapterFailed(ILogger logger, long connectionId, string adapter, string remote, string error);

    [LoggerMessage(1017, LogLevel.Information, "TLS certificates of {Name} reloaded (certificate {Subject}); established connections keep theirs", EventName = "TlsReloaded")]
    public static partial void TlsReloaded(ILogger logger, string name, string subject);

    [LoggerMessage(1018, LogLevel.Error, "TLS certificates of {Name} not reloaded, the previous ones stay in use: {Error}", EventName = "TlsReloadFailed")]
    public static partial void TlsReloadFailed(ILogger logger, string name, string error);
}
