using System.Globalization;
using System.Runtime.InteropServices;
using CacheHost.Core;
using CacheHost.Core.Control;
using CacheHost.Core.Status;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer.Storage;
using CacheHost.Transport;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.CacheServer;

/// <summary>
/// The CacheServer role: binds its listeners in StartAsync, serves distcache connections, and once per
/// StatsInterval purges expired sessions and logs dc_server's stats line (distcache §9.3).
/// </summary>
public sealed class CacheServerService : ListenerRoleService, IControlCommandProvider, IRoleStatusProvider
{
    /// <summary>The role's command on the daemon's control socket.</summary>
    public const string StatsCommand = "cache.stats";

    private const int SigUsr1 = 10;
    private const int SigUsr2 = 12;

    private readonly CacheServerOptions _options;
    private readonly ISessionStore _store;
    private readonly SessionStore? _memory;
    private readonly CacheServerStatistics _statistics;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly CacheServerConnectionHandler _handler;
    private readonly List<PosixSignalRegistration> _signals = [];
    private readonly List<IDisposable> _tlsReloads = [];
    private readonly IConfiguration? _configuration;
    private readonly TimeProvider _clock;
    private readonly Lock _snapshotGate = new();
    private bool _snapshotLoaded; // false until start got past the load: a refused start never overwrites the file

    /// <summary>Created by DI.</summary>
    public CacheServerService(
        IOptions<CacheServerOptions> options,
        ISessionStore store,
        CacheServerStatistics statistics,
        IListenerFactory listenerFactory,
        RoleFailures failures,
        IHostApplicationLifetime lifetime,
        ILogger<CacheServerService> logger,
        TimeProvider clock,
        IConfiguration? configuration = null)
        : base(CacheServerRole.Name, listenerFactory, failures, logger, clock)
    {
        _configuration = configuration;
        _clock = clock;
        _options = options.Value;
        _store = store;
        _memory = store as SessionStore;
        _statistics = statistics;
        _lifetime = lifetime;
        _handler = new CacheServerConnectionHandler(store, statistics, _options, clock, logger);
    }

    /// <summary>The in-memory session store (for stats and status lines); only when Store is Memory.</summary>
    public SessionStore Store => _memory ?? throw new InvalidOperationException($"{CacheServerOptions.SectionName}:Store is {_store.Kind}: there is no in-memory store");

    /// <summary>The store the role serves (CacheHost:CacheServer:Store).</summary>
    public ISessionStore ConfiguredStore => _store;

    /// <summary>The role's counters.</summary>
    public CacheServerStatistics Statistics => _statistics;

    /// <inheritdoc />
    protected override IEnumerable<ListenerSpec> GetListeners()
    {
        var plain = _options.Listen.Select((a, i) => new ListenerSpec(CacheServerRole.Name, TransportAddress.Parse(a), _options.Transport, _handler, Key: $"{CacheServerOptions.SectionName}:Listen:{i}"));
        return plain.Concat(_options.TlsListen.Select((tls, i) =>
        {
            var key = $"{CacheServerOptions.SectionName}:TlsListen:{i}";
            var context = new TlsContext(tls, server: true, _clock);
            if (_configuration is not null)
            {
                // New handshakes take the re-read files; established connections keep what they negotiated.
                _tlsReloads.Add(context.ReloadOn(_configuration.GetReloadToken, Logger, key));
            }

            return new ListenerSpec(CacheServerRole.Name, TransportAddress.Parse(tls.Address!), _options.Transport, _handler, context.CreateServerAdapter(_options.Transport), Key: key);
        }));
    }

    /// <inheritdoc />
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        // dc_server ignores SIGUSR1/2 unless -killable, which turns them into a clean stop (distcache §9.1).
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

        if (_memory is not null)
        {
            CacheServerLog.CacheReady(Logger, _memory.Capacity, _memory.EvictionBatch);
            LoadSnapshot(); // before the listeners: the first client already finds the sessions
        }
        else if (_store is RedisSessionStore redis)
        {
            await redis.ConnectAsync().ConfigureAwait(false); // before the listeners: the first request finds it connected
        }

        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);

        // Clean stop: the connections are closed, so this is every session the clients will ever see from us.
        WriteSnapshot(periodic: false);
    }

    /// <summary>Loads CacheServer:SnapshotPath, if set (issue 17); what a bad file does is SnapshotOnError's.</summary>
    private void LoadSnapshot()
    {
        if (_options.SnapshotPath is not { } path)
        {
            return;
        }

        if (!File.Exists(path))
        {
            CacheServerLog.SnapshotMissing(Logger, path);
            _snapshotLoaded = true;
            return;
        }

        // A temporary file left by a kill during a write is never loaded; the next write replaces it.
        try
        {
            var load = SessionSnapshot.Load(_memory!, path, _clock);
            CacheServerLog.SnapshotLoaded(Logger, load.Loaded, path, load.Expired);
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            if (_options.SnapshotOnError == SnapshotErrorMode.Refuse)
            {
                throw new IOException($"{CacheServerOptions.SectionName}:SnapshotPath: '{path}' can't be loaded ({ex.Message}); not starting (SnapshotOnError=Refuse)", ex);
            }

            CacheServerLog.SnapshotUnusable(Logger, path, ex.Message);
        }

        _snapshotLoaded = true;
    }

    /// <summary>Writes CacheServer:SnapshotPath, if set; a failure is logged and keeps the previous snapshot.</summary>
    private void WriteSnapshot(bool periodic)
    {
        if (_options.SnapshotPath is not { } path || !_snapshotLoaded || _memory is null)
        {
            return;
        }

        lock (_snapshotGate)
        {
            var started = _clock.GetTimestamp();
            try
            {
                var count = SessionSnapshot.Write(_memory, path, _clock);
                var elapsed = (long)_clock.GetElapsedTime(started).TotalMilliseconds;
                if (periodic)
                {
                    CacheServerLog.PeriodicSnapshotWritten(Logger, count, path, elapsed);
                }
                else
                {
                    CacheServerLog.SnapshotWritten(Logger, count, path, elapsed);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ObjectDisposedException)
            {
                CacheServerLog.SnapshotFailed(Logger, path, ex.Message);
            }
        }
    }

    /// <summary>Writes the snapshot every SnapshotInterval on the host's clock (issue 17, optional).</summary>
    private async Task WriteSnapshotsAsync(CancellationToken stoppingToken)
    {
        if (_options.SnapshotPath is null || _options.SnapshotInterval <= TimeSpan.Zero)
        {
            return;
        }

        try
        {
            while (true)
            {
                await Task.Delay(_options.SnapshotInterval, _clock, stoppingToken).ConfigureAwait(false);
                WriteSnapshot(periodic: true);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <inheritdoc />
    protected override Task RunAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(ReportStatsAsync(stoppingToken), WriteSnapshotsAsync(stoppingToken));

    /// <summary>Once per StatsInterval: purge what expired, and log dc_server's stats line when it changed (distcache §9.3).</summary>
    private async Task ReportStatsAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_options.StatsInterval, _clock);
        long lastOperations = 0;
        var lastSessions = 0;
        var lastProgressMark = 0L;
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                _memory?.PurgeExpired(_memory.Now);
                var operations = _statistics.TotalOperations;
                // Redis keeps the count (and other sites' keys) to itself: with it the line follows the operations.
                var sessions = _memory?.Count ?? 0;
                var changed = _memory is null ? operations != lastOperations : sessions != lastSessions;
                var progressCrossed = false;
                if (_options.Progress > 0)
                {
                    var mark = operations / _options.Progress;
                    progressCrossed = mark != lastProgressMark;
                    lastProgressMark = mark;
                }

                if (changed || progressCrossed)
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
        if (_memory is null)
        {
            return string.Create(CultureInfo.InvariantCulture, $"store={_store.Kind} ops={_statistics.TotalOperations} store_errors={_statistics.StoreErrors.Value}");
        }

        _memory.PurgeExpired(_memory.Now); // count live sessions only, not those waiting for the next purge
        return string.Create(CultureInfo.InvariantCulture, $"sessions={_memory.Count}/{_memory.Capacity} ops={_statistics.TotalOperations}");
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
    /// Every counter as (name, value), in a stable order: operations by kind, hits and misses, the in-memory store
    /// (sessions, capacity, evictions, expirations, data bytes; absent with Redis), store errors, traffic, connections, errors by kind.
    /// </summary>
    public IEnumerable<(string Name, long Value)> Snapshot()
    {
        // Sessions that expired since the last background purge (StatsInterval) are not sessions any more: a GET
        // would miss them. Purging costs only what expired.
        _memory?.PurgeExpired(_memory.Now);
        yield return ("ops.add", _statistics.Operations(DistCacheOperation.Add));
        yield return ("ops.get", _statistics.Operations(DistCacheOperation.Get));
        yield return ("ops.remove", _statistics.Operations(DistCacheOperation.Remove));
        yield return ("ops.have", _statistics.Operations(DistCacheOperation.Have));
        yield return ("ops.total", _statistics.TotalOperations);
        yield return ("hits", _statistics.Hits);
        yield return ("misses", _statistics.Misses);
        yield return ("add.rejected", _statistics.AddRejections);
        if (_memory is not null)
        {
            // Redis's own INFO reports these for the Redis store.
            yield return ("sessions", _memory.Count);
            yield return ("capacity", _memory.Capacity);
            yield return ("evictions", _memory.Evictions);
            yield return ("expirations", _memory.Expirations);
            yield return ("bytes.stored", _memory.DataBytes);
            yield return ("bytes.slabs", _memory.SlabBytes);
        }

        yield return ("store.errors", _statistics.StoreErrors.Value);
        yield return ("bytes.in", _statistics.BytesIn.Value);
        yield return ("bytes.out", _statistics.BytesOut.Value);
        yield return ("connections.open", _statistics.ConnectionsOpen.Value);
        yield return ("connections.accepted", _statistics.ConnectionsAccepted.Value);
        yield return ("connections.rejected", Servers.Sum(s => s.RejectedConnections));
        yield return ("connections.tls_failed", Servers.Sum(s => s.AdapterFailures));
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
        // Server-side latency since start (a batch read to its replies flushed), microseconds, bucket upper edge.
        var latency = _statistics.Latency;
        yield return ("latency.count", latency.Count);
        yield return ("latency.p50_us", latency.Percentile(50));
        yield return ("latency.p90_us", latency.Percentile(90));
        yield return ("latency.p99_us", latency.Percentile(99));
        yield return ("latency.p999_us", latency.Percentile(99.9));
        yield return ("latency.max_us", latency.Percentile(100));
        yield return ("gc.heap_bytes", GC.GetGCMemoryInfo().HeapSizeBytes);
        foreach (var error in Enum.GetValues<DistCacheProtocolError>())
        {
            // "None" counts ADDs shorter than their 8-byte prefix (closed like a malformed frame).
            var name = error == DistCacheProtocolError.None ? "ShortAdd" : error.ToString();
            yield return ($"errors.{char.ToLowerInvariant(name[0])}{name[1..]}", _statistics.ProtocolErrors(error));
        }
    }

    /// <summary>
    /// dc_server's stats line (distcache §9.3):
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

        foreach (var reload in _tlsReloads)
        {
            reload.Dispose();
        }

        base.Dispose();
    }
}
