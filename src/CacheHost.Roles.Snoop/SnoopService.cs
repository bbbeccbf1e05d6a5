using System.Globalization;
using CacheHost.Core;
using CacheHost.Core.Control;
using CacheHost.Core.Status;
using CacheHost.Transport;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.Snoop;

/// <summary>The Snoop role (dc_snoop, distcache §12): binds the listener in StartAsync; every accepted client gets its own server connection.</summary>
public sealed class SnoopService : ListenerRoleService, IRoleStatusProvider, IControlCommandProvider
{
    private readonly SnoopOptions _options;
    private readonly SnoopConnectionHandler _handler;
    private readonly TlsContext? _tls;
    private readonly List<IDisposable> _tlsReloads = [];

    /// <summary>Created by DI.</summary>
    public SnoopService(IOptions<SnoopOptions> options, IListenerFactory listenerFactory, RoleFailures failures, TimeProvider clock, ILogger<SnoopService> logger, IConfiguration? configuration = null)
        : base(SnoopRole.Name, listenerFactory, failures, logger)
    {
        _options = options.Value;
        _handler = new SnoopConnectionHandler(_options, clock, logger);

        // Files were checked by the options validation at start; the reload signal re-reads them.
        if (_options.Tls.IsServerConfigured)
        {
            _tls = new TlsContext(_options.Tls, server: true, clock);
            Watch(_tls, "Tls");
        }

        if (_options.ServerTls.IsClientConfigured)
        {
            _handler.ServerTls = new TlsContext(_options.ServerTls, server: false, clock);
            Watch(_handler.ServerTls, "ServerTls");
        }

        void Watch(TlsContext context, string key)
        {
            if (configuration is not null)
            {
                _tlsReloads.Add(context.ReloadOn(configuration.GetReloadToken, logger, $"{SnoopOptions.SectionName}:{key}"));
            }
        }
    }

    /// <summary>Client connections accepted so far (the reference's connection numbers count from 0).</summary>
    public long Accepted => _handler.Accepted;

    /// <inheritdoc />
    public IReadOnlyCollection<string> CommandNames { get; } = ["snoop.stats"];

    /// <inheritdoc />
    public string StatusSummary() =>
        string.Create(CultureInfo.InvariantCulture, $"pairs={_handler.Open} total={_handler.Accepted} errors={_handler.DecodeErrors}");

    /// <inheritdoc />
    public ValueTask ExecuteAsync(ControlCommand command, IControlReply reply, CancellationToken cancellationToken)
    {
        WriteStats(reply);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public void WriteStateDump(IControlReply reply) => WriteStats(reply);

    /// <summary>One <c>snoop.stats&lt;TAB&gt;name&lt;TAB&gt;value</c> line per counter, in a fixed order (docs/systemd.md).</summary>
    private void WriteStats(IControlReply reply)
    {
        void Line(string name, long value) => reply.Line("snoop.stats", name, value.ToString(CultureInfo.InvariantCulture));

        Line("pairs.open", _handler.Open);
        Line("pairs.total", _handler.Accepted);
        Line("pairs.connect_failed", _handler.ConnectFailures);
        Line("frames.client_to_server", _handler.FramesToServer.Value);
        Line("frames.server_to_client", _handler.FramesToClient.Value);
        Line("bytes.client_to_server", _handler.BytesToServer.Value);
        Line("bytes.server_to_client", _handler.BytesToClient.Value);
        Line("errors.decode", _handler.DecodeErrors);
        Line("pairs.timed_out", _handler.TimedOut);
        Line("connections.tls_failed", Servers.Sum(s => s.AdapterFailures));
    }

    /// <inheritdoc />
    protected override IEnumerable<ListenerSpec> GetListeners() =>
        [new ListenerSpec(SnoopRole.Name, TransportAddress.Parse(_options.Listen!), _options.Transport, _handler, _tls?.CreateServerAdapter(_options.Transport), Key: SnoopOptions.SectionName + ":Listen")];

    /// <inheritdoc />
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        await base.StartAsync(cancellationToken).ConfigureAwait(false);

        // Only once bound: a script that waits for this line and then connects was refused when it came first
        // (issue 21 item 13).
        SnoopLog.Started(Logger, _options.Listen!, _options.Server!);
    }

    /// <inheritdoc />
    public override void Dispose()
    {
        foreach (var reload in _tlsReloads)
        {
            reload.Dispose();
        }

        base.Dispose();
    }
}
