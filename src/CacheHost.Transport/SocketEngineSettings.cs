namespace CacheHost.Transport;

/// <summary>
/// Process-wide socket engine settings, configured once before the first socket is created:
/// <c>CacheHost:Transport:Engine</c> (<c>epoll</c>, the default on Linux, or <c>sockets</c>),
/// <c>CacheHost:Transport:EngineThreads</c> (epoll loops; 0, the default, means one per core) and
/// <c>CacheHost:Transport:InlineCompletions</c> (for the <c>sockets</c> engine, default true).
/// </summary>
/// <remarks>
/// <c>epoll</c> serves connections on CacheHost's own event loops (<see cref="Epoll.EpollSocketConnection"/>):
/// fewer syscalls and wake-ups per request than the runtime's engine. <c>sockets</c> is the runtime's engine
/// (<see cref="SocketConnection"/>), kept for platforms without epoll and for comparison. With inline completions the runtime's epoll threads run socket continuations directly
/// instead of queueing them to the thread pool. Every protocol handler here is non-blocking, so the hop
/// is pure overhead: on the 1:4 ADD:GET benchmark it costs about a quarter of the throughput. The runtime
/// reads only the environment variable, and only when its socket engine first starts, so this must run
/// before any socket exists; an explicit value in the environment always wins.
/// </remarks>
public static class SocketEngineSettings
{
    /// <summary>The runtime's switch.</summary>
    public const string InlineCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>Environment override of the engine choice (<c>epoll</c> or <c>sockets</c>), e.g. for comparing the two.</summary>
    public const string EngineVariable = "CACHEHOST_TRANSPORT_ENGINE";

    private static volatile bool s_useEpoll = Epoll.EpollEngine.IsSupported
        && !string.Equals(Environment.GetEnvironmentVariable(EngineVariable), "sockets", StringComparison.OrdinalIgnoreCase);

    /// <summary>True when connections are served by CacheHost's epoll loops.</summary>
    public static bool UseEpoll => s_useEpoll;

    /// <summary>Number of epoll loops; 0 = one per core. Read when the first connection starts.</summary>
    public static int EngineThreads { get; private set; }

    /// <summary>Applies the setting unless the environment already decides it.</summary>
    public static void Apply(bool inlineCompletions)
    {
        if (Environment.GetEnvironmentVariable(InlineCompletionsVariable) is null)
        {
            Environment.SetEnvironmentVariable(InlineCompletionsVariable, inlineCompletions ? "1" : "0");
        }
    }

    /// <summary>
    /// Sets the number of epoll loops if they have not started yet (a client tool's <c>-threads</c>); false when
    /// it is too late and the running number stays.
    /// </summary>
    public static bool PreferEngineThreads(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        if (Epoll.EpollEngine.IsStarted)
        {
            return false;
        }

        EngineThreads = threads;
        return true;
    }

    /// <summary>
    /// Chooses the engine (<c>epoll</c> or <c>sockets</c>; null keeps the default) and the number of epoll loops.
    /// The environment variable <see cref="EngineVariable"/> wins over configuration.
    /// </summary>
    public static void ApplyEngine(string? engine, int threads)
    {
        engine = Environment.GetEnvironmentVariable(EngineVariable) ?? engine;
        if (engine is not null && !engine.Equals("epoll", StringComparison.OrdinalIgnoreCase) && !engine.Equals("sockets", StringComparison.OrdinalIgnoreCase))
        {
            throw new ArgumentException($"CacheHost:Transport:Engine must be 'epoll' or 'sockets', not '{engine}'");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        s_useEpoll = Epoll.EpollEngine.IsSupported && !"sockets".Equals(engine, StringComparison.OrdinalIgnoreCase);
        EngineThreads = threads;
    }
}
