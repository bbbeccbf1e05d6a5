using CacheHost.Transport.Epoll;

namespace CacheHost.Transport;

/// <summary>
/// Defers work to the end of the current round of the caller's event loop: after every other connection that
/// was ready in the same round has been served. Protocol code that coalesces output (the ClientProxy's upstream
/// writes) asks this seam instead of a particular engine; with the runtime's socket engine, or off a loop, there
/// are no rounds and nothing is deferred.
/// </summary>
public interface IBatchEndScheduler
{
    /// <summary>
    /// Queues <paramref name="action"/> for the end of the caller's round; false, and nothing queued, when the
    /// caller is not on an event loop (the caller then does the work itself).
    /// </summary>
    bool TryRunAtBatchEnd(Action<object?> action, object? state);
}

/// <summary>The transport's own <see cref="IBatchEndScheduler"/>: the epoll engine's rounds, when it runs.</summary>
public sealed class BatchEnd : IBatchEndScheduler
{
    private BatchEnd()
    {
    }

    /// <summary>The one instance.</summary>
    public static BatchEnd Scheduler { get; } = new();

    /// <inheritdoc />
    public bool TryRunAtBatchEnd(Action<object?> action, object? state) => EpollEngine.RunAtBatchEnd(action, state);
}
