using System.IO.Pipelines;
using System.Net.Sockets;
using CacheHost.Testing;
using CacheHost.Transport;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace CacheHost.Transport.Tests;

/// <summary>Listener, accept loop, limits, backpressure and shutdown over real sockets.</summary>
public sealed class ConnectionServerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    /// <summary>Echoes every byte back, one flush per read batch.</summary>
    private sealed class EchoHandler : IConnectionHandler
    {
        public int Started;

        public async Task HandleAsync(TransportConnection connection, CancellationToken stopping)
        {
            Interlocked.Increment(ref Started);
            var input = connection.Transport.Input;
            var output = connection.Transport.Output;
            try
            {
                while (true)
                {
                    ReadResult result;
                    try
                    {
                        result = await input.ReadAsync(stopping);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }

                    foreach (var segment in result.Buffer)
                    {
                        await output.WriteAsync(segment);
                    }

                    input.AdvanceTo(result.Buffer.End);
                    if (result.IsCompleted)
                    {
                        break;
                    }
                }
            }
            finally
            {
                await output.CompleteAsync();
                await input.CompleteAsync();
            }
        }
    }

    /// <summary>Never reads: to observe backpressure and shutdown aborts.</summary>
    private sealed class StuckHandler : IConnectionHandler
    {
        public readonly TaskCompletionSource<TransportConnection> Connected = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public async Task HandleAsync(TransportConnection connection, CancellationToken stopping)
        {
            Connected.TrySetResult(connection);
            await Task.Delay(System.Threading.Timeout.Infinite, connection.ConnectionClosed).ContinueWith(_ => { });
        }
    }

    private static (ConnectionServer Server, string Address) Start(IConnectionHandler handler, TransportOptions? options = null, string? address = null)
    {
        address ??= "UNIX:" + TestPaths.Socket("tr");
        var listener = ConnectionListener.Bind(TransportAddress.Parse(address), options ?? new TransportOptions(), NullLogger.Instance);
        var server = new ConnectionServer(listener, handler, NullLogger.Instance);
        server.Start();
        return (server, listener.DisplayAddress);
    }

    [Theory]
    [InlineData("UNIX")]
    [InlineData("IP:127.0.0.1:0")]
    [InlineData("IPv6:[::1]:0")]
    public async Task EchoWorksOnEveryTransport(string kind)
    {
        var (server, address) = Start(new EchoHandler(), address: kind == "UNIX" ? null : kind);
        await using var _ = server;
        using var client = InProcessCacheServer.ConnectTo(address);
        var data = Enumerable.Range(0, 100_000).Select(i => (byte)i).ToArray();
        var send = Task.Run(() => client.Send(data));
        var echoed = DistCacheVectorReplayer.ReadExactly(client, data.Length, Timeout, "echo");
        await send;
        Assert.Equal(data, echoed);
    }

    [Fact]
    public async Task ConnectionsBeyondTheLimitAreClosedAndCounted()
    {
        var handler = new StuckHandler();
        var (server, address) = Start(handler, new TransportOptions { MaxConnections = 2 });
        await using var _ = server;
        using var a = InProcessCacheServer.ConnectTo(address);
        using var b = InProcessCacheServer.ConnectTo(address);
        await WaitUntil(() => server.ActiveConnections == 2);
        using var c = InProcessCacheServer.ConnectTo(address);
        DistCacheVectorReplayer.ExpectClosed(c, Timeout, "third connection");
        Assert.Equal(1, server.RejectedConnections);
        Assert.Equal(2, server.ActiveConnections);
        a.Dispose();
        // A slot frees up once a connection ends... the stuck handler ends on ConnectionClosed.
        await WaitUntil(() => server.ActiveConnections == 1);
        using var d = InProcessCacheServer.ConnectTo(address);
        await WaitUntil(() => server.ActiveConnections == 2);
        DistCacheVectorReplayer.ExpectSilence(d, TimeSpan.FromMilliseconds(200), "fourth connection is served");
    }

    [Fact]
    public async Task APeerThatStopsReadingStallsOnlyItselfWithBoundedBuffers()
    {
        var options = new TransportOptions { MaxReadBufferSize = 64 * 1024, MaxWriteBufferSize = 64 * 1024 };
        var (server, address) = Start(new EchoHandler(), options);
        await using var _ = server;
        using var slow = InProcessCacheServer.ConnectTo(address);
        slow.Blocking = false;
        var chunk = new byte[64 * 1024];
        long sent = 0;
        var deadline = DateTime.UtcNow.AddSeconds(5);
        // Send without ever reading: the echo backs up into the server's output, then its input, then the
        // kernel buffers, and finally our sends stop being accepted.
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                sent += slow.Send(chunk);
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.WouldBlock)
            {
                break;
            }
        }

        Assert.True(DateTime.UtcNow < deadline, "sends were never refused: the server buffers without bound");
        Assert.True(sent < 64L * 1024 * 1024, $"{sent} bytes accepted");

        // Another client is still served promptly.
        using var other = InProcessCacheServer.ConnectTo(address);
        other.Send("ping"u8.ToArray());
        Assert.Equal("ping"u8.ToArray(), DistCacheVectorReplayer.ReadExactly(other, 4, Timeout, "other client"));
    }

    [Fact]
    public async Task StopUnbindsLetsIdleConnectionsFinishAndAbortsStuckOnes()
    {
        var echo = new EchoHandler();
        var (echoServer, echoAddress) = Start(echo, new TransportOptions { ShutdownTimeout = TimeSpan.FromSeconds(5) });
        using var idle = InProcessCacheServer.ConnectTo(echoAddress);
        await WaitUntil(() => echoServer.ActiveConnections == 1);
        var stop = echoServer.StopAsync();
        await stop.WaitAsync(Timeout);
        DistCacheVectorReplayer.ExpectClosed(idle, Timeout, "idle connection closed gracefully");
        Assert.Throws<SocketException>(() => InProcessCacheServer.ConnectTo(echoAddress));

        var stuck = new StuckHandler();
        var (stuckServer, stuckAddress) = Start(stuck, new TransportOptions { ShutdownTimeout = TimeSpan.FromMilliseconds(300) });
        using var victim = InProcessCacheServer.ConnectTo(stuckAddress);
        await stuck.Connected.Task.WaitAsync(Timeout);
        await stuckServer.StopAsync().WaitAsync(Timeout);
        DistCacheVectorReplayer.ExpectClosed(victim, Timeout, "stuck connection aborted after the budget");
        Assert.Equal(0, stuckServer.ActiveConnections);
        await echoServer.DisposeAsync();
        await stuckServer.DisposeAsync();
    }

    [Fact]
    public async Task UnixSocketModeIsAppliedAndAStaleSocketIsReplacedButAFileIsNot()
    {
        var path = TestPaths.Socket("perm");
        var options = new TransportOptions { SocketMode = "640", SocketOwner = "root", SocketGroup = "0" };
        var (first, _) = Start(new EchoHandler(), options, "UNIX:" + path);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, File.GetUnixFileMode(path));
        first.Listener.Unbind();
        await first.DisposeAsync();

        // A socket file left behind by a crashed process is replaced.
        var stale = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        stale.Bind(new UnixDomainSocketEndPoint(path));
        stale.Dispose();
        var (second, address) = Start(new EchoHandler(), null, "UNIX:" + path);
        await using (second)
        {
            using var client = InProcessCacheServer.ConnectTo(address);

            // A live socket is never taken over: the second listener is refused and the first keeps serving.
            var live = Assert.Throws<IOException>(() => ConnectionListener.Bind(TransportAddress.Parse("UNIX:" + path), new TransportOptions(), NullLogger.Instance));
            Assert.Contains("another process is listening", live.Message);
            using var again = InProcessCacheServer.ConnectTo(address);
            again.Send("x"u8.ToArray());
            Assert.Equal("x"u8.ToArray(), DistCacheVectorReplayer.ReadExactly(again, 1, Timeout, "first listener still serves"));
        }

        // A regular file is never deleted to make room.
        var file = TestPaths.Socket("file");
        File.WriteAllText(file, "precious");
        var error = Assert.Throws<IOException>(() => ConnectionListener.Bind(TransportAddress.Parse("UNIX:" + file), new TransportOptions(), NullLogger.Instance));
        Assert.Contains("not a socket", error.Message);
        Assert.Equal("precious", File.ReadAllText(file));
    }

    [Fact]
    public void UnknownSocketOwnerIsAClearError()
    {
        var path = TestPaths.Socket("owner");
        var options = new TransportOptions { SocketOwner = "no-such-user-here" };
        var error = Assert.Throws<IOException>(() => ConnectionListener.Bind(TransportAddress.Parse("UNIX:" + path), options, NullLogger.Instance));
        Assert.Contains("no-such-user-here", error.Message);
    }

    [Fact]
    public async Task OutboundConnectorRefusesWildcardAddressesAndConnectsToListeners()
    {
        await Assert.ThrowsAsync<ArgumentException>(async () => await OutboundConnector.ConnectAsync(TransportAddress.Parse("IP:9001"), new TransportOptions(), NullLogger.Instance));
        var (server, address) = Start(new EchoHandler());
        await using var _ = server;
        await using var connection = await OutboundConnector.ConnectAsync(TransportAddress.Parse(address), new TransportOptions(), NullLogger.Instance);
        await connection.Transport.Output.WriteAsync("hello"u8.ToArray());
        var result = await connection.Transport.Input.ReadAtLeastAsync(5).AsTask().WaitAsync(Timeout);
        Assert.Equal("hello"u8.ToArray(), System.Buffers.BuffersExtensions.ToArray(result.Buffer.Slice(0, 5)));
        connection.Transport.Input.AdvanceTo(result.Buffer.End);
    }

    [Fact]
    public async Task PeersResettingBeforeAcceptDoNotStopTheAcceptLoop()
    {
        var (server, address) = Start(new EchoHandler(), address: "IP:127.0.0.1:0");
        await using var _ = server;
        for (var i = 0; i < 50; i++)
        {
            var s = InProcessCacheServer.ConnectTo(address);
            s.LingerState = new LingerOption(true, 0); // close with RST
            s.Dispose();
        }

        using var client = InProcessCacheServer.ConnectTo(address);
        client.Send("ok"u8.ToArray());
        Assert.Equal("ok"u8.ToArray(), DistCacheVectorReplayer.ReadExactly(client, 2, Timeout, "after resets"));
        Assert.False(server.Completion.IsFaulted);
    }

    [Theory]
    [InlineData(SocketError.NetworkDown)]        // ENETDOWN
    [InlineData(SocketError.ProtocolNotSupported)] // EPROTO maps here on Linux
    [InlineData(SocketError.HostUnreachable)]    // EHOSTUNREACH
    [InlineData(SocketError.NetworkUnreachable)] // ENETUNREACH
    [InlineData(SocketError.SocketError)]        // anything the runtime does not name
    public async Task PendingNetworkErrorsPassedThroughAcceptAreLoggedAndAcceptingGoesOn(SocketError error)
    {
        // accept(2) reports pending network errors of the new socket on Linux; they must not stop the listener
        // (before: anything outside two lists was rethrown, the accept loop faulted and the host exited 1).
        var address = "UNIX:" + TestPaths.Socket("acc");
        var listener = ConnectionListener.Bind(TransportAddress.Parse(address), new TransportOptions(), NullLogger.Instance);
        var failures = 0;
        listener.AcceptOverride = (socket, token) =>
            Interlocked.Increment(ref failures) <= 2 ? ValueTask.FromException<Socket>(new SocketException((int)error)) : socket.AcceptAsync(token);
        await using var server = new ConnectionServer(listener, new EchoHandler(), NullLogger.Instance);
        server.Start();
        using var client = InProcessCacheServer.ConnectTo(listener.DisplayAddress);
        client.Send("ok"u8.ToArray());
        Assert.Equal("ok"u8.ToArray(), DistCacheVectorReplayer.ReadExactly(client, 2, Timeout, "after accept errors"));
        Assert.False(server.Completion.IsCompleted);
        Assert.True(failures >= 3);
    }

    [Fact]
    public async Task TheAcceptBackOffAfterResourceErrorsRunsOnTheInjectedClock()
    {
        // EMFILE backs off 100 ms, then 200 ms (ConnectionListener.MinBackoff, doubling): time that passes only when
        // the test advances the server's clock. A real-time back-off would accept within a few hundred ms.
        var address = "UNIX:" + TestPaths.Socket("bko");
        var listener = ConnectionListener.Bind(TransportAddress.Parse(address), new TransportOptions(), NullLogger.Instance);
        var failures = 0;
        listener.AcceptOverride = (socket, token) =>
            Interlocked.Increment(ref failures) <= 2 ? ValueTask.FromException<Socket>(new SocketException((int)SocketError.TooManyOpenSockets)) : socket.AcceptAsync(token);
        var clock = new FakeTimeProvider();
        await using var server = new ConnectionServer(listener, new EchoHandler(), NullLogger.Instance, timeProvider: clock);
        server.Start();
        using var client = InProcessCacheServer.ConnectTo(listener.DisplayAddress);
        client.Send("ok"u8.ToArray());
        await WaitUntil(() => Volatile.Read(ref failures) == 1);
        Assert.False(client.Poll(TimeSpan.FromMilliseconds(500), SelectMode.SelectRead), "accepted before the back-off passed on the clock");
        Assert.Equal(1, Volatile.Read(ref failures));

        var deadline = DateTime.UtcNow + Timeout;
        while (Volatile.Read(ref failures) < 3)
        {
            // The back-off may not be armed yet when the clock moves: keep advancing until both have run out.
            Assert.True(DateTime.UtcNow < deadline, $"still backing off after {failures} failures");
            clock.Advance(TimeSpan.FromMilliseconds(100));
            await Task.Delay(10);
        }

        Assert.Equal("ok"u8.ToArray(), DistCacheVectorReplayer.ReadExactly(client, 2, Timeout, "after the back-off"));
        Assert.False(server.Completion.IsCompleted);
    }

    [Fact]
    public void OnlyErrorsAboutTheListeningSocketItselfAreFatal()
    {
        Assert.True(ConnectionListener.IsFatalAcceptError(SocketError.InvalidArgument));
        Assert.True(ConnectionListener.IsFatalAcceptError(SocketError.NotSocket));
        Assert.False(ConnectionListener.IsFatalAcceptError(SocketError.NetworkDown));
        Assert.False(ConnectionListener.IsFatalAcceptError(SocketError.TooManyOpenSockets));
        Assert.False(ConnectionListener.IsFatalAcceptError(SocketError.SocketError));
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            await Task.Delay(10);
        }
    }
}
