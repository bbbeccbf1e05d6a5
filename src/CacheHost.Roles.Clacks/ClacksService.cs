using System.Diagnostics;
using System.Globalization;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using CacheHost.Core;
using CacheHost.Core.Control;
using CacheHost.Core.Status;
using CacheHost.Protocols.Clacks;
using CacheHost.Transport;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// The Clacks role on the shared listener base: unix sockets (plain) and TCP addresses (TLS from the first byte
/// through the transport's TLS adapter, clacks §2.1) are served by the transport's accept loops, connection limit,
/// tracking and shutdown; this class adds the master link (clacks §12), the timers of clacks §8.3, §10 and §13.2, and
/// the shutdown order of clacks §3.5 (save, QUIT to everybody, then the transport closes what is left).
/// </summary>
internal sealed class ClacksService : ListenerRoleService, IConnectionHandler, IRoleStatusProvider, IControlCommandProvider
{
    /// <summary>The role's command on the daemon's control socket.</summary>
    public const string StatsCommand = "clacks.stats";

    private readonly ClacksOptions _options;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ClacksServer _server;
    private readonly PersistenceStore? _persistence;
    private readonly object _saveLock = new();
    private readonly CancellationTokenSource _shutdown = new();
    private readonly TimeProvider _clock;
    private long _lastTickTimestamp;

    // Longest wait for a closing session's last flush before it is finished anyway.
    private static readonly TimeSpan DrainLimit = TimeSpan.FromSeconds(5);

    // A tick this old means the timers are wedged (IsHealthy).
    private static readonly TimeSpan TickStaleAfter = TimeSpan.FromSeconds(30);

    public ClacksService(IOptions<ClacksOptions> options, IListenerFactory listenerFactory, RoleFailures failures, IHostApplicationLifetime lifetime, ILoggerFactory loggerFactory, TimeProvider clock)
        : base(ClacksRole.Name, listenerFactory, failures, loggerFactory.CreateLogger("CacheHost.Clacks"), clock)
    {
        _options = options.Value;
        _lifetime = lifetime;
        _clock = clock;
        _server = new ClacksServer(_options, Logger, clock);
        _server.ShutdownRequested = seconds => _ = DelayedShutdownAsync(seconds);
        if (!string.IsNullOrEmpty(_options.PersistanceFile))
        {
            _persistence = new PersistenceStore(_options.PersistanceFile, Logger);
        }
    }

    /// <summary>The engine's counters.</summary>
    public ClacksStatistics Statistics => _server.Statistics;

    /// <inheritdoc />
    protected override IEnumerable<ListenerSpec> GetListeners()
    {
        foreach (var path in _options.Sockets)
        {
            // socketchmod before the file appears and listens (issue 21 item 9: it was applied up to 0.5 s after
            // the first accept); socketcommands refer to the path, so they run once it is in place (StartAsync).
            yield return new ListenerSpec(ClacksRole.Name, TransportAddress.Parse("UNIX:" + path), _options.Transport, this,
                PrepareUnixSocket: string.IsNullOrEmpty(_options.SocketChmod) ? null : staged => RunProcess("chmod", [_options.SocketChmod!, staged], $"chmod {_options.SocketChmod} {path}", path));
        }

        if (_options.Ips.Count > 0)
        {
            var certificate = X509Certificate2.CreateFromPemFile(_options.SslCert!, _options.SslKey!);
            var tls = TlsConnectionAdapter.Server(
                new SslServerAuthenticationOptions { ServerCertificate = certificate, ClientCertificateRequired = false, AllowRenegotiation = false },
                TimeSpan.FromSeconds(_options.TlsHandshakeTimeout),
                _options.Transport,
                _clock);
            foreach (var ip in _options.Ips)
            {
                yield return new ListenerSpec(ClacksRole.Name, TcpAddress(ip, _options.Port!.Value), _options.Transport, this, tls);
            }
        }
    }

    private static TransportAddress TcpAddress(string ip, int port) =>
        TransportAddress.Parse(ip.Contains(':') ? $"IPv6:[{ip.Trim('[', ']')}]:{port}" : $"IP:{ip}:{port}");

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            LoadPersistence();
        }
        catch (Exception ex)
        {
            throw new IOException($"Clacks: loading persistence failed: {ex.Message}", ex);
        }

        await base.StartAsync(cancellationToken).ConfigureAwait(false);
        _server.PendingAccepts = () => Servers.Any(s => s.Listener.HasPendingConnection);
        foreach (var server in Servers)
        {
            ClacksLog.Listening(Logger, server.Listener.DisplayAddress + (server.Listener.Address.Kind == TransportAddressKind.Unix ? "" : " (TLS)"));
            if (server.Listener.Address.Kind == TransportAddressKind.Unix)
            {
                foreach (var command in _options.SocketCommands)
                {
                    RunProcess("/bin/sh", ["-c", command], command, server.Listener.Address.Path!);
                }
            }
        }
    }

    protected override async Task RunAsync(CancellationToken stoppingToken)
    {
        using var linkStopping = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, _shutdown.Token);
        var tasks = new List<Task> { TimersAsync(stoppingToken) };
        if (_options.Master.IsConfigured)
        {
            // The link stops with the listeners (StopAsync), not after them: a link re-dialled during the
            // connection budget would never get its QUIT.
            tasks.Add(MasterLinkLoopAsync(linkStopping.Token));
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // clacks §3.5: no new connections, persistence saved, then every connection (the master link too) gets QUIT
        // and is closed; the transport aborts those that do not finish within Transport:ShutdownTimeout.
        foreach (var server in Servers)
        {
            server.Listener.Unbind();
        }

        await _shutdown.CancelAsync().ConfigureAwait(false);
        SavePersistence(force: true);
        _server.QuitAll();
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        _server.AbortAll();
        _server.Warnings.Dispose(); // reports warnings still counted
    }

    /// <summary>Serves one accepted connection (after the TLS adapter on TCP listeners).</summary>
    public async Task HandleAsync(TransportConnection connection, CancellationToken stopping)
    {
        // Registered synchronously on the accept loop: the greeting and DEBUG CONNECTED go out in accept order.
        var session = _server.Accept(connection, unixSocket: connection.RemoteEndPoint is not System.Net.IPEndPoint);
        using var quit = QuitWhen(stopping, session);
        await RunSessionAsync(session).ConfigureAwait(false);
    }

    /// <summary>Sends QUIT and closes <paramref name="session"/> when <paramref name="token"/> fires (shutdown, clacks §3.5).</summary>
    private CancellationTokenRegistration QuitWhen(CancellationToken token, ClacksSession session) =>
        token.Register(static state =>
        {
            var (server, s) = ((ClacksServer, ClacksSession))state!;
            server.Quit(s);
        }, (_server, session));

    /// <summary>Reads lines until the connection ends, then lets the output drain (graceful) or drops it.</summary>
    private async Task RunSessionAsync(ClacksSession session)
    {
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
            if (reason == PeerClosed)
            {
                // A half-closed peer (e.g. "printf 'RETRIEVE x\n' | socat - UNIX:...") still gets its replies;
                // if it is really gone the transport's send fails at once.
                _server.CloseAfterPeerEof(session);
            }

            try
            {
                await session.Drained.WaitAsync(DrainLimit, _clock).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
            }

            _server.Finish(session, reason);
            await session.Connection.Transport.Input.CompleteAsync().ConfigureAwait(false);
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
            session.InputInHand = true;
            var buffer = result.Buffer;
            var overlong = false;
            var limit = LineLimit(session, loginInBatch: false);
            lines.Clear();
            while (true)
            {
                var status = framer.TryReadLine(ref buffer, limit, out var line);
                if (status == ClacksFrameStatus.Line)
                {
                    lines.Add(line);
                    if (line.StartsWith("OVERHEAD ", StringComparison.Ordinal))
                    {
                        // A login in this batch lifts the pre-login limit for the lines after it.
                        limit = LineLimit(session, loginInBatch: true);
                    }

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
            else
            {
                _server.NothingInHand(session);
            }

            if (overlong && !session.Closing)
            {
                _server.RejectOverlong(session, limit);
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

    /// <summary>Lines before login are short (CLACKS, OVERHEAD A); a long one is refused early and cheaply.</summary>
    private int LineLimit(ClacksSession session, bool loginInBatch) =>
        session.Authenticated || session.IsMasterLink || loginInBatch ? _options.MaxLineBytes : Math.Min(_options.MaxLineBytes, _options.MaxUnauthenticatedLineBytes);

    /// <summary>Slave side (clacks §12.3/§12.6): dial, handshake, serve the link, re-dial after a delay.</summary>
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
                    connection = await OutboundConnector.ConnectAsync(TransportAddress.Parse("UNIX:" + master.Socket), _options.Transport, Logger, stoppingToken).ConfigureAwait(false);
                    cid = "unixdomainsocket:interclacksmaster";
                }
                else
                {
                    var ip = master.Ip!;
                    using var connectLimit = new CancellationTokenSource(TimeSpan.FromSeconds(master.ConnectTimeout), _clock);
                    using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, connectLimit.Token);
                    var plain = await OutboundConnector.ConnectAsync(TcpAddress(ip, master.Port), _options.Transport, Logger, connectTimeout.Token).ConfigureAwait(false);

                    // The reference does not verify the master's certificate (clacks §12.1).
                    var tls = TlsConnectionAdapter.Client(
                        new SslClientAuthenticationOptions { TargetHost = ip, RemoteCertificateValidationCallback = static (_, _, _, _) => true },
                        TimeSpan.FromSeconds(Math.Max(5, _options.TlsHandshakeTimeout)),
                        _options.Transport,
                        _clock);
                    try
                    {
                        connection = await tls.AdaptAsync(plain, stoppingToken).ConfigureAwait(false);
                    }
                    catch
                    {
                        await plain.DisposeAsync().ConfigureAwait(false);
                        throw;
                    }

                    cid = $"{ip}:{master.Port}";
                }

                await using (connection.ConfigureAwait(false))
                {
                    ClacksLog.MasterConnected(Logger, display);
                    var session = _server.AttachMasterLink(connection, cid);
                    using var quit = QuitWhen(stoppingToken, session);
                    await RunSessionAsync(session).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                ClacksLog.MasterFailed(Logger, display, ex.Message, _options.InterclacksReconnectTimeout);
            }

            var delay = _options.InterclacksReconnectTimeout + Random.Shared.NextDouble() * _options.InterclacksReconnectJitter;
            await Task.Delay(TimeSpan.FromSeconds(delay), _clock, stoppingToken).ConfigureAwait(false);
        }
    }

    private async Task TimersAsync(CancellationToken stoppingToken)
    {
        var nextClean = 0.0;
        var nextSave = _server.Now + _options.PersistanceInterval;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(250), _clock);
        do
        {
            Interlocked.Exchange(ref _lastTickTimestamp, _clock.GetTimestamp() | 1); // 0 means "no tick yet"
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
                ClacksLog.PersistenceSaveFailed(Logger, _persistence.Path, ex);
                _server.MarkDirty();
            }
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
            ClacksLog.SocketCommandFailed(Logger, display, socket, process.ExitCode);
        }
    }

    private async Task DelayedShutdownAsync(double seconds)
    {
        await Task.Delay(TimeSpan.FromSeconds(seconds), _clock).ConfigureAwait(false);
        _lifetime.StopApplication();
    }

    public override void Dispose()
    {
        _shutdown.Dispose();
        base.Dispose();
    }

    /// <inheritdoc />
    public IReadOnlyCollection<string> CommandNames { get; } = [StatsCommand];

    /// <inheritdoc />
    public string StatusSummary() => string.Create(CultureInfo.InvariantCulture,
        $"sessions={_server.SessionCount} keys={_server.KeyCount}{(_options.Master.IsConfigured ? $" master={(_server.MasterLinkUp ? "up" : "down")}" : "")}");

    /// <summary>
    /// Unhealthy when the timers (ping timeouts, link PINGs, housekeeping, persistence saves) have not run for
    /// 30 s: the engine's gate is wedged or the thread pool starved, and systemd's watchdog should restart us.
    /// </summary>
    public bool IsHealthy => Interlocked.Read(ref _lastTickTimestamp) is var last && (last == 0 || _clock.GetElapsedTime(last) < TickStaleAfter);

    /// <inheritdoc />
    public ValueTask ExecuteAsync(ControlCommand command, IControlReply reply, CancellationToken cancellationToken)
    {
        if (command.Arguments.Count > 0)
        {
            throw new ControlCommandException("clacks.stats takes no arguments");
        }

        WriteStateDump(reply);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public void WriteStateDump(IControlReply reply)
    {
        foreach (var (name, value) in Snapshot())
        {
            reply.Line(StatsCommand, name, value.ToString(CultureInfo.InvariantCulture));
        }
    }

    /// <summary>Every counter as (name, value), in a stable order.</summary>
    public IEnumerable<(string Name, long Value)> Snapshot()
    {
        var statistics = _server.Statistics;
        yield return ("sessions", _server.SessionCount);
        yield return ("keys", _server.KeyCount);
        yield return ("connections.open", Servers.Sum(s => s.ActiveConnections));
        yield return ("connections.accepted", Servers.Sum(s => s.AcceptedConnections));
        yield return ("connections.rejected", Servers.Sum(s => s.RejectedConnections));
        yield return ("connections.tls_failed", Servers.Sum(s => s.AdapterFailures));
        yield return ("master.up", _server.MasterLinkUp ? 1 : 0);
        yield return ("fanout.encodes", statistics.FanOutEncodes);
        yield return ("fanout.deliveries", statistics.FanOutDeliveries);
        yield return ("errors.slow_consumer", statistics.SlowConsumersDropped);
        yield return ("errors.line_too_long", statistics.OverlongLines);
        yield return ("errors.unauthenticated_flood", statistics.UnauthenticatedFloods);
        yield return ("errors.login_failed", statistics.LoginFailures);
        yield return ("intake.waits_expired", statistics.IntakeWaitsExpired);
        yield return ("subscriptions", statistics.Subscriptions);
    }
}
