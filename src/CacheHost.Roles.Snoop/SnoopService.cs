using CacheHost.Core;
using CacheHost.Transport;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.Snoop;

/// <summary>The Snoop role (dc_snoop, spec 12): binds the listener in StartAsync; every accepted client gets its own server connection.</summary>
public sealed class SnoopService : ListenerRoleService
{
    private readonly SnoopOptions _options;
    private readonly SnoopConnectionHandler _handler;

    /// <summary>Created by DI.</summary>
    public SnoopService(IOptions<SnoopOptions> options, IListenerFactory listenerFactory, RoleFailures failures, ILogger<SnoopService> logger)
        : base(SnoopRole.Name, listenerFactory, failures, logger)
    {
        _options = options.Value;
        _handler = new SnoopConnectionHandler(_options, logger);
    }

    /// <summary>Client connections accepted so far (the reference's connection numbers count from 0).</summary>
    public long Accepted => _handler.Accepted;

    /// <inheritdoc />
    protected override IEnumerable<ListenerSpec> GetListeners() =>
        [new ListenerSpec(SnoopRole.Name, TransportAddress.Parse(_options.Listen!), _options.Transport, _handler)];

    /// <inheritdoc />
    public override Task StartAsync(CancellationToken cancellationToken)
    {
        SnoopLog.Started(Logger, _options.Listen!, _options.Server!);
        return base.StartAsync(cancellationToken);
    }
}
