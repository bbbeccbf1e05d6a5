using System.Collections.Concurrent;
using System.Net.Sockets;
using CacheHost.Core;
using CacheHost.Core.Control;
using CacheHost.Transport;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using CacheHost.Posix;

namespace CacheHost.Systemd.Control;

/// <summary>
/// Serves the daemon-wide TSV control socket (daemonproxy line conventions, daemonproxy §3) on a unix socket with
/// the configured owner, group and mode. It binds through <see cref="IListenerFactory"/> under the name
/// "control", so a socket unit with <c>FileDescriptorName=control</c> can pass it in. Also the
/// <see cref="IControlEvents"/> broadcaster for roles.
/// </summary>
public sealed class ControlServer(
    IOptions<ControlOptions> options,
    SystemdEnvironment environment,
    IListenerFactory listenerFactory,
    ControlDispatcher dispatcher,
    HostStatus status,
    ILoggerFactory loggerFactory) : IHostedService, IControlEvents, IAsyncDisposable
{
    private readonly ILogger _logger = loggerFactory.CreateLogger<ControlServer>();
    private readonly ConcurrentDictionary<long, ControlConnection> _connections = new();
    private readonly ControlDispatcher _dispatcher = dispatcher;
    private readonly ControlOptions _options = options.Value;
    private ConnectionServer? _server;

    /// <summary>The socket path being served, or null when disabled.</summary>
    public string? SocketPath { get; private set; }

    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _dispatcher.Prepare();
        var settings = _options;
        if (!settings.Enabled)
        {
            return Task.CompletedTask;
        }

        var path = settings.ResolveSocketPath(environment);
        var directory = Path.GetDirectoryName(path);
        if (string.IsNullOrWhiteSpace(settings.Socket) && string.IsNullOrEmpty(environment.RuntimeDirectory))
        {
            // The fallback in a shared directory: only a private one of our own (a directory someone else
            // created first would give them the socket), else run without a control socket.
            if (ControlOptions.PreparePrivateDirectory(directory!) is { } problem)
            {
                SystemdLog.ControlDisabled(_logger, problem);
                return Task.CompletedTask;
            }
        }
        else if (!string.IsNullOrEmpty(directory) && !Directory.Exists(directory))
        {
            Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute);
        }

        if (UnixSocketFile.IsLive(path))
        {
            // Another instance (e.g. a second dc_server for tests) owns it: never steal a live socket.
            SystemdLog.ControlInUse(_logger, path);
            return Task.CompletedTask;
        }

        var transport = new TransportOptions
        {
            SocketOwner = settings.Owner,
            SocketGroup = settings.Group,
            SocketMode = settings.Mode,
            MaxConnections = settings.MaxConnections,
            MaxReadBufferSize = Math.Max(4096, settings.MaxLineLength * 4),
            MaxWriteBufferSize = 256 * 1024,
            InlineScheduling = false,
            ShutdownTimeout = TimeSpan.FromSeconds(1),
        };
        var listener = listenerFactory.Bind("control", TransportAddress.Parse("UNIX:" + path), transport);
        _server = new ConnectionServer(listener, new Handler(this), _logger);
        _server.Start();
        SocketPath = listener.Address.Path ?? path;
        status.ControlAddress = listener.DisplayAddress;
        SystemdLog.ControlListening(_logger, SocketPath);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is not null)
        {
            await _server.StopAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public void Broadcast(params ReadOnlySpan<string> fields)
    {
        if (!_connections.IsEmpty)
        {
            Enqueue(ControlReply.TextToBytes(ControlReply.Format(fields)));
        }
    }

    /// <inheritdoc />
    public void BroadcastBytes(params ReadOnlySpan<string> fields)
    {
        if (!_connections.IsEmpty)
        {
            Enqueue(ControlReply.Format(fields));
        }
    }

    private void Enqueue(string line)
    {
        foreach (var connection in _connections.Values)
        {
            connection.Enqueue(line);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync().ConfigureAwait(false);
            _server = null;
        }
    }

    private sealed class Handler(ControlServer server) : IConnectionHandler
    {
        public async Task HandleAsync(TransportConnection connection, CancellationToken stopping)
        {
            var control = new ControlConnection(connection, server._dispatcher, server._options, server._logger);
            server._connections[connection.Id] = control;
            try
            {
                await control.RunAsync(stopping).ConfigureAwait(false);
            }
            finally
            {
                server._connections.TryRemove(connection.Id, out _);
            }
        }
    }
}
