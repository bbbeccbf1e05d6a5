using System.Buffers;
using System.Globalization;
using System.Text;
using CacheHost.Core;
using CacheHost.Core.Control;
using CacheHost.Core.Status;
using CacheHost.Transport;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.Probe;

/// <summary>Registers the Probe role (a test fixture: tests/CacheHost.ProbeHost adds it; the shipped RoleCatalog does not).</summary>
public static class ProbeRole
{
    /// <summary>Role name in CacheHost:Roles.</summary>
    public const string Name = "Probe";

    /// <summary>Binds <c>CacheHost:Probe</c> and registers the role.</summary>
    public static IHostApplicationBuilder AddProbeRole(this IHostApplicationBuilder builder)
    {
        builder.Services.AddValidatedOptions<ProbeOptions, ProbeOptionsValidator>(ProbeOptions.SectionName, static (section, o) => section.Bind(o, RoleOptionsExtensions.RejectUnknownKeys), o =>
            TransportAddress.TryParse(o.Listen, out _, out var error) ? [] : [$"Listen: {error}"]);
        builder.Services.AddHostedService<ProbeService>();
        return builder;
    }
}

/// <summary>
/// Echoes every line back, after an optional greeting. Implements the status and control-command seams
/// (<c>probe.stats</c>, <c>probe.health ok|wedged</c>, <c>probe.broadcast ARGS…</c> → <c>probe.event ARGS…</c> to every control client) as a small reference for real roles.
/// </summary>
public sealed partial class ProbeService : ListenerRoleService, IRoleStatusProvider, IControlCommandProvider, IConnectionHandler
{
    private readonly IOptionsMonitor<ProbeOptions> _options;
    private readonly IControlEvents? _events;
    private long _served;
    private volatile bool _healthy = true;

    /// <summary>Creates the role.</summary>
    public ProbeService(IOptionsMonitor<ProbeOptions> options, IListenerFactory listenerFactory, RoleFailures failures, ILogger<ProbeService> logger, IControlEvents? events = null)
        : base(ProbeRole.Name, listenerFactory, failures, logger)
    {
        _options = options;
        _events = events;
    }

    /// <inheritdoc />
    public IReadOnlyCollection<string> CommandNames { get; } = ["probe.stats", "probe.health", "probe.broadcast"];

    /// <inheritdoc />
    public string StatusSummary() => $"served={Interlocked.Read(ref _served)}";

    /// <inheritdoc />
    public bool IsHealthy => _healthy;

    /// <inheritdoc />
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        var delay = _options.CurrentValue.StartDelay;
        if (delay > TimeSpan.Zero)
        {
            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        }

        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    protected override IEnumerable<ListenerSpec> GetListeners()
    {
        var options = _options.CurrentValue;
        yield return new ListenerSpec("Probe", TransportAddress.Parse(options.Listen), options.Transport, this, Key: "CacheHost:Probe:Listen");
    }

    /// <inheritdoc />
    protected override async Task RunAsync(CancellationToken stoppingToken)
    {
        if (_options.CurrentValue.FailAfter is { } after)
        {
            await Task.Delay(after, stoppingToken).ConfigureAwait(false);
            throw new InvalidOperationException("probe role crashed on purpose (CacheHost:Probe:FailAfter)");
        }

        await Task.Delay(Timeout.Infinite, stoppingToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task HandleAsync(TransportConnection connection, CancellationToken stopping)
    {
        Interlocked.Increment(ref _served);
        ProbeLog.Connection(Logger, connection.Id);
        var input = connection.Transport.Input;
        var output = connection.Transport.Output;
        var greeting = _options.CurrentValue.Greeting;
        if (greeting.Length > 0)
        {
            await output.WriteAsync(Encoding.UTF8.GetBytes(greeting + "\n"), stopping).ConfigureAwait(false);
        }

        while (true)
        {
            var result = await input.ReadAsync(stopping).ConfigureAwait(false);
            var buffer = result.Buffer;
            while (buffer.PositionOf((byte)'\n') is { } lf)
            {
                var line = buffer.Slice(0, buffer.GetPosition(1, lf));
                foreach (var segment in line)
                {
                    await output.WriteAsync(segment, stopping).ConfigureAwait(false);
                }

                buffer = buffer.Slice(line.End);
            }

            input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        await input.CompleteAsync().ConfigureAwait(false);
        await output.CompleteAsync().ConfigureAwait(false);
    }

    /// <inheritdoc />
    public ValueTask ExecuteAsync(ControlCommand command, IControlReply reply, CancellationToken cancellationToken)
    {
        switch (command.Name)
        {
            case "probe.stats":
                reply.Line("probe.stats", "connections", Interlocked.Read(ref _served).ToString(CultureInfo.InvariantCulture));
                break;
            case "probe.health":
                _healthy = command.Required(0, "state") switch
                {
                    "ok" => true,
                    "wedged" => false,
                    var other => throw new ControlCommandException($"expected ok or wedged, not '{other}'"),
                };
                reply.Line("probe.health", _healthy ? "ok" : "wedged");
                break;
            case "probe.broadcast":
                // An event line to every control client, as the supervisor's service.state events.
                _events?.Broadcast(["probe.event", .. command.Arguments]);
                break;
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public void WriteStateDump(IControlReply reply) =>
        reply.Line("probe.stats", "connections", Interlocked.Read(ref _served).ToString(CultureInfo.InvariantCulture));

    private static partial class ProbeLog
    {
        [LoggerMessage(5900, LogLevel.Debug, "Probe connection #{ConnectionId}", EventName = "ProbeConnection")]
        public static partial void Connection(ILogger logger, long connectionId);
    }
}
