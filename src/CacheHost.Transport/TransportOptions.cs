using System.ComponentModel.DataAnnotations;

namespace CacheHost.Transport;

/// <summary>
/// Per-connection and per-listener limits of the shared socket transport. Every limit is explicit
/// because unbounded buffering lets one slow or hostile peer exhaust the daemon's memory
/// (the same reasoning as Kestrel's SocketTransportOptions).
/// </summary>
/// <remarks>
/// How to add a setting: add a property with a default and a [Range], document default and risk here,
/// and mention the key in README's configuration table. Roles bind this class from
/// <c>CacheHost:&lt;Role&gt;:Transport</c> through the configuration binder's source generator and check it
/// with a generated validator (the role's options property is marked [ValidateObjectMembers]), so nothing
/// else is needed. A custom ErrorMessage should contain {0} (the key path) when the class is nested.
/// </remarks>
public sealed class TransportOptions
{
    /// <summary>
    /// Bytes received but not yet consumed by the protocol before the transport stops reading from the
    /// socket (TCP backpressure). Default 1 MiB. Must exceed the largest legal protocol message, or a
    /// reader waiting for the rest of a frame would wait forever.
    /// </summary>
    [Range(4096, 64 * 1024 * 1024)]
    public int MaxReadBufferSize { get; set; } = 1024 * 1024;

    /// <summary>
    /// Bytes written by the protocol but not yet sent before the protocol's flush waits. Default 1 MiB.
    /// A peer that stops reading therefore stalls only its own connection.
    /// </summary>
    [Range(4096, 64 * 1024 * 1024)]
    public int MaxWriteBufferSize { get; set; } = 1024 * 1024;

    /// <summary>Maximum simultaneously open connections per listener; further accepts are closed at once. Default 10000.</summary>
    [Range(1, 1_000_000)]
    public int MaxConnections { get; set; } = 10_000;

    /// <summary>Listen backlog. Default 511, as the reference.</summary>
    [Range(1, 65535)]
    public int Backlog { get; set; } = 511;

    /// <summary>
    /// On shutdown, how long open connections may take to finish before they are aborted. Default 5 s,
    /// which stays under the host's shutdown timeout and systemd's TimeoutStopSec.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:10:00")]
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Disable Nagle on TCP connections (distcache 1.5.x behaviour). Default true.</summary>
    public bool NoDelay { get; set; } = true;

    /// <summary>
    /// Run protocol code directly on the socket completion instead of hopping to the thread pool.
    /// Default true: the protocols here never block, and the hop costs more than the work per request.
    /// </summary>
    public bool InlineScheduling { get; set; } = true;

    /// <summary>
    /// Connections whose options carry the same non-null name are all served by one epoll loop (the epoll engine
    /// only; the runtime's engine ignores it). Null, the default, spreads connections over the loops round-robin.
    /// For roles whose connections all feed one shared link (ClientProxy): the requests of one loop round then
    /// leave in one write, and no connection's bytes cross to another thread.
    /// </summary>
    public string? LoopAffinity { get; set; }

    /// <summary>Owner (user name or numeric uid) applied to a unix listening socket. Null keeps the default.</summary>
    public string? SocketOwner { get; set; }

    /// <summary>Group (name or numeric gid) applied to a unix listening socket. Null keeps the default.</summary>
    public string? SocketGroup { get; set; }

    /// <summary>Octal permission bits (e.g. "660") applied to a unix listening socket. Null keeps the umask default.</summary>
    [RegularExpression("^[0-7]{1,4}$", ErrorMessage = "{0} must be octal permission bits such as 660")]
    public string? SocketMode { get; set; }

    /// <summary>
    /// Rate limit for the warnings a peer can trigger once per connection or request (bad frames, refused
    /// connections): per kind the first Burst (10) are logged, then one line per Interval (1 min) with the count.
    /// </summary>
    [Microsoft.Extensions.Options.ValidateObjectMembers]
    public LogRateLimitOptions Warnings { get; set; } = new();

    /// <summary>Pipe options derived from these limits.</summary>
    internal System.IO.Pipelines.PipeOptions InputPipeOptions => new(
        pauseWriterThreshold: MaxReadBufferSize,
        resumeWriterThreshold: MaxReadBufferSize / 2,
        readerScheduler: InlineScheduling ? System.IO.Pipelines.PipeScheduler.Inline : System.IO.Pipelines.PipeScheduler.ThreadPool,
        writerScheduler: System.IO.Pipelines.PipeScheduler.Inline,
        useSynchronizationContext: false);

    internal System.IO.Pipelines.PipeOptions OutputPipeOptions => new(
        pauseWriterThreshold: MaxWriteBufferSize,
        resumeWriterThreshold: MaxWriteBufferSize / 2,
        readerScheduler: System.IO.Pipelines.PipeScheduler.Inline,
        writerScheduler: InlineScheduling ? System.IO.Pipelines.PipeScheduler.Inline : System.IO.Pipelines.PipeScheduler.ThreadPool,
        useSynchronizationContext: false);
}
