using System.Globalization;
using System.Runtime.InteropServices;
using CacheHost.Core;
using CacheHost.Core.Control;
using CacheHost.Core.Status;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer.Storage;
using CacheHost.Transport;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.CacheServer;

/// <summary>
/// The CacheServer role: binds its listeners in StartAsync, serves distcache connections, and once per
/// StatsInterval purges expired sessions and logs dc_server's stats line (spec 9.3).
/// </summary>
public sealed class CacheServerService : ListenerRoleService, IControlCommandProvider, IRoleStatusProvider
{
    /// <summary>The role's command on the daemon's control socket.</summary>
    public const string StatsCommand = "cache.stats";

    private const int SigUsr1 = 10;
    private const int SigUsr2 = 12;

    private readonly CacheServerOptions _options;
    private readonly SessionStore _store;
    private readonly CacheServerStatistics _statistics;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly CacheServerConnectionHandler _handler;
    private readonly List<PosixSignalRegistration> _signals = [];
    private readonly TimeProvider _clock;

    /// <summary>Created by DI.</summary>
    public CacheServerService(
        IOptions<CacheServerOptions> options,
        SessionStore store,
        CacheServerStatistics statistics,
        IListenerFactory listenerFactory,
        RoleFailures failures,
        IHostApplicationLifetime lifetime,
        ILogger<CacheServerService> logger,
        TimeProvider clock)
        : base(CacheServerRole.Name, listenerFactory, failures, logger, clock)
    {
        _options = options.Value;
        _store = store;
        _statistics = statistics;
        _lifetime = lifetime;
        _clock = clock;
        _handler = new CacheServerConnectionHandler(store, statistics, _options, clock, logger);
    }

    /// <summary>The session store (for stats and status lines).</summary>
    public SessionStore Store => _store;

    /// <summary>The role's counters.</summary>
    public CacheServerStatistics Statistics => _statistics;

    /// <inheritdoc />
    protected override IEnumerable<ListenerSpec> GetListeners() =>
        _options.Listen.Select((a, i) => new ListenerSpec(CacheServerRole.Name, TransportAddress.Parse(a), _options.Transport, _handler, Key: $"{CacheServerOptions.SectionName}:Listen:{i}"));

    /// <inheritdoc />
    public override Task StartAsync(CancellationToken cancellationToken)
    {
        // dc_server ignores SIGUSR1/2 unless -killable, which turns them into a clean stop (spec 9.1).
        // The registrations must stay referenced or the handlers are collected.
        foreach (var (number, name) in new[] { (SigUsr1, "SIGUSR1"), (SigUsr2, "SIGUSR2") })
        {
            _signals.Add(PosixSignalRegistration.Create((PosixSignal)number, context =>
            {
                context.Cancel = true;
                if (_options.Killable)
                {
                    CacheServerLog.KillSignal(Logger, name);
                    _lifetime.StopApplication();
                }
            }));
        }

        CacheServerLog.CacheReady(Logger, _store.Capacity, _store.EvictionBatch);
        return base.StartAsync(cancellationToken);
    }

    /// <inheritdoc />
    protected override async Task RunAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_options.StatsInterval, _clock);
        long lastOperations = 0;
        var lastSessions = 0;
        var lastProgressMark = 0L;
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                _store.PurgeExpired(_store.Now);
                var operations = _statistics.TotalOperations;
                var sessions = _store.Count;
                var progressCrossed = false;
                if (_options.Progress > 0)
                {
                    var mark = operations / _options.Progress;
                    progressCrossed = mark != lastProgressMark;
                    lastProgressMark = mark;
                }

                if (sessions != lastSessions || progressCrossed)
                {
                    var line = FormatStatsLine(operations, operations - lastOperations, sessions, sessions - lastSessions);
                    if (_options.StatsOutput == LineOutput.Stderr)
                    {
                        Console.Error.WriteLine(line); // synchronised, flushed per line, like the reference's fprintf(stderr)
                    }
                    else
                    {
                        CacheServerLog.Stats(Logger, line);
                    }

                    lastOperations = operations;
                    lastSessions = sessions;
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <inheritdoc />
    public IReadOnlyCollection<string> CommandNames { get; } = [StatsCommand];

    /// <inheritdoc />
    public string StatusSummary()
    {
        _store.PurgeExpired(_store.Now); // count live sessions only, not those waiting for the next purge
        return string.Create(CultureInfo.InvariantCulture, $"sessions={_store.Count}/{_store.Capacity} ops={_statistics.TotalOperations}");
    }

    /// <inheritdoc />
    public ValueTask ExecuteAsync(ControlCommand command, IControlReply reply, CancellationToken cancellationToken)
    {
        if (command.Arguments.Count > 0)
        {
            throw new ControlCommandException("cache.stats takes no arguments");
        }

        foreach (var (name, value) in Snapshot())
        {
            reply.Line(StatsCommand, name, value.ToString(CultureInfo.InvariantCulture));
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Every counter as (name, value), in a stable order: operations by kind, hits and misses, the store
    /// (sessions, capacity, evictions, expirations, data bytes), traffic, connections, errors by kind.
    /// </summary>
    public IEnumerable<(string Name, long Value)> Snapshot()
    {
        // Sessions that expired since the last background purge (StatsInterval) are not sessions any more: a GET
        // would miss them. Purging costs only what expired.
        _store.PurgeExpired(_store.Now);
        yield return ("ops.add", _statistics.Operations(DistCacheOperation.Add));
        yield return ("ops.get", _statistics.Operations(DistCacheOperation.Get));
        yield return ("ops.remove", _statistics.Operations(DistCacheOperation.Remove));
        yield return ("ops.have", _statistics.Operations(DistCacheOperation.Have));
        yield return ("ops.total", _statistics.TotalOperations);
        yield return ("hits", _statistics.Hits.Value);
        yield return ("misses", _statistics.Misses.Value);
        yield return ("add.rejected", _statistics.AddRejections.Value);
        yield return ("sessions", _store.Count);
        yield return ("capacity", _store.Capacity);
        yield return ("evictions", _store.Evictions);
        yield return ("expirations", _store.Expirations);
        yield return ("bytes.stored", _store.DataBytes);
        yield return ("bytes.slabs", _store.SlabBytes);
        yield return ("bytes.in", _statistics.BytesIn.Value);
        yield return ("bytes.out", _statistics.BytesOut.Value);
        yield return ("connections.open", _statistics.ConnectionsOpen.Value);
        yield return ("connections.accepted", _statistics.ConnectionsAccepted.Value);
        yield return ("connections.rejected", Servers.Sum(s => s.RejectedConnections));
        yield return ("connections.timed_out", _statistics.ConnectionsTimedOut.Value);
        yield return ("errors.total", _statistics.TotalProtocolErrors);
        // The whole process's garbage collections and managed allocation (the store itself allocates nothing
        // managed per request), and collections per million requests since start: issue 13's measure.
        var operations = _statistics.TotalOperations;
        for (var generation = 0; generation <= 2; generation++)
        {
            var collections = GC.CollectionCount(generation);
            yield return ($"gc.gen{generation}", collections);
            yield return ($"gc.gen{generation}.per_million_ops", operations == 0 ? 0 : collections * 1_000_000 / operations);
        }

        yield return ("gc.allocated_bytes", GC.GetTotalAllocatedBytes());
        yield return ("gc.heap_bytes", GC.GetGCMemoryInfo().HeapSizeBytes);
        foreach (var error in Enum.GetValues<DistCacheProtocolError>())
        {
            // "None" counts ADDs shorter than their 8-byte prefix (closed like a malformed frame).
            var name = error == DistCacheProtocolError.None ? "ShortAdd" : error.ToString();
            yield return ($"errors.{char.ToLowerInvariant(name[0])}{name[1..]}", _statistics.ProtocolErrors(error));
        }
    }

    /// <summary>
    /// dc_server's stats line (spec 9.3):
    /// <c>Info, total operations = %7lu  (+ %5lu), total sessions = %5u  (%c%3u)</c>.
    /// </summary>
    public static string FormatStatsLine(long operations, long operationsDelta, int sessions, int sessionsDelta)
    {
        var sign = sessionsDelta > 0 ? '+' : sessionsDelta < 0 ? '-' : '=';
        return string.Create(CultureInfo.InvariantCulture,
            $"Info, total operations = {operations,7}  (+ {operationsDelta,5}), total sessions = {sessions,5}  ({sign}{Math.Abs(sessionsDelta),3})");
    }

    /// <inheritdoc />
    public override void Dispose()
    {
        foreach (var registration in _signals)
        {
            registration.Dispose();
        }

        base.Dispose();
    }
}
