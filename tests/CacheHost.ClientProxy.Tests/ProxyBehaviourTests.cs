using System.Net.Sockets;
using CacheHost.Client;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>ClientProxy limits and lifecycle over real sockets: idle timeout, connection and in-flight limits, socket permissions, departed clients.</summary>
public sealed class ProxyBehaviourTests
{
    private static readonly byte[] HaveRequest = Hex.Bytes("0011000000000000070003010003616263");
    private static readonly byte[] HaveAbsentReply = Hex.Bytes("001100000100000007000301000101");

    private static void Have(Socket socket)
    {
        socket.Send(HaveRequest);
        Assert.Equal(Hex.Of(HaveAbsentReply), Hex.Of(DistCacheVectorReplayer.ReadExactly(socket, HaveAbsentReply.Length, TimeSpan.FromSeconds(5), "HAVE")));
    }

    [Fact]
    public async Task IdleConnectionsAreClosedButActiveOnesStay()
    {
        // The idle limit runs on the role's clock: a minute that passes only as the test advances it (a real-time
        // limit would not run out during the test at all).
        var clock = new FakeTimeProvider();
        await using var server = await InProcessCacheServer.StartAsync();
        await using var proxy = await RoleHost.StartProxyAsync(server.Address, new Dictionary<string, string?> { ["CacheHost:ClientProxy:IdleMs"] = "60000" }, clock: clock);
        using var idle = InProcessCacheServer.ConnectTo(proxy.Address);
        using var active = InProcessCacheServer.ConnectTo(proxy.Address);
        Have(idle);
        Have(active);
        for (var i = 0; i < 6; i++)
        {
            clock.Advance(TimeSpan.FromSeconds(12));
            if (i == 3)
            {
                Assert.False(idle.Poll(TimeSpan.FromMilliseconds(100), SelectMode.SelectRead), "idle connection closed after 48 s of a 60 s limit");
            }

            try
            {
                Have(active); // a forward every 12 s keeps renewing the activity mark
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                throw new InvalidOperationException($"ping {i}: {ex.Message}\n" + string.Join("\n", proxy.Logs.Entries.Select(e => $"{e.EventId} {e.Message}")), ex);
            }
        }

        DistCacheVectorReplayer.ExpectClosed(idle, TimeSpan.FromSeconds(10), "idle connection");
        Have(active);
    }

    [Fact]
    public async Task LocalConnectionLimitRejectsTheExtraClient()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        await using var proxy = await RoleHost.StartProxyAsync(server.Address, new Dictionary<string, string?> { ["CacheHost:ClientProxy:Transport:MaxConnections"] = "2" });
        using var first = InProcessCacheServer.ConnectTo(proxy.Address);
        using var second = InProcessCacheServer.ConnectTo(proxy.Address);
        Have(first);
        Have(second);
        using (var third = InProcessCacheServer.ConnectTo(proxy.Address))
        {
            DistCacheVectorReplayer.ExpectClosed(third, TimeSpan.FromSeconds(2), "connection over the limit");
        }

        first.Dispose();
        await RoleHost.WaitUntilAsync(() => proxy.Proxy.Servers[0].ActiveConnections < 2, TimeSpan.FromSeconds(5), "the first connection to go");
        using var fourth = InProcessCacheServer.ConnectTo(proxy.Address);
        Have(fourth);
        Have(second);
    }

    [Fact]
    public async Task DefaultLimitIsTheReferences1024()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        await using var proxy = await RoleHost.StartProxyAsync(server.Address);
        Assert.Equal(1024, proxy.Proxy.Servers[0].Listener.Options.MaxConnections);
    }

    [Fact]
    public async Task InFlightLimitHoldsBackRequestsUntilAnswersArrive()
    {
        var serverAddress = "UNIX:" + TestPaths.Socket("inflight");
        using var server = ChildProcess.StartServer(serverAddress);
        await using var proxy = await RoleHost.StartProxyAsync(serverAddress, new Dictionary<string, string?> { ["CacheHost:ClientProxy:MaxInFlight"] = "2" });
        var sockets = Enumerable.Range(0, 3).Select(_ => InProcessCacheServer.ConnectTo(proxy.Address)).ToList();
        try
        {
            server.Pause();
            foreach (var socket in sockets)
            {
                socket.Send(HaveRequest);
            }

            await RoleHost.WaitUntilAsync(() => proxy.Proxy.Forwarded == 2, TimeSpan.FromSeconds(5), "two forwards");
            await Task.Delay(300);
            Assert.Equal(2, proxy.Proxy.Forwarded); // the third waits for a slot

            server.Signal(Mono.Unix.Native.Signum.SIGCONT);
            foreach (var socket in sockets)
            {
                Assert.Equal(Hex.Of(HaveAbsentReply), Hex.Of(DistCacheVectorReplayer.ReadExactly(socket, HaveAbsentReply.Length, TimeSpan.FromSeconds(5), "held-back HAVE")));
            }

            Assert.Equal(3, proxy.Proxy.Forwarded);
        }
        finally
        {
            sockets.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public async Task UnixSocketOwnerGroupAndModeAreApplied()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        var root = Environment.UserName == "root";
        await using var proxy = await RoleHost.StartProxyAsync(server.Address, new Dictionary<string, string?>
        {
            ["CacheHost:ClientProxy:Transport:SocketMode"] = "640",
            ["CacheHost:ClientProxy:Transport:SocketOwner"] = root ? "daemon" : Environment.UserName,
            ["CacheHost:ClientProxy:Transport:SocketGroup"] = root ? "daemon" : null,
        });
        var path = proxy.Address["UNIX:".Length..];
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, File.GetUnixFileMode(path));
        Assert.Equal(0, Mono.Unix.Native.Syscall.stat(path, out var stat));
        if (root)
        {
            var daemon = new Mono.Unix.UnixUserInfo("daemon");
            Assert.Equal((uint)daemon.UserId, stat.st_uid);
            Assert.Equal((uint)new Mono.Unix.UnixGroupInfo("daemon").GroupId, stat.st_gid);
        }
        else
        {
            Assert.Equal(Mono.Unix.Native.Syscall.getuid(), stat.st_uid);
        }
    }

    [Fact]
    public async Task ClientThatLeavesWithARequestInFlightDisturbsNobody()
    {
        var serverAddress = "UNIX:" + TestPaths.Socket("depart");
        using var server = ChildProcess.StartServer(serverAddress);
        await using var proxy = await RoleHost.StartProxyAsync(serverAddress);
        using var stays = InProcessCacheServer.ConnectTo(proxy.Address);
        server.Pause();
        using (var leaves = InProcessCacheServer.ConnectTo(proxy.Address))
        {
            leaves.Send(HaveRequest);
            await RoleHost.WaitUntilAsync(() => proxy.Proxy.Forwarded == 1, TimeSpan.FromSeconds(5), "the forward");
        }

        stays.Send(HaveRequest);
        await RoleHost.WaitUntilAsync(() => proxy.Proxy.Forwarded == 2, TimeSpan.FromSeconds(5), "the second forward");
        server.Signal(Mono.Unix.Native.Signum.SIGCONT);
        Assert.Equal(Hex.Of(HaveAbsentReply), Hex.Of(DistCacheVectorReplayer.ReadExactly(stays, HaveAbsentReply.Length, TimeSpan.FromSeconds(5), "the staying client's reply")));
        Have(stays);
        Assert.True(proxy.Proxy.IsServerConnected);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task RequestsOfOneLoopRoundShareOneServerWriteUnlessDisabled(bool coalesce)
    {
        await using var server = await InProcessCacheServer.StartAsync();
        await using var proxy = await RoleHost.StartProxyAsync(server.Address, new Dictionary<string, string?> { ["CacheHost:ClientProxy:CoalesceWrites"] = coalesce ? "true" : "false" });
        var clients = Enumerable.Range(0, 8).Select(_ => InProcessCacheServer.ConnectTo(proxy.Address)).ToArray();
        try
        {
            for (var burst = 0; burst < 50; burst++)
            {
                // Eight requests at once: the proxy's loop finds several ready in one round.
                foreach (var client in clients)
                {
                    client.Send(HaveRequest);
                }

                foreach (var client in clients)
                {
                    Assert.Equal(Hex.Of(HaveAbsentReply), Hex.Of(DistCacheVectorReplayer.ReadExactly(client, HaveAbsentReply.Length, TimeSpan.FromSeconds(5), $"burst {burst}")));
                }
            }
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
        }

        Assert.Equal(400, proxy.Proxy.Stats.Forwarded.Value);
        if (coalesce && CacheHost.Transport.SocketEngineSettings.UseEpoll)
        {
            // Coalescing happens at the end of an epoll loop's round, so only on the epoll engine (the suite can
            // be run on the runtime's engine with CACHEHOST_TRANSPORT_ENGINE=sockets). Measured on a quiet machine: about 200 writes coalesced, about 396 without (only the rare overlap
            // with a write in progress batches then). A slower loop finds more per round, never fewer.
            Assert.True(proxy.Proxy.Stats.Writes <= proxy.Proxy.Stats.Forwarded.Value * 3 / 4, $"{proxy.Proxy.Stats.Writes} writes for {proxy.Proxy.Stats.Forwarded.Value} requests: too little was coalesced");
        }
    }

    [Theory]
    [InlineData(null)]
    [InlineData(false)]
    public async Task LocalConnectionsJoinTheServerLinksLoopUnlessSingleLoopIsOff(bool? singleLoop)
    {
        // Same affinity name on both sides = same epoll loop (the engine's side is SocketEngineTests'
        // ConnectionsNamingOneLoopAffinityAreServedByOneLoop). Traffic must flow either way.
        await using var server = await InProcessCacheServer.StartAsync();
        var settings = new Dictionary<string, string?>();
        if (singleLoop is { } value)
        {
            settings["CacheHost:ClientProxy:SingleLoop"] = value ? "true" : "false";
        }

        await using var proxy = await RoleHost.StartProxyAsync(server.Address, settings);
        var options = proxy.Proxy.Options;
        if (singleLoop ?? true)
        {
            Assert.NotNull(options.Transport.LoopAffinity);
            Assert.Equal(options.Transport.LoopAffinity, options.ServerTransport.LoopAffinity);
        }
        else
        {
            Assert.Null(options.Transport.LoopAffinity);
            Assert.Null(options.ServerTransport.LoopAffinity);
        }

        var clients = Enumerable.Range(0, 4).Select(_ => InProcessCacheServer.ConnectTo(proxy.Address)).ToArray();
        try
        {
            foreach (var client in clients)
            {
                client.Send(HaveRequest);
            }

            foreach (var client in clients)
            {
                Assert.Equal(Hex.Of(HaveAbsentReply), Hex.Of(DistCacheVectorReplayer.ReadExactly(client, HaveAbsentReply.Length, TimeSpan.FromSeconds(5), "have")));
            }
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
        }
    }

    [Fact]
    public async Task ResponsesWithUnknownUidsAreDiscardedQuietly()
    {
        // A server that answers every request twice (second copy with a uid nobody asked for).
        var answers = 0;
        using var server = new FakeDistCacheServer((_, _) => [0x01]) { ReplyUid = uid => Interlocked.Increment(ref answers) % 2 == 0 ? uid + 100_000 : uid };
        await using var proxy = await RoleHost.StartProxyAsync(server.Address);
        await using var client = await DistCacheClient.CreateAsync(proxy.Address, DistCacheClientFlags.Persistent);
        var results = new List<DistCacheHaveResult>();
        for (var i = 0; i < 4; i++)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            try
            {
                results.Add(await client.HaveAsync("abc"u8.ToArray(), timeout.Token));
            }
            catch (OperationCanceledException)
            {
                results.Add(DistCacheHaveResult.Error);
            }
        }

        // Every other reply carries a foreign uid and is dropped (that request times out on the client, which then
        // reconnects); the proxy keeps its link and serves the rest.
        Assert.Equal([DistCacheHaveResult.No, DistCacheHaveResult.Error, DistCacheHaveResult.No, DistCacheHaveResult.Error], results);
        Assert.True(proxy.Proxy.UnknownResponses > 0);
        Assert.True(proxy.Proxy.IsServerConnected);
    }
}

/// <summary>Uid rewriting: a 32-bit counter from 1 that wraps modulo 2^32 (fix of 13.9) and skips uids still in flight.</summary>
public sealed class ProxyUidTests
{
    [Fact]
    public async Task ForwardedUidsCountFromOneAndWrapAt32Bits()
    {
        using var server = new FakeDistCacheServer((_, _) => [0x01]);
        await using var proxy = await RoleHost.StartProxyAsync(server.Address);
        await using var client = await DistCacheClient.CreateAsync(proxy.Address, DistCacheClientFlags.Persistent);
        await client.HaveAsync("a"u8.ToArray());
        await client.HaveAsync("b"u8.ToArray());
        proxy.Proxy.Link.LastUid = 0xFFFF_FFFE;
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(DistCacheHaveResult.No, await client.HaveAsync("c"u8.ToArray()));
        }

        Assert.Equal([1u, 2u, 0xFFFF_FFFFu, 0u, 1u], server.Uids);
    }

    [Fact]
    public async Task UidsStillInFlightAreSkippedAfterTheWrap()
    {
        // The answer to the first request (uid 1) comes back with a foreign uid, so uid 1 stays in flight.
        using var server = new FakeDistCacheServer((_, _) => [0x01]) { ReplyUid = uid => uid == 1 ? 0xDEAD_BEEF : uid };
        await using var proxy = await RoleHost.StartProxyAsync(server.Address);
        using var stuck = InProcessCacheServer.ConnectTo(proxy.Address);
        stuck.Send(Hex.Bytes("0011000000000000070003010003616263"));
        await RoleHost.WaitUntilAsync(() => server.Uids.Count == 1, TimeSpan.FromSeconds(5), "the first forward");

        proxy.Proxy.Link.LastUid = 0xFFFF_FFFF;
        await using var client = await DistCacheClient.CreateAsync(proxy.Address, DistCacheClientFlags.Persistent);
        Assert.Equal(DistCacheHaveResult.No, await client.HaveAsync("x"u8.ToArray()));
        Assert.Equal(DistCacheHaveResult.No, await client.HaveAsync("y"u8.ToArray()));
        Assert.Equal([1u, 0u, 2u], server.Uids); // 0 is fine, 1 is still in flight and skipped
    }
}
