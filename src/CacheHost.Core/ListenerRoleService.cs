using CacheHost.Transport;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace CacheHost.Core;

/// <summary>
/// Base for roles that serve connections. Listeners are bound in StartAsync, so "started" means "bound"
/// (since .NET 10 all of ExecuteAsync runs in the background, and a bind failure there would surface after
/// READY=1). ExecuteAsync runs the role's own background work next to the accept loops; a fatal accept
/// error or a crash in that work is recorded in <see cref="RoleFailures"/> and stops the host.
/// </summary>
public abstract class ListenerRoleService : BackgroundService
{
    private readonly List<ConnectionServer> _servers = [];
    private readonly IListenerFactory _listenerFactory;
    private readonly RoleFailures _failures;
    private readonly TimeProvider? _timeProvider;

    /// <summary>
    /// Creates the role base; <paramref name="timeProvider"/> (the host's one clock) drives the listeners' warning rate
    /// limits, accept back-off and shutdown drain.
    /// </summary>
    protected ListenerRoleService(string roleName, IListenerFactory listenerFactory, RoleFailures failures, ILogger logger, TimeProvider? timeProvider = null)
    {
        _timeProvider = timeProvider;
        RoleName = roleName;
        _listenerFactory = listenerFactory;
        _failures = failures;
        Logger = logger;
    }

    /// <summary>Role name as used in CacheHost:Roles.</summary>
    public string RoleName { get; }

    /// <summary>The role's logger.</summary>
    protected ILogger Logger { get; }

    /// <summary>The running servers, one per listener.</summary>
    public IReadOnlyList<ConnectionServer> Servers => _servers;

    /// <summary>Bound addresses for status lines, e.g. "IP:127.0.0.1:9001".</summary>
    public IEnumerable<string> ListenerAddresses => _servers.Select(s => s.Listener.DisplayAddress);

    /// <summary>The listeners to bind: a name (for socket activation), an address, limits and a handler.</summary>
    protected abstract IEnumerable<ListenerSpec> GetListeners();

    /// <summary>Role work besides serving connections (timers, upstream links). Default: none.</summary>
    protected virtual Task RunAsync(CancellationToken stoppingToken) => Task.Delay(Timeout.Infinite, stoppingToken);

    /// <inheritdoc />
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            foreach (var spec in GetListeners())
            {
                ConnectionListener listener;
                try
                {
                    listener = _listenerFactory.Bind(spec.Name, spec.Address, spec.Options, spec.PrepareUnixSocket);
                }
                catch (IOException ex) when (spec.Key is not null)
                {
                    // Name the key the address came from (one line, README "exit status").
                    throw new IOException($"{spec.Key}: {ex.Message}", ex);
                }

                var server = new ConnectionServer(listener, spec.Handler, Logger, spec.Adapter, _timeProvider);
                _servers.Add(server);
                server.Start();
            }
        }
        catch (Exception ex)
        {
            _failures.Report(RoleName, ex);
            foreach (var server in _servers)
            {
                await server.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }

        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    protected sealed override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            var work = RunAsync(stoppingToken);
            var accepts = _servers.Select(s => s.Completion).ToList();
            accepts.Add(work);
            while (!stoppingToken.IsCancellationRequested && accepts.Count > 0)
            {
                var done = await Task.WhenAny(accepts).ConfigureAwait(false);
                await done.ConfigureAwait(false); // rethrows a fatal accept error or a crash of the role's work
                accepts.Remove(done);
                if (done == work)
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            _failures.Report(RoleName, ex);
            throw;
        }
    }

    /// <inheritdoc />
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await Task.WhenAll(_servers.Select(s => s.StopAsync(cancellationToken))).ConfigureAwait(false);
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        foreach (var server in _servers)
        {
            await server.DisposeAsync().ConfigureAwait(false);
        }
    }
}

/// <summary>
/// One listener a role wants bound. <paramref name="Adapter"/> (e.g. <see cref="TlsConnectionAdapter"/>) wraps
/// every accepted connection before <paramref name="Handler"/> sees it; null serves the plain connection.
/// <paramref name="PrepareUnixSocket"/> runs on a new unix socket file before it listens and appears at its path.
/// <paramref name="Key"/> is the configuration key of the address, for errors.
/// </summary>
public sealed record ListenerSpec(string Name, TransportAddress Address, TransportOptions Options, IConnectionHandler Handler,
    IConnectionAdapter? Adapter = null, Action<string>? PrepareUnixSocket = null, string? Key = null);
