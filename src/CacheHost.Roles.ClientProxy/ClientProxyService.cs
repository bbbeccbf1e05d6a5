using System.Runtime.InteropServices;
using CacheHost.Core;
using CacheHost.Transport;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.ClientProxy;

/// <summary>
/// The ClientProxy role (dc_client, spec 10): binds the local listener in StartAsync (before any server
/// connect, as the reference's start-up order), then keeps the upstream link alive in RunAsync.
/// </summary>
public sealed class ClientProxyService : ListenerRoleService
{
    private const int SigUsr1 = 10;
    private const int SigUsr2 = 12;

    private readonly ClientProxyOptions _options;
    private readonly UpstreamLink _link;
    private readonly ClientProxyConnectionHandler _handler;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly List<PosixSignalRegistration> _signals = [];

    /// <summary>Created by DI.</summary>
    public ClientProxyService(
        IOptions<ClientProxyOptions> options,
        IListenerFactory listenerFactory,
        RoleFailures failures,
        IHostApplicationLifetime lifetime,
        ILogger<ClientProxyService> logger)
        : base(ClientProxyRole.Name, listenerFactory, failures, logger)
    {
        _options = options.Value;
        _lifetime = lifetime;
        _link = new UpstreamLink(_options, logger);
        _handler = new ClientProxyConnectionHandler(_link, _options, logger);
    }

    /// <summary>The upstream link (tests).</summary>
    internal UpstreamLink Link => _link;

    /// <summary>True while the server link is up.</summary>
    public bool IsServerConnected => _link.IsConnected;

    /// <summary>Requests forwarded to the server so far.</summary>
    public long Forwarded => _link.Forwarded;

    /// <summary>Server responses discarded because their uid was not in flight.</summary>
    public long UnknownResponses => _link.UnknownResponses;

    /// <summary>In-flight requests answered 0x02 because the server link died.</summary>
    public long DisconnectedAnswers => _link.DisconnectedAnswers;

    /// <inheritdoc />
    protected override IEnumerable<ListenerSpec> GetListeners() =>
        [new ListenerSpec(ClientProxyRole.Name, TransportAddress.Parse(_options.Listen), _options.Transport, _handler)];

    /// <inheritdoc />
    public override Task StartAsync(CancellationToken cancellationToken)
    {
        // dc_client, like dc_server, ignores SIGUSR1/2 unless -killable (spec 10.1 -> 9.1).
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

        ClientProxyLog.Started(Logger, _options.Listen, _options.Server!, _options.RetryMs, _options.IdleMs, _options.MaxInFlight, _options.EffectiveDepth);
        return base.StartAsync(cancellationToken);
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

        base.Dispose();
    }
}
