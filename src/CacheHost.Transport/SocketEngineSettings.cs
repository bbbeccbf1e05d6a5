namespace CacheHost.Transport;

/// <summary>
/// Process-wide socket engine settings, configured once before the first socket is created
/// (key <c>CacheHost:Transport:InlineCompletions</c>, default true).
/// </summary>
/// <remarks>
/// With inline completions the runtime's epoll threads (one per core) run socket continuations directly
/// instead of queueing them to the thread pool. Every protocol handler here is non-blocking, so the hop
/// is pure overhead: on the 1:4 ADD:GET benchmark it costs about a quarter of the throughput. The runtime
/// reads only the environment variable, and only when its socket engine first starts, so this must run
/// before any socket exists; an explicit value in the environment always wins.
/// </remarks>
public static class SocketEngineSettings
{
    /// <summary>The runtime's switch.</summary>
    public const string InlineCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>Applies the setting unless the environment already decides it.</summary>
    public static void Apply(bool inlineCompletions)
    {
        if (Environment.GetEnvironmentVariable(InlineCompletionsVariable) is null)
        {
            Environment.SetEnvironmentVariable(InlineCompletionsVariable, inlineCompletions ? "1" : "0");
        }
    }
}
