using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace CacheHost.Transport;

/// <summary>
/// Runs the accept loop of one listener: enforces the connection limit, starts a handler per connection,
/// tracks open connections, and shuts down in the order unbind, ask to finish, wait within a budget,
/// abort the rest (Bedrock's Server / Kestrel's ConnectionManager shutdown).
/// </summary>
public sealed class ConnectionServer : IAsyncDisposable
{
    private readonly ConnectionListener _listener;
    private readonly IConnectionHandler _handler;
    private readonly IConnectionAdapter? _adapter;
    private readonly ILogger _logger;
    private readonly LogRateLimiter _warnings;
    private readonly ConcurrentDictionary<long, (TransportConnection Connection, Task Task)> _connections = new();
    private readonly CancellationTokenSource _stopping = new();
    private Task _acceptLoop = Task.CompletedTask;
    private readonly TimeProvider _clock;
    private int _active;
    private long _accepted;
    private long _rejected;
    private long _adapterFailures;

    /// <summary>
    /// Creates a server for an already-bound listener. <paramref name="adapter"/> (e.g. TLS) wraps each accepted
    /// connection before <paramref name="handler"/> sees it. Warnings its peers trigger are rate-limited by the
    /// listener's <c>Warnings</c> options on <paramref name="timeProvider"/> (default: the system clock), which also
    /// times the accept back-off and the shutdown drain.
    /// </summary>
    public ConnectionServer(
        ConnectionListener listener, IConnectionHandler handler, ILogger logger, IConnectionAdapter? adapter = null, TimeProvider? timeProvider = null)
    {
        _listener = listener;
        _handler = handler;
        _logger = logger;
        _clock = timeProvider ?? TimeProvider.System;
        _warnings = new LogRateLimiter(logger, listener.Options.Warnings, _clock);
        _adapter = adapter;
    }

    /// <summary>The listener this server accepts on.</summary>
    public ConnectionListener Listener => _listener;

    /// <summary>Currently open connections.</summary>
    public int ActiveConnections => Volatile.Read(ref _active);

    /// <summary>Connections accepted since start.</summary>
    public long AcceptedConnections => Interlocked.Read(ref _accepted);

    /// <summary>Connections refused because of the connection limit.</summary>
    public long RejectedConnections => Interlocked.Read(ref _rejected);

    /// <summary>Connections closed because the adapter failed (e.g. a failed or timed-out TLS handshake).</summary>
    public long AdapterFailures => Interlocked.Read(ref _adapterFailures);

    /// <summary>Fires when the server asks its connections to finish (graceful stop has begun).</summary>
    public CancellationToken Stopping => _stopping.Token;

    /// <summary>Completes when the accept loop ends; faults if accepting failed fatally.</summary>
    public Task Completion => _acceptLoop;

    /// <summary>Starts accepting in the background.</summary>
    public void Start()
    {
        _acceptLoop = AcceptLoopAsync();
    }

    private async Task AcceptLoopAsync()
    {
        // Leave the caller's (StartAsync's) synchronous context before the first accept.
        await Task.Yield();
        var max = _listener.Options.MaxConnections;
        while (true)
        {
            var connection = await _listener.AcceptAsync(clock: _clock).ConfigureAwait(false);
            if (connection is null)
            {
                break;
            }

            Interlocked.Increment(ref _accepted);
            if (Interlocked.Increment(ref _active) > max)
            {
                Interlocked.Decrement(ref _active);
                Interlocked.Increment(ref _rejected);
                if (_warnings.Allow(nameof(TransportLog.ConnectionRejected)))
                {
                    TransportLog.ConnectionRejected(_logger, _listener.Address.Text, max);
                }

                connection.Abort("connection limit reached");
                _ = connection.DisposeAsync().AsTask();
                continue;
            }

            TransportLog.ConnectionAccepted(_logger, connection.Id, connection.RemoteEndPoint?.ToString() ?? _listener.Address.Text);
            connection.Warnings = _warnings;
            var task = RunConnectionAsync(connection);
            _connections[connection.Id] = (connection, task);
            if (task.IsCompleted)
            {
                _connections.TryRemove(connection.Id, out _);
            }
        }
    }

    private async Task RunConnectionAsync(TransportConnection accepted)
    {
        var connection = accepted;
        try
        {
            if (_adapter is not null)
            {
                try
                {
                    connection = await _adapter.AdaptAsync(accepted, _stopping.Token).ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    Interlocked.Increment(ref _adapterFailures);
                    if (_warnings.Allow(nameof(TransportLog.AdapterFailed)))
                    {
                        TransportLog.AdapterFailed(_logger, accepted.Id, _adapter.Name, accepted.RemoteEndPoint?.ToString() ?? _listener.Address.Text, ex.Message);
                    }

                    return;
                }
            }

            await _handler.HandleAsync(connection, _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is ConnectionResetException or ConnectionAbortedException or OperationCanceledException)
        {
            // Expected teardown: the peer vanished or we aborted.
        }
        catch (Exception ex)
        {
            TransportLog.HandlerFailed(_logger, connection.Id, ex);
        }
        finally
        {
            try
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                TransportLog.ConnectionError(_logger, connection.Id, ex);
            }

            _connections.TryRemove(accepted.Id, out _);
            Interlocked.Decrement(ref _active);
        }
    }

    /// <summary>
    /// Graceful stop: unbind, signal handlers to finish, wait up to the listener's ShutdownTimeout (or until
    /// <paramref name="cancellationToken"/>), then abort what is left and wait for it.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        _listener.Unbind();
        try
        {
            await _acceptLoop.ConfigureAwait(false);
        }
        catch
        {
            // A fatal accept error was already reported through Completion.
        }

        _stopping.Cancel();
        var budget = _listener.Options.ShutdownTimeout;
        var all = Task.WhenAll(_connections.Values.Select(static c => c.Task));
        try
        {
            await all.WaitAsync(budget, _clock, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            var left = _connections.Values.ToArray();
            TransportLog.ConnectionsAborted(_logger, left.Length, _listener.Address.Text, budget.TotalMilliseconds);
            foreach (var (connection, _) in left)
            {
                connection.Abort("server shutting down");
            }

            await Task.WhenAll(left.Select(static c => c.Task)).WaitAsync(TimeSpan.FromSeconds(5), _clock, CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        await _listener.DisposeAsync().ConfigureAwait(false);
        _stopping.Dispose();
        _warnings.Dispose(); // reports what is still counted
    }
}
