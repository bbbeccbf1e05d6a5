using System.Globalization;
using System.Runtime.InteropServices;
using CacheHost.Core;
using CacheHost.Core.Control;
using CacheHost.Core.Status;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.ClientProxy;

/// <summary>
/// The ClientProxy role (dc_client, distcache §10): binds the local listener in StartAsync (before any server
/// connect, as the reference's start-up order), then keeps the upstream link alive in RunAsync.
/// </summary>
public sealed class ClientProxyService : ListenerRoleService, IRoleStatusProvider, IControlCommandProvider
{
    private const int SigUsr1 = 10;
    private const int SigUsr2 = 12;

    private readonly ClientProxyOptions _options;
    private readonly UpstreamLink _link;
    private readonly ClientProxyConnectionHandler _handler;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly List<PosixSignalRegistration> _signals = [];
    private readonly List<CancellationTokenRegistration> _shutdownRegistrations = [];
    private readonly IDisposable? _tlsReload;

    /// <summary>Created by DI.</summary>
    public ClientProxyService(
        IOptions<ClientProxyOptions> options,
        IListenerFactory listenerFactory,
        RoleFailures failures,
        IHostApplicationLifetime lifetime,
        TimeProvider clock,
        ILogger<ClientProxyService> logger,
        IConfiguration? configuration = null)
        : base(ClientProxyRole.Name, listenerFactory, failures, logger)
    {
        _options = options.Value;
        if (_options.SingleLoop)
        {
            // One name for both sides: the local connections land on the server link's loop.
            var affinity = $"{ClientProxyRole.Name} {_options.Listen}";
            _options.Transport.LoopAffinity ??= affinity;
            _options.ServerTransport.LoopAffinity ??= affinity;
        }

        _lifetime = lifetime;
        var stats = new ClientProxyStatistics();
        _link = new UpstreamLink(_options, stats, clock, logger);
        if (_options.ServerTls.IsClientConfigured)
        {
            // Files were checked by the options validation at start; the reload signal re-reads them.
            _link.Tls = new TlsContext(_options.ServerTls, server: false, clock);
            _tlsReload = configuration is null ? null : _link.Tls.ReloadOn(configuration.GetReloadToken, logger, ClientProxyOptions.SectionName + ":ServerTls");
        }

        _handler = new ClientProxyConnectionHandler(_link, _options, stats, clock, logger);
    }

    /// <summary>The effective settings (tests).</summary>
    internal ClientProxyOptions Options => _options;

    /// <summary>The upstream link (tests).</summary>
    internal UpstreamLink Link => _link;

    /// <summary>True while the server link is up.</summary>
    public bool IsServerConnected => _link.IsConnected;

    /// <summary>The role's counters (tests).</summary>
    internal ClientProxyStatistics Stats => _link.Stats;

    /// <summary>Requests forwarded to the server so far.</summary>
    public long Forwarded => _link.Stats.Forwarded.Value;

    /// <summary>Server responses discarded because their uid was not in flight.</summary>
    public long UnknownResponses => _link.Stats.UnknownResponses;

    /// <summary>In-flight requests answered 0x02 because the server link died.</summary>
    public long DisconnectedAnswers => _link.Stats.DisconnectedAnswers;

    /// <summary>The server the link is on, or null while there is none.</summary>
    public string? CurrentServer => _link.CurrentServer;

    /// <inheritdoc />
    public IReadOnlyCollection<string> CommandNames { get; } = ["proxy.stats"];

    /// <inheritdoc />
    public string StatusSummary() =>
        string.Create(CultureInfo.InvariantCulture, $"link={(_link.IsConnected ? "up" : "down")} inflight={_link.InFlight} clients={Servers.Sum(s => s.ActiveConnections)} server={_link.CurrentServer ?? "-"}");

    /// <inheritdoc />
    public ValueTask ExecuteAsync(ControlCommand command, IControlReply reply, CancellationToken cancellationToken)
    {
        WriteStats(reply);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public void WriteStateDump(IControlReply reply) => WriteStats(reply);

    /// <summary>
    /// One <c>proxy.stats&lt;TAB&gt;name&lt;TAB&gt;value</c> line per counter, in a fixed order (docs/systemd.md).
    /// Counters are cumulative since start except the gauges inflight, connections.open and link.up.
    /// </summary>
    private void WriteStats(IControlReply reply)
    {
        var stats = _link.Stats;
        void Line(string name, long value) => reply.Line("proxy.stats", name, value.ToString(CultureInfo.InvariantCulture));

        Line("requests.add", stats.Requests(DistCacheOperation.Add));
        Line("requests.get", stats.Requests(DistCacheOperation.Get));
        Line("requests.remove", stats.Requests(DistCacheOperation.Remove));
        Line("requests.have", stats.Requests(DistCacheOperation.Have));
        Line("forwarded", stats.Forwarded.Value);
        Line("replies", stats.Replies.Value);
        Line("answers.disconnected", stats.DisconnectedAnswers);
        Line("answers.empty", stats.EmptyAnswers);
        Line("inflight", _link.InFlight);
        Line("connections.open", Servers.Sum(s => s.ActiveConnections));
        Line("connections.accepted", Servers.Sum(s => s.AcceptedConnections));
        Line("connections.rejected", Servers.Sum(s => s.RejectedConnections));
        Line("connections.idle_closed", stats.IdleClosed);
        Line("link.up", _link.IsConnected ? 1 : 0);
        Line("link.connects", stats.Connects);
        Line("link.reconnects", Math.Max(0, stats.Connects - 1));
        Line("link.losses", stats.Losses);
        Line("errors.malformed_request", stats.MalformedRequests);
        Line("errors.protocol_level", stats.ProtocolLevelErrors + stats.LinkProtocolLevelErrors);
        Line("errors.add_too_short", stats.AddTooShort);
        Line("errors.malformed_response", stats.MalformedResponses);
        Line("errors.unknown_uid", stats.UnknownResponses);
        Line("errors.mismatched_response", stats.MismatchedResponses);
        Line("errors.add_refused", stats.AddRefused);
        Line("link.request_timeouts", stats.RequestTimeouts);
        Line("bytes.from_clients", stats.BytesFromClients.Value);
        Line("bytes.to_server", stats.BytesToServer.Value);
        Line("bytes.from_server", stats.BytesFromServer.Value);
        Line("link.failovers", stats.Failovers);
        Line("link.failbacks", stats.Failbacks);
    }

    /// <inheritdoc />
    protected override IEnumerable<ListenerSpec> GetListeners() =>
        [new ListenerSpec(ClientProxyRole.Name, TransportAddress.Parse(_options.Listen), _options.Transport, _handler, Key: ClientProxyOptions.SectionName + ":Listen")];

    /// <inheritdoc />
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        // dc_client, like dc_server, ignores SIGUSR1/2 unless -killable (distcache §10.1 -> 9.1).
        foreach (var (number, name) in new[] { (SigUsr1, "SIGUSR1"), (SigUsr2, "SIGUSR2") })
        {
            _signals.Add(PosixSignalRegistration.Create((PosixSignal)number, context =>
            {
                context.Cancel = true;
                if (_options.Killable)
                {
                    ClientProxyLog.KillSignal(Logger, name);
                    _lifetime.StopApplication();
                }
            }));
        }

        await base.StartAsync(cancellationToken).ConfigureAwait(false);

        // Only now: "listening" must not be logged before the listener accepts (issue 21 item 13).
        ClientProxyLog.Started(Logger, _options.Listen, string.Join(", ", _options.ServerList), _options.RetryMs, _options.IdleMs, _options.MaxInFlight, _options.EffectiveDepth);

        // Once per link, not once per local connection: when the listener asks its connections to finish,
        // every in-flight request is answered at once so their handlers end within the shutdown budget.
        foreach (var server in Servers)
        {
            _shutdownRegistrations.Add(server.Stopping.Register(static state => ((UpstreamLink)state!).AbandonInFlight(), _link));
        }
    }

    /// <inheritdoc />
    protected override async Task RunAsync(CancellationToken stoppingToken)
    {
        try
        {
            await _link.RunAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <inheritdoc />
    public override void Dispose()
    {
        foreach (var registration in _signals)
        {
            registration.Dispose();
        }

        foreach (var registration in _shutdownRegistrations)
        {
            registration.Dispose();
        }

        _tlsReload?.Dispose();

        base.Dispose();
    }
}
