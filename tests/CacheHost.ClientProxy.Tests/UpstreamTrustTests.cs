using System.Buffers;
using System.Net.Sockets;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// Issue 21 items 3 and 10 over real sockets. The proxy no longer trusts its server blindly (a reply with another
/// operation than its request drops the link; an optional per-request timeout), and in front of an original C
/// dc_server — here <see cref="FakeOriginalServer"/>, a model of its reading defect (distcache §13.1), since no original
/// binary is available — it gives no wrong answers by default.
/// </summary>
public sealed class UpstreamTrustTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task AReplyWithAnotherOperationIsAProtocolErrorOnTheLink()
    {
        using var server = new FakeDistCacheServer((op, _) => [1]) { ReplyOperation = op => op == DistCacheOperation.Get ? DistCacheOperation.Have : op };
        await using var proxy = await RoleHost.StartProxyAsync(server.Address, new Dictionary<string, string?> { ["CacheHost:ClientProxy:RetryMs"] = "50" });
        using var client = InProcessCacheServer.ConnectTo(proxy.Address);

        client.Send(Request(77, DistCacheOperation.Get, "session"u8));
        var (uid, operation, payload) = ReadReply(client);
        Assert.Equal((77u, DistCacheOperation.Get), (uid, operation));
        Assert.Equal([(byte)DistCacheResult.Disconnected], payload);
        Assert.Equal(1, proxy.Proxy.Stats.MismatchedResponses);
        await RoleHost.WaitUntilAsync(() => proxy.Proxy.Stats.Connects >= 2, Wait, "the reconnect");

        // HAVE answers keep their operation: served normally over the new link.
        client.Send(Request(78, DistCacheOperation.Have, "session"u8));
        AssertReply(ReadReply(client), 78, DistCacheOperation.Have, [1]);
    }

    [Fact]
    public async Task TheRedialAfterALostLinkWaitsRetryMsOnTheInjectedClock()
    {
        // One clock (issue 16): the retry pause is measured on the role's TimeProvider, so a minute passes only when
        // the test advances it. Before, DateTime.UtcNow and an un-injected Task.Delay timed it.
        var clock = new FakeTimeProvider();
        using var server = new FakeDistCacheServer((op, _) => [1]) { ReplyOperation = op => op == DistCacheOperation.Get ? DistCacheOperation.Have : op };
        await using var proxy = await RoleHost.StartProxyAsync(server.Address, new Dictionary<string, string?> { ["CacheHost:ClientProxy:RetryMs"] = "60000" }, clock: clock);
        using var client = InProcessCacheServer.ConnectTo(proxy.Address);

        client.Send(Request(77, DistCacheOperation.Get, "session"u8));
        Assert.Equal([(byte)DistCacheResult.Disconnected], ReadReply(client).Payload); // the link is dropped
        await RoleHost.WaitUntilAsync(() => !proxy.Proxy.IsServerConnected, Wait, "the link to drop");
        clock.Advance(TimeSpan.FromSeconds(59));
        Assert.False(proxy.Proxy.IsServerConnected);
        Assert.Equal(1, proxy.Proxy.Stats.Connects);

        await RoleHost.AdvanceUntilAsync(clock, TimeSpan.FromSeconds(1), () => proxy.Proxy.Stats.Connects >= 2, Wait, "the redial after RetryMs");
        await RoleHost.WaitUntilAsync(() => proxy.Proxy.IsServerConnected, Wait, "the redialled link");
        client.Send(Request(78, DistCacheOperation.Have, "session"u8));
        AssertReply(ReadReply(client), 78, DistCacheOperation.Have, [1]);
    }

    [Fact]
    public async Task AnUnansweredRequestGets0x02AfterRequestTimeoutAndTheLinkIsRenewed()
    {
        var clock = new FakeTimeProvider();
        using var server = new FakeDistCacheServer((op, _) => [0]) { Unanswered = op => op == DistCacheOperation.Get };
        await using var proxy = await RoleHost.StartProxyAsync(server.Address, new Dictionary<string, string?>
        {
            ["CacheHost:ClientProxy:RequestTimeoutMs"] = "5000",
            ["CacheHost:ClientProxy:RetryMs"] = "50",
        }, clock: clock);
        using var client = InProcessCacheServer.ConnectTo(proxy.Address);

        client.Send(Request(5, DistCacheOperation.Get, "nobody-answers"u8));
        await RoleHost.WaitUntilAsync(() => proxy.Proxy.Link.InFlight == 1, Wait, "the GET in flight");
        clock.Advance(TimeSpan.FromSeconds(4));
        Assert.Equal(0, proxy.Proxy.Stats.RequestTimeouts);
        Assert.Equal(0, client.Available);

        clock.Advance(TimeSpan.FromSeconds(2.5)); // past 5 s plus the check period (a quarter)
        var (uid, _, payload) = ReadReply(client);
        Assert.Equal(5u, uid);
        Assert.Equal([(byte)DistCacheResult.Disconnected], payload);
        Assert.Equal(1, proxy.Proxy.Stats.RequestTimeouts);

        // The reconnect waits RetryMs on the injected clock.
        await RoleHost.WaitUntilAsync(() =>
        {
            clock.Advance(TimeSpan.FromMilliseconds(50));
            return proxy.Proxy.Stats.Connects >= 2 && proxy.Proxy.IsServerConnected;
        }, Wait, "the reconnect");

        client.Send(Request(6, DistCacheOperation.Have, "x"u8));
        Assert.Equal([0], ReadReply(client).Payload);
    }

    [Fact]
    public void TheFakeOriginalReproducesTheDocumentedDefects()
    {
        // known-defects D: an ADD of 4069 payload bytes in one write gets three answers (00, then errors); 4068 one.
        using var server = new FakeOriginalServer();
        using var socket = InProcessCacheServer.ConnectTo(server.Address);
        socket.Send(Request(1, DistCacheOperation.Add, AddPayload("a", 4068 - 9)));
        AssertReply(ReadReply(socket), 1, DistCacheOperation.Add, [0]);
        Assert.Equal(0, server.Phantoms);

        socket.Send(Request(2, DistCacheOperation.Add, AddPayload("b", 4069 - 9)));
        Assert.Equal([0], ReadReply(socket).Payload);
        var more = ReadReply(socket);
        Assert.NotEqual([0], more.Payload);
        Assert.True(server.Phantoms >= 1);
    }

    [Fact]
    public async Task InFrontOfAnOriginalServerTheDefaultGivesNoWrongAnswers()
    {
        // The scenario: 4 parallel clients, 2100-4000-byte sessions. With pipelining (the old default) the
        // original's phantom replies were taken as answers; the default now keeps one request on the link.
        using var server = new FakeOriginalServer();
        await using var proxy = await RoleHost.StartProxyAsync(server.Address, new Dictionary<string, string?> { ["CacheHost:ClientProxy:ServerKind"] = "Original" });
        Assert.Equal(1, proxy.Proxy.Options.EffectiveDepth);
        var wrong = await RunClientsAsync(proxy.Address, clients: 4, sessionsEach: 1000); // at depth 512 (the old default): 4-6 wrong answers in each of 4 runs
        Assert.Equal(0, wrong);
        Assert.Equal(0, server.Phantoms);
    }

    [Fact]
    public async Task AddsAnOriginalWouldStoreCorruptedAreRefusedUnlessTheServerIsCacheHost()
    {
        using var original = new FakeOriginalServer();
        await using (var proxy = await RoleHost.StartProxyAsync(original.Address, new Dictionary<string, string?> { ["CacheHost:ClientProxy:ServerKind"] = "Original" }))
        {
            using var client = InProcessCacheServer.ConnectTo(proxy.Address);
            foreach (var length in new[] { 4069, 4070, 4071, 4072, 6117, 6120 })
            {
                client.Send(Request((uint)length, DistCacheOperation.Add, AddPayload("w" + length, length - 13)));
                var (uid, operation, payload) = ReadReply(client);
                Assert.Equal(((uint)length, DistCacheOperation.Add), (uid, operation));
                Assert.Equal([(byte)DistCacheResult.AddDataRange], payload);
            }

            client.Send(Request(1, DistCacheOperation.Add, AddPayload("fine", 4073 - 12)));
            Assert.Equal([0], ReadReply(client).Payload);
            Assert.Equal(1, original.Requests); // only the last one reached the server
            Assert.Contains(proxy.Logs.Entries, e => e.EventId == 6013);
        }

        await using var cacheHost = await InProcessCacheServer.StartAsync();
        await using var trusting = await RoleHost.StartProxyAsync(cacheHost.Address); // ServerKind=CacheHost
        using var direct = InProcessCacheServer.ConnectTo(trusting.Address);
        direct.Send(Request(9, DistCacheOperation.Add, AddPayload("ok", 4069 - 10)));
        Assert.Equal([0], ReadReply(direct).Payload);
    }

    [Fact]
    public async Task PipeliningAboveOneNeedsServerKindCacheHost()
    {
        var error = await Assert.ThrowsAnyAsync<Exception>(() => RoleHost.StartProxyAsync("UNIX:/nonexistent/x.sock", new Dictionary<string, string?>
        {
            ["CacheHost:ClientProxy:ServerKind"] = "Original",
            ["CacheHost:ClientProxy:ServerPipelineDepth"] = "8",
        }, waitForLink: false));
        Assert.Contains("ServerPipelineDepth", error.Message);
        Assert.Contains("ServerKind=CacheHost", error.Message);
    }

    /// <summary>Clients ADD then GET sessions of 2100..4000 bytes; returns the number of wrong answers.</summary>
    internal static async Task<int> RunClientsAsync(string address, int clients, int sessionsEach)
    {
        var wrong = 0;
        var tasks = Enumerable.Range(0, clients).Select(c => Task.Factory.StartNew(() =>
        {
            using var socket = InProcessCacheServer.ConnectTo(address);
            var random = new Random(c);
            for (var i = 0; i < sessionsEach; i++)
            {
                var id = $"c{c}-s{i}-{Guid.NewGuid():N}";
                var data = new byte[random.Next(2100, 4001)];
                random.NextBytes(data);
                var payload = new byte[8 + id.Length + data.Length];
                AddRequest.Write(payload, 600_000, System.Text.Encoding.ASCII.GetBytes(id), data);
                socket.Send(Request((uint)(2 * i), DistCacheOperation.Add, payload));
                var add = ReadReply(socket);
                socket.Send(Request((uint)((2 * i) + 1), DistCacheOperation.Get, System.Text.Encoding.ASCII.GetBytes(id)));
                var get = ReadReply(socket);
                if (add.Uid != 2 * i || add.Payload is not [0] || get.Uid != (2 * i) + 1 || !get.Payload.AsSpan().SequenceEqual(data))
                {
                    Interlocked.Increment(ref wrong);
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(120));
        return wrong;
    }

    /// <summary>An ADD payload whose total length is 8 + id + <paramref name="dataLength"/>.</summary>
    internal static byte[] AddPayload(string id, int dataLength)
    {
        var idBytes = System.Text.Encoding.ASCII.GetBytes(id);
        var payload = new byte[8 + idBytes.Length + dataLength];
        AddRequest.Write(payload, 600_000, idBytes, Enumerable.Range(0, dataLength).Select(i => (byte)(i * 7)).ToArray());
        return payload;
    }

    internal static void AssertReply((uint Uid, DistCacheOperation Operation, byte[] Payload) reply, uint uid, DistCacheOperation operation, byte[] payload)
    {
        Assert.Equal((uid, operation), (reply.Uid, reply.Operation));
        Assert.Equal(payload, reply.Payload);
    }

    internal static byte[] Request(uint uid, DistCacheOperation op, ReadOnlySpan<byte> payload)
    {
        var writer = new ArrayBufferWriter<byte>();
        DistCacheMessageWriter.Write(writer, false, uid, op, payload);
        return writer.WrittenSpan.ToArray();
    }

    internal static (uint Uid, DistCacheOperation Operation, byte[] Payload) ReadReply(Socket socket)
    {
        var payload = new List<byte>();
        while (true)
        {
            var header = FrameHeader.Read(DistCacheVectorReplayer.ReadExactly(socket, 14, Wait, "reply header"));
            payload.AddRange(header.DataLength == 0 ? [] : DistCacheVectorReplayer.ReadExactly(socket, header.DataLength, Wait, "reply data"));
            if (header.Complete == 1)
            {
                return (header.Uid, (DistCacheOperation)header.Operation, [.. payload]);
            }
        }
    }
}
