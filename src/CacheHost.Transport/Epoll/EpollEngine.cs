using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace CacheHost.Transport.Epoll;

/// <summary>
/// The process-wide set of epoll loops behind <see cref="EpollSocketConnection"/>. Connections are spread over
/// the loops round-robin, except that connections naming the same <see cref="TransportOptions.LoopAffinity"/>
/// share one loop. Started on first use with <see cref="SocketEngineSettings.EngineThreads"/> loops.
/// </summary>
public static class EpollEngine
{
    private static readonly Lock s_gate = new();
    private static readonly ConcurrentDictionary<string, EpollThread> s_affinities = new(StringComparer.Ordinal);
    private static EpollThread[]? s_threads;
    private static int s_next;

    /// <summary>True where the engine can run (Linux on x86-64 or arm64).</summary>
    public static bool IsSupported => OperatingSystem.IsLinux()
        && RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64;

    /// <summary>
    /// True when the caller runs on an engine loop, between two epoll_waits: work queued with
    /// <see cref="RunAtBatchEnd"/> then runs after every other ready connection of this round has been served.
    /// </summary>
    public static bool OnEngineThread => EpollThread.Current is not null;

    /// <summary>True once the loops exist (their number is fixed from then on).</summary>
    internal static bool IsStarted => Volatile.Read(ref s_threads) is not null;

    /// <summary>
    /// Defers <paramref name="action"/> to the end of the current round of the caller's loop (see
    /// <see cref="OnEngineThread"/>); false, and nothing queued, when the caller is not on a loop.
    /// </summary>
    public static bool RunAtBatchEnd(Action<object?> action, object? state)
    {
        var current = EpollThread.Current;
        if (current is null)
        {
            return false;
        }

        current.RunAtBatchEnd(action, state);
        return true;
    }

    /// <summary>The loop for a new connection: the affinity's loop (chosen round-robin on first use), or the next one.</summary>
    internal static EpollThread ThreadFor(string? affinity) =>
        affinity is null ? NextThread() : s_affinities.GetOrAdd(affinity, static _ => NextThread());

    /// <summary>Starts the loops now (their epoll and wake-up descriptors), not on the first connection.</summary>
    internal static void EnsureStarted() => _ = Volatile.Read(ref s_threads) ?? Start();

    internal static EpollThread NextThread()
    {
        var threads = Volatile.Read(ref s_threads) ?? Start();
        var index = (uint)Interlocked.Increment(ref s_next) % (uint)threads.Length;
        return threads[index];
    }

    private static EpollThread[] Start()
    {
        lock (s_gate)
        {
            if (s_threads is null)
            {
                var count = SocketEngineSettings.EngineThreads > 0 ? SocketEngineSettings.EngineThreads : Environment.ProcessorCount;
                var threads = new EpollThread[count];
                for (var i = 0; i < count; i++)
                {
                    threads[i] = new EpollThread(i);
                }

                Volatile.Write(ref s_threads, threads);
            }

            return s_threads;
        }
    }
}
