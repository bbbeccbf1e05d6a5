using System.IO.Pipelines;
using System.Net;

namespace CacheHost.Transport;

/// <summary>
/// The seam between transport and protocol (shaped like Kestrel's ConnectionContext): a duplex pipe,
/// endpoints, a token that fires when the connection is gone, and Abort. Protocol handlers read
/// <c>Transport.Input</c>, write <c>Transport.Output</c>, and complete both when done.
/// </summary>
public abstract class TransportConnection : IAsyncDisposable
{
    private static long s_nextId;

    /// <summary>Creates a connection with a process-unique id.</summary>
    protected TransportConnection()
    {
        Id = Interlocked.Increment(ref s_nextId);
    }

    /// <summary>Process-unique connection number, for logs.</summary>
    public long Id { get; }

    /// <summary>
    /// The rate limit for warnings this peer can trigger (bad frames, bad commands): shared by every connection of
    /// one listener (its <c>Transport:Warnings</c>), so a flood of bad connections writes a bounded number of lines.
    /// Connections not accepted by a <see cref="ConnectionServer"/> allow everything.
    /// </summary>
    public LogRateLimiter Warnings { get; internal set; } = LogRateLimiter.Unlimited;

    /// <summary>The application's view of the byte streams.</summary>
    public abstract IDuplexPipe Transport { get; }

    /// <summary>Local endpoint, when the transport has one.</summary>
    public abstract EndPoint? LocalEndPoint { get; }

    /// <summary>Remote endpoint, when the transport has one.</summary>
    public abstract EndPoint? RemoteEndPoint { get; }

    /// <summary>Fires once the underlying socket is closed (by either side or by Abort).</summary>
    public abstract CancellationToken ConnectionClosed { get; }

    /// <summary>Drops the connection now, discarding unsent data. The first reason is the one logged.</summary>
    public abstract void Abort(string reason);

    /// <summary>Waits for the transport loops to finish and releases the socket.</summary>
    public abstract ValueTask DisposeAsync();

    /// <summary>
    /// For clients that are done with the connection: aborts it and releases the socket without waiting (never
    /// blocks, so it is safe on a socket loop). The returned task completes once released and never faults.
    /// </summary>
    public async Task AbortAndReleaseAsync(string reason)
    {
        Abort(reason);
        try
        {
            await DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // Nothing left to report: the owner has finished with this connection.
        }
    }

    /// <summary>Fires a ConnectionClosed source on the thread pool: callbacks registered on it must not run inside the transport.</summary>
    protected static void CancelOnThreadPool(CancellationTokenSource closed)
    {
        ThreadPool.UnsafeQueueUserWorkItem(static cts =>
        {
            try
            {
                cts.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }, closed, preferLocal: false);
    }

    /// <summary>Short text for logs: id and remote endpoint.</summary>
    public override string ToString() => $"#{Id} {RemoteEndPoint?.ToString() ?? "local"}";
}
