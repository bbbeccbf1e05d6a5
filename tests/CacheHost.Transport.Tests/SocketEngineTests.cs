using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using CacheHost.Testing;
using CacheHost.Transport.Epoll;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace CacheHost.Transport.Tests;

/// <summary>
/// The two socket engines (CacheHost's epoll loops and the runtime's sockets) behind the same pipes: data
/// integrity under backpressure both ways, FIN, abort, many connections, outbound connects, batch-end work.
/// Everything over real sockets; the server side of each pair is a transport connection, the client a raw socket.
/// </summary>
public sealed class SocketEngineTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    public static TheoryData<string, bool> Engines => new()
    {
        { "epoll", false },
        { "epoll", true },
        { "sockets", false },
        { "sockets", true },
    };

    /// <summary>True when the suite runs with <c>CACHEHOST_TRANSPORT_ENGINE=sockets</c> (the runtime's engine everywhere).</summary>
    private static bool SocketsForced => "sockets".Equals(Environment.GetEnvironmentVariable(SocketEngineSettings.EngineVariable), StringComparison.OrdinalIgnoreCase);

    [Fact]
    public async Task ConnectionsUseTheEpollEngineByDefault()
    {
        Assert.True(EpollEngine.IsSupported);
        Assert.Equal(!SocketsForced, SocketEngineSettings.UseEpoll);
        var path = TestPaths.Socket("eng");
        await using var listener = ConnectionListener.Bind(TransportAddress.Parse("UNIX:" + path), new TransportOptions(), NullLogger.Instance);
        using var client = InProcessCacheServer.ConnectTo("UNIX:" + path);
        await using var accepted = await listener.AcceptAsync().AsTask().WaitAsync(Timeout);
        Assert.IsType(SocketsForced ? typeof(SocketConnection) : typeof(EpollSocketConnection), accepted);
        listener.Unbind();
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task LargeTransfersBothWaysSurviveBackpressureUnchanged(string engine, bool tcp)
    {
        // Small pipe limits make the receive side pause and resume and the send side block on a full socket.
        var options = new TransportOptions { MaxReadBufferSize = 8192, MaxWriteBufferSize = 8192 };
        var (connection, client) = Pair(engine, tcp, options);
        await using var _ = connection;
        using var __ = client;
        var echo = EchoAsync(connection);
        var data = new byte[4 * 1024 * 1024];
        new Random(7).NextBytes(data);
        var send = Task.Run(() =>
        {
            // Uneven chunks so frames of the echo never line up with what was sent.
            for (var offset = 0; offset < data.Length;)
            {
                var length = Math.Min(data.Length - offset, 1 + ((offset * 31) % 70_000));
                offset += client.Send(data, offset, length, SocketFlags.None);
            }
        });

        // Read slowly at first, so the echo's output backs up into the kernel and the transport must wait for EPOLLOUT.
        await Task.Delay(300);
        var echoed = await Task.Run(() => DistCacheVectorReplayer.ReadExactly(client, data.Length, Timeout, "echo")).WaitAsync(Timeout);
        await send.WaitAsync(Timeout);
        Assert.Equal(data, echoed);
        client.Shutdown(SocketShutdown.Send);
        Assert.Equal(data.Length, await echo.WaitAsync(Timeout));
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task PeerFinCompletesInputAndFiresConnectionClosed(string engine, bool tcp)
    {
        var (connection, client) = Pair(engine, tcp, new TransportOptions());
        await using var _ = connection;
        client.Send("last words"u8.ToArray());
        client.Shutdown(SocketShutdown.Both);
        client.Dispose();

        var input = connection.Transport.Input;
        var received = new List<byte>();
        while (true)
        {
            var result = await input.ReadAsync().AsTask().WaitAsync(Timeout);
            received.AddRange(result.Buffer.ToArray());
            input.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        Assert.Equal("last words"u8.ToArray(), received.ToArray());
        await Task.Delay(System.Threading.Timeout.Infinite, connection.ConnectionClosed).ContinueWith(_ => { }).WaitAsync(Timeout);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task AbortEndsAPendingReadAndClosesThePeer(string engine, bool tcp)
    {
        var (connection, client) = Pair(engine, tcp, new TransportOptions());
        await using var _ = connection;
        using var __ = client;
        var read = connection.Transport.Input.ReadAsync().AsTask();
        await Task.Delay(100);
        Assert.False(read.IsCompleted);
        connection.Abort("test abort");
        var ended = await Task.WhenAny(read, Task.Delay(Timeout));
        Assert.Same(read, ended);
        if (!read.IsFaulted)
        {
            Assert.True((await read).IsCompleted);
        }

        DistCacheVectorReplayer.ExpectClosed(client, Timeout, "aborted connection");
    }

    [Theory]
    [InlineData("epoll")]
    [InlineData("sockets")]
    public async Task ManyConnectionsComeAndGoWithoutCrossTalk(string engine)
    {
        // Sequential churn reuses epoll slots; a late event for a gone connection must never reach its successor.
        for (var round = 0; round < 5; round++)
        {
            var pairs = Enumerable.Range(0, 40).Select(_ => Pair(engine, tcp: false, new TransportOptions())).ToArray();
            var echoes = pairs.Select(p => EchoAsync(p.Connection)).ToArray();
            // Async clients: forty blocked pool threads would starve the runtime engine's continuations.
            var tag = round * 1000;
            await Task.WhenAll(pairs.Select(async (p, i) =>
            {
                var message = BitConverter.GetBytes(tag + i);
                var reply = new byte[message.Length];
                for (var k = 0; k < 20; k++)
                {
                    await p.Client.SendAsync(message);
                    var read = 0;
                    while (read < reply.Length)
                    {
                        var n = await p.Client.ReceiveAsync(reply.AsMemory(read));
                        Assert.True(n > 0, $"connection {i} closed early");
                        read += n;
                    }

                    Assert.Equal(message, reply);
                }

                p.Client.Dispose();
            })).WaitAsync(Timeout);
            await Task.WhenAll(echoes).WaitAsync(Timeout);
            foreach (var (connection, _) in pairs)
            {
                await connection.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task OutboundConnectionsRunOnTheEngineAndReportRefusal()
    {
        var path = TestPaths.Socket("out");
        using var raw = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        raw.Bind(new UnixDomainSocketEndPoint(path));
        raw.Listen();
        await using (var outbound = await OutboundConnector.ConnectAsync(TransportAddress.Parse("UNIX:" + path), new TransportOptions(), NullLogger.Instance).AsTask().WaitAsync(Timeout))
        {
            Assert.IsType(SocketsForced ? typeof(SocketConnection) : typeof(EpollSocketConnection), outbound);
            using var peer = raw.Accept();
            await outbound.Transport.Output.WriteAsync("hello"u8.ToArray());
            Assert.Equal("hello"u8.ToArray(), DistCacheVectorReplayer.ReadExactly(peer, 5, Timeout, "outbound write"));
            peer.Send("back"u8.ToArray());
            var result = await outbound.Transport.Input.ReadAtLeastAsync(4).AsTask().WaitAsync(Timeout);
            Assert.Equal("back"u8.ToArray(), result.Buffer.ToArray());
            outbound.Transport.Input.AdvanceTo(result.Buffer.End);
        }

        await Assert.ThrowsAnyAsync<SocketException>(async () =>
            await OutboundConnector.ConnectAsync(TransportAddress.Parse("UNIX:" + TestPaths.Socket("missing")), new TransportOptions(), NullLogger.Instance));

        using var closedPort = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        closedPort.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var port = ((IPEndPoint)closedPort.LocalEndPoint!).Port; // bound, never listening: connects are refused
        var refused = await Assert.ThrowsAnyAsync<SocketException>(async () =>
            await OutboundConnector.ConnectAsync(TransportAddress.Parse($"IP:127.0.0.1:{port}"), new TransportOptions(), NullLogger.Instance));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
    }

    [Fact]
    public async Task OutboundTcpConnectCompletesAsynchronously()
    {
        using var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        raw.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        raw.Listen();
        var port = ((IPEndPoint)raw.LocalEndPoint!).Port;
        await using var outbound = await OutboundConnector.ConnectAsync(TransportAddress.Parse($"IP:127.0.0.1:{port}"), new TransportOptions(), NullLogger.Instance).AsTask().WaitAsync(Timeout);
        using var peer = raw.Accept();
        await outbound.Transport.Output.WriteAsync("tcp"u8.ToArray());
        Assert.Equal("tcp"u8.ToArray(), DistCacheVectorReplayer.ReadExactly(peer, 3, Timeout, "tcp outbound"));
    }

    [Fact]
    public async Task BatchEndWorkRunsOnTheLoopAfterTheRoundAndNowhereElse()
    {
        Assert.False(EpollEngine.OnEngineThread);
        Assert.False(EpollEngine.RunAtBatchEnd(static _ => throw new InvalidOperationException("must not run"), null));

        var (connection, client) = Pair("epoll", tcp: false, new TransportOptions());
        await using var _ = connection;
        using var __ = client;
        var ran = new TaskCompletionSource<(int Thread, bool OnLoop)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var reader = Task.Run(async () =>
        {
            var result = await connection.Transport.Input.ReadAsync();

            // Inline scheduling: this continuation runs on the loop that received the bytes.
            var thread = Environment.CurrentManagedThreadId;
            var queued = EpollEngine.RunAtBatchEnd(static state =>
            {
                var (tcs, _) = ((TaskCompletionSource<(int, bool)>, int))state!;
                tcs.TrySetResult((Environment.CurrentManagedThreadId, EpollEngine.OnEngineThread));
            }, (ran, 0));
            connection.Transport.Input.AdvanceTo(result.Buffer.End);
            return (queued, thread);
        });
        await Task.Delay(100);
        client.Send("x"u8.ToArray());
        var (queuedOnLoop, readerThread) = await reader.WaitAsync(Timeout);
        Assert.True(queuedOnLoop);
        var (actionThread, onLoop) = await ran.Task.WaitAsync(Timeout);
        Assert.True(onLoop);
        Assert.Equal(readerThread, actionThread);
    }

    [Fact]
    public async Task ConnectionsNamingOneLoopAffinityAreServedByOneLoop()
    {
        if (SocketsForced)
        {
            return; // the runtime's engine has no loops of ours to choose from
        }

        // Without the affinity, the engine hands consecutive connections to consecutive loops (round-robin).
        var options = new TransportOptions { LoopAffinity = $"affinity test {Guid.NewGuid()}" };
        var pairs = Enumerable.Range(0, 8).Select(_ => Pair("epoll", tcp: false, options)).ToList();
        try
        {
            var readers = pairs.Select(pair => Task.Run(async () =>
            {
                var result = await pair.Connection.Transport.Input.ReadAsync();

                // Inline scheduling: this continuation runs on the loop that received the bytes.
                var where = (Environment.CurrentManagedThreadId, EpollEngine.OnEngineThread);
                pair.Connection.Transport.Input.AdvanceTo(result.Buffer.End);
                return where;
            })).ToList();
            await Task.Delay(100);
            foreach (var pair in pairs)
            {
                pair.Client.Send("x"u8.ToArray());
            }

            var seen = await Task.WhenAll(readers).WaitAsync(Timeout);
            Assert.All(seen, where => Assert.True(where.OnEngineThread));
            Assert.Single(seen.Select(where => where.CurrentManagedThreadId).Distinct());
        }
        finally
        {
            foreach (var (connection, client) in pairs)
            {
                client.Dispose();
                await connection.DisposeAsync();
            }
        }
    }

    private static (TransportConnection Connection, Socket Client) Pair(string engine, bool tcp, TransportOptions options)
    {
        using var listener = tcp
            ? new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)
            : new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(tcp ? new IPEndPoint(IPAddress.Loopback, 0) : new UnixDomainSocketEndPoint(TestPaths.Socket("pair")));
        listener.Listen();
        var client = tcp
            ? new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)
            : new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(listener.LocalEndPoint!);
        var accepted = listener.Accept();
        TransportConnection connection = engine == "epoll"
            ? EpollSocketConnection.Start(accepted, options, NullLogger.Instance)
            : SocketConnection.Start(accepted, options, NullLogger.Instance);
        return (connection, client);
    }

    /// <summary>Echoes until the peer's FIN; returns the number of bytes echoed.</summary>
    private static async Task<long> EchoAsync(TransportConnection connection)
    {
        var input = connection.Transport.Input;
        var output = connection.Transport.Output;
        long total = 0;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync();
                foreach (var segment in result.Buffer)
                {
                    await output.WriteAsync(segment);
                    total += segment.Length;
                }

                input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (IOException)
        {
            // the peer went away mid-echo
        }
        catch (OperationCanceledException)
        {
        }

        return total;
    }
}
