using CacheHost.Transport;

namespace CacheHost.LoadTool;

/// <summary>
/// Transport settings of the load tool's connections (distcache and memcached alike, so comparisons stay fair).
/// The tool's workers never block, so their code resumes on the socket loop that received the reply: a hop to
/// the thread pool per response would cost more than the request itself and the tool would measure itself.
/// </summary>
internal sealed class LoadToolTransport
{
    private readonly TransportOptions[] _perThread;

    /// <summary>Spreads the clients over <paramref name="threads"/> loops (0: the engine's round-robin over all).</summary>
    public LoadToolTransport(int threads)
    {
        if (threads > 0)
        {
            // Before the first socket the engine can still be sized; in-process (tests) it may already run, and
            // then the affinities below still keep the clients on at most that many loops.
            SocketEngineSettings.PreferEngineThreads(threads);
        }

        // One affinity name per thread: every connection of client i (one per operation, or the persistent one)
        // stays on loop i mod threads.
        _perThread = threads > 0
            ? [.. Enumerable.Range(0, threads).Select(i => new TransportOptions { InlineScheduling = true, LoopAffinity = $"load tool thread {i} of {threads}" })]
            : [new TransportOptions { InlineScheduling = true }];
    }

    /// <summary>The options of client <paramref name="client"/>.</summary>
    public TransportOptions For(int client) => _perThread[client % _perThread.Length];
}
