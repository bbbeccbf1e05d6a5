using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using CacheHost.Core;
using CacheHost.Protocols.Clacks;
using CacheHost.Transport;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// The Clacks role: binds unix sockets (plain) and TCP addresses (TLS from the first byte, spec 2.1), runs
/// one task per connection, dials the master when configured (spec 12), and runs the timers of spec 8.3,
/// 10 and 13.2. Listeners are bound in StartAsync so "started" means "bound".
/// </summary>
internal sealed class ClacksService : BackgroundService
{
    private readonly ClacksOptions _options;
    private readonly IListenerFactory _listenerFactory;
    private readonly RoleFailures _failures;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ILogger _logger;
    private readonly ClacksServer _server;
    private readonly PersistenceStore? _persistence;
    private readonly List<(ConnectionListener Listener, bool Tls)> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly ConcurrentDictionary<Task, byte> _connections = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly object _saveLock = new();
    private SslServerAuthenticationOptions? _tls;
    private int _openConnections;

    public ClacksService(IOptions<ClacksOptions> options, IListenerFactory listenerFactory, RoleFailures failures, IHostApplicationLifetime lifetime, ILoggerFactory loggerFactory)
    {
        _options = options.Value;
        _listenerFactory = listenerFactory;
        _failures = failures;
        _lifetime = lifetime;
        _logger = loggerFactory.CreateLogger("CacheHost.Clacks");
        _server = new ClacksServer(_options, _logger);
        _server.ShutdownRequested = seconds => _ = DelayedShutdownAsync(seconds);
        if (!string.IsNullOrEmpty(_options.PersistanceFile))
        {
            _persistence = new PersistenceStore(_options.PersistanceFile, _logger);
        }

        // The pipe must hold a whole line, or a reader waiting for the rest of a long line would stall.
        var transport = _options.Transport;
        if (transport.MaxReadBufferSize < _options.MaxLineBytes + 64 * 1024)
        {
            transport.MaxReadBufferSize = Math.Min(64 * 1024 * 1024, _options.MaxLineBytes + 64 * 1024);
        }
    }

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            LoadPersistence();
            foreach (var path in _options.Sockets)
            {
                var listener = _listenerFactory.Bind("Clacks", TransportAddress.Parse("UNIX:" + path), _options.Transport);
                _listeners.Add((listener, false));
                ApplySocketSettings(path);
                ClacksLog.Listening(_logger, listener.DisplayAddress);
            }

            if (_options.Ips.Count > 0)
            {
                var certificate = X509Certificate2.CreateFromPemFile(_options.SslCert!, _options.SslKey!);
                _tls = new SslServerAuthenticationOptions
                {
                    ServerCertificate = certificate,
                    ClientCertificateRequired = false,
                    AllowRenegotiation = false,
                };
                foreach (var ip in _options.Ips)
                {
                    var address = TransportAddress.Parse(ip.Contains(':') ? $"IPv6:[{ip.Trim('[', ']')}]:{_options.Port}" : $"IP:{ip}:{_options.Port}");
                    var listener = _listenerFactory.Bind("Clacks", address, _options.Transport);
                    _listeners.Add((listener, true));
                    ClacksLog.Listening(_logger, listener.DisplayAddress + " (TLS)");
                }
            }
        }
        catch (Exception ex)
        {
            _failures.Report("Clacks", ex);
            foreach (var (listener, _) in _listeners)
            {
                await listener.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }

        foreach (var (listener, tls) in _listeners)
        {
            _acceptLoops.Add(AcceptLoopAsync(listener, tls));
        }

        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The bound listeners' addresses (with real ports), for tests and status.</summary>
    public IEnumerable<string> ListenerAddresses => _listeners.Select(l => l.Listener.DisplayAddress);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            var tasks = new List<Task> { TimersAsync(stoppingToken) };
            if (_options.Master.IsConfigured)
            {
                tasks.Add(MasterLinkLoopAsync(stoppingToken));
            }

            await Task.WhenAll(tasks).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            _failures.Report("Clacks", ex);
            throw;
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        foreach (var (listener, _) in _listeners)
        {
            listener.Unbind();
        }

        await _stopping.CancelAsync().ConfigureAwait(false);

        // Spec 3.5: persistence saved, then every connection (the master link too) gets QUIT and is closed.
        SavePersistence(force: true);
        _server.QuitAll();
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_connections.Keys.ToArray()).WaitAsync(_options.Transport.ShutdownTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            // Peers that do not take their QUIT within the budget are dropped.
            _server.AbortAll();
        }

        try
        {
            await Task.WhenAll(_acceptLoops).WaitAsync(TimeSpan.FromSeconds(2), CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
        }

        foreach (var (listener, _) in _listeners)
        {
            await listener.DisposeAsync().ConfigureAwait(false);
        }

        _server.Warnings.Dispose(); // reports warnings still counted
    }

    private async Task AcceptLoopAsync(ConnectionListener listener, bool tls)
    {
        await Task.Yield();
        while (true)
        {
            var socket = await listener.AcceptSocketAsync(_stopping.Token).ConfigureAwait(false);
            if (socket is null)
            {
                return;
            }

            if (Interlocked.Increment(ref _openConnections) > _options.Transport.MaxConnections)
            {
                Interlocked.Decrement(ref _openConnections);
                socket.Dispose();
                continue;
            }

            Track(ServeSocketAsync(socket, listener, tls));
        }
    }

    private void Track(Task task)
    {
        _connections[task] = 0;
        _ = task.ContinueWith(t => _connections.TryRemove(t, out _), TaskScheduler.Default);
    }

    private async Task ServeSocketAsync(System.Net.Sockets.Socket socket, ConnectionListener listener, bool tls)
    {
        try
        {
            TransportConnection connection;
            if (tls)
            {
                var remote = socket.RemoteEndPoint?.ToString() ?? "?";
                try
                {
                    // Asynchronous and bounded (fix of Q10): a silent client never blocks anybody else.
                    connection = await TlsConnections.AcceptAsync(socket, _tls!, TimeSpan.FromSeconds(_options.TlsHandshakeTimeout), listener.Options, _stopping.Token).ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    if (_server.Warnings.Allow(nameof(ClacksLog.TlsFailed)))
                    {
                        ClacksLog.TlsFailed(_logger, remote, ex.Message);
                    }

                    return;
                }
            }
            else
            {
                connection = SocketTransport.Start(socket, listener.Options, _logger);
            }

            await using (connection.ConfigureAwait(false))
            {
                var session = _server.Accept(connection, unixSocket: !tls);
                await RunSessionAsync(session).ConfigureAwait(false);
            }
        }
        finally
        {
            Interlocked.Decrement(ref _openConnections);
        }
    }

    /// <summary>Reads lines until the connection ends, then drains output (graceful) or drops it.</summary>
    private async Task RunSessionAsync(ClacksSession session)
    {
        var writer = session.RunWriterAsync();
        var reason = "read failed";
        try
        {
            reason = await ReadLoopAsync(session).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException or InvalidOperationException
            or System.Net.Sockets.SocketException)
        {
            reason = ex.Message;
        }
        finally
        {
            if (reason == PeerClosed && !session.Closing)
            {
                // A half-closed peer (e.g. "printf 'RETRIEVE x\n' | socat - UNIX:...") still gets its replies;
                // if it is really gone the write fails at once.
                _server.CloseAfterPeerEof(session);
            }

            if (session.Closing)
            {
                try
                {
                    await writer.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                }
            }

            _server.Remove(session, reason);
            await writer.ConfigureAwait(false);
        }
    }

    private const string PeerClosed = "closed by peer";

    private async Task<string> ReadLoopAsync(ClacksSession session)
    {
        var input = session.Connection.Transport.Input;
        var framer = new ClacksLineFramer(_options.MaxLineBytes);
        var lines = new List<string>();
        while (true)
        {
            var result = await input.ReadAsync().ConfigureAwait(false);
            var buffer = result.Buffer;
            var overlong = false;
            lines.Clear();
            while (true)
            {
                var status = framer.TryReadLine(ref buffer, out var line);
                if (status == ClacksFrameStatus.Line)
                {
                    lines.Add(line);
                    continue;
                }

                overlong = status == ClacksFrameStatus.Overlong;
                break;
            }

            input.AdvanceTo(buffer.Start, buffer.End);
            if (lines.Count > 0)
            {
                await _server.ProcessAsync(session, lines).ConfigureAwait(false);
            }

            if (overlong && !session.Closing)
            {
                _server.RejectOverlong(session);
            }

            if (session.Closing)
            {
                return "closed by server";
            }

            if (result.IsCompleted)
            {
                return PeerClosed;
            }

            if (result.IsCanceled)
            {
                return "connection lost";
            }
        }
    }

    /// <summary>Slave side (spec 12.3/12.6): dial, handshake, serve the link, re-dial after a delay.</summary>
    private async Task MasterLinkLoopAsync(CancellationToken stoppingToken)
    {
        var master = _options.Master;
        var display = !string.IsNullOrEmpty(master.Socket) ? master.Socket! : $"{master.Ip}:{master.Port}";
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                TransportConnection connection;
                string cid;
                if (!string.IsNullOrEmpty(master.Socket))
                {
                    connection = await OutboundConnector.ConnectAsync(TransportAddress.Parse("UNIX:" + master.Socket), _options.Transport, _logger, stoppingToken).ConfigureAwait(false);
                    cid = "unixdomainsocket:interclacksmaster";
                }
                else
                {
                    var ip = master.Ip!;
                    var address = TransportAddress.Parse(ip.Contains(':') ? $"IPv6:[{ip.Trim('[', ']')}]:{master.Port}" : $"IP:{ip}:{master.Port}");
                    using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                    connectTimeout.CancelAfter(TimeSpan.FromSeconds(master.ConnectTimeout));
                    var socket = await OutboundConnector.ConnectSocketAsync(address, connectTimeout.Token).ConfigureAwait(false);
                    // The reference does not verify the master's certificate (spec 12.1).
                    var sslOptions = new SslClientAuthenticationOptions
                    {
                        TargetHost = ip,
                        RemoteCertificateValidationCallback = static (_, _, _, _) => true,
                    };
                    connection = await TlsConnections.ConnectAsync(socket, sslOptions, TimeSpan.FromSeconds(Math.Max(5, _options.TlsHandshakeTimeout)), _options.Transport, stoppingToken).ConfigureAwait(false);
                    cid = $"{ip}:{master.Port}";
                }

                await using (connection.ConfigureAwait(false))
                {
                    ClacksLog.MasterConnected(_logger, display);
                    var session = _server.AttachMasterLink(connection, cid);
                    await RunSessionAsync(session).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                ClacksLog.MasterFailed(_logger, display, ex.Message, _options.InterclacksReconnectTimeout);
            }

            var delay = _options.InterclacksReconnectTimeout + Random.Shared.NextDouble() * _options.InterclacksReconnectJitter;
            await Task.Delay(TimeSpan.FromSeconds(delay), stoppingToken).ConfigureAwait(false);
        }
    }

    private async Task TimersAsync(CancellationToken stoppingToken)
    {
        var nextClean = 0.0;
        var nextSave = _server.Now + _options.PersistanceInterval;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(250));
        do
        {
            _server.Tick();
            var now = _server.Now;
            if (now >= nextClean)
            {
                _server.CleanCache();
                nextClean = now + _options.CacheCleanInterval;
            }

            if (now >= nextSave)
            {
                await Task.Run(() => SavePersistence(force: false), CancellationToken.None).ConfigureAwait(false);
                nextSave = now + _options.PersistanceInterval;
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    private void LoadPersistence()
    {
        if (_persistence is null)
        {
            return;
        }

        var entries = _persistence.Load(out var saveNow);
        lock (_server.Gate)
        {
            _server.Cache.Load(entries);
        }

        if (saveNow)
        {
            SavePersistence(force: true);
        }
    }

    private void SavePersistence(bool force)
    {
        if (_persistence is null)
        {
            return;
        }

        lock (_saveLock)
        {
            var snapshot = _server.TakeSnapshot(force);
            if (snapshot is null)
            {
                return;
            }

            try
            {
                _persistence.Save(snapshot);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                ClacksLog.PersistenceSaveFailed(_logger, _persistence.Path, ex);
                _server.MarkDirty();
            }
        }
    }

    /// <summary>socketchmod and socketcommands (spec 2.1), run after binding.</summary>
    private void ApplySocketSettings(string path)
    {
        if (!string.IsNullOrEmpty(_options.SocketChmod))
        {
            RunProcess("chmod", [_options.SocketChmod, path], $"chmod {_options.SocketChmod} {path}", path);
        }

        foreach (var command in _options.SocketCommands)
        {
            RunProcess("/bin/sh", ["-c", command], command, path);
        }
    }

    private void RunProcess(string file, string[] arguments, string display, string socket)
    {
        var start = new ProcessStartInfo(file) { UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        if (!process.WaitForExit(30_000))
        {
            process.Kill();
        }

        if (process.ExitCode != 0)
        {
            ClacksLog.SocketCommandFailed(_logger, display, socket, process.ExitCode);
        }
    }

    private async Task DelayedShutdownAsync(double seconds)
    {
        await Task.Delay(TimeSpan.FromSeconds(seconds)).ConfigureAwait(false);
        _lifetime.StopApplication();
    }

    public override void Dispose()
    {
        _stopping.Dispose();
        base.Dispose();
    }
}
