using CacheHost.Client;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>The DC_CTX equivalent against a real CacheServer and against a scripted server (distcache §8 result rules, connection modes).</summary>
public sealed class ClientLibraryTests
{
    private static readonly byte[] Id = "client-lib-session-1"u8.ToArray();

    [Theory]
    [InlineData(DistCacheClientFlags.None)]
    [InlineData(DistCacheClientFlags.Persistent)]
    [InlineData(DistCacheClientFlags.Persistent | DistCacheClientFlags.Retry)]
    [InlineData(DistCacheClientFlags.Persistent | DistCacheClientFlags.Late)]
    public async Task OperationsFollowTheCLibraryRules(DistCacheClientFlags flags)
    {
        await using var server = await InProcessCacheServer.StartAsync();
        await using var client = await DistCacheClient.CreateAsync(server.Address, flags);
        var data = new byte[5000];
        Random.Shared.NextBytes(data);

        Assert.Equal(DistCacheHaveResult.No, await client.HaveAsync(Id));
        Assert.True(await client.AddAsync(Id, data, 60_000));
        Assert.False(await client.AddAsync(Id, data, 60_000)); // 0x65: ADD never replaces
        Assert.Equal(DistCacheHaveResult.Yes, await client.HaveAsync(Id));

        // Too small a buffer: no success, but the needed size, and the data again without a round trip.
        var small = await client.GetAsync(Id, new byte[10]);
        Assert.Equal(new DistCacheGetResult(false, 5000, true), small);
        var copy = new byte[5000];
        Assert.True(client.ReGet(copy, out var length));
        Assert.Equal(5000, length);
        Assert.Equal(data, copy);

        var full = new byte[8000];
        var get = await client.GetAsync(Id, full);
        Assert.True(get.Success);
        Assert.Equal(data, full.AsSpan(0, get.Length).ToArray());

        Assert.True(await client.RemoveAsync(Id));
        Assert.False(await client.RemoveAsync(Id));
        Assert.False((await client.GetAsync(Id, full)).Success);
        Assert.False(client.ReGet(copy, out _));
    }

    [Fact]
    public async Task SessionsShorterThanFiveBytesReadAsMisses()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        await using var client = await DistCacheClient.CreateAsync(server.Address, DistCacheClientFlags.Persistent);
        Assert.True(await client.AddAsync(Id, new byte[] { 1, 2, 3, 4 }, 60_000));
        var result = await client.GetAsync(Id, new byte[100]);
        Assert.False(result.Success); // distcache §8 / 13.5: < 5 bytes is a miss for the C library
        Assert.Equal(DistCacheHaveResult.Yes, await client.HaveAsync(Id));
    }

    [Theory]
    [InlineData(new byte[] { 0x00 }, DistCacheHaveResult.Yes)]
    [InlineData(new byte[] { 0x01 }, DistCacheHaveResult.No)]
    [InlineData(new byte[] { 0x02 }, DistCacheHaveResult.Error)]
    [InlineData(new byte[] { 0x00, 0x00 }, DistCacheHaveResult.No)]
    [InlineData(new byte[0], DistCacheHaveResult.Error)]
    public async Task HaveInterpretsEveryAnswerLikeTheCLibrary(byte[] answer, DistCacheHaveResult expected)
    {
        using var server = new FakeDistCacheServer((_, _) => answer);
        await using var client = await DistCacheClient.CreateAsync(server.Address, DistCacheClientFlags.Persistent);
        Assert.Equal(expected, await client.HaveAsync(Id));
    }

    [Theory]
    [InlineData(new byte[] { 0x00 }, true)]
    [InlineData(new byte[] { 0x00, 0x00 }, false)]
    [InlineData(new byte[] { 0x65 }, false)]
    [InlineData(new byte[] { 0x02 }, false)]
    [InlineData(new byte[0], false)]
    public async Task AddSucceedsOnlyOnExactlyOneZeroByte(byte[] answer, bool expected)
    {
        using var server = new FakeDistCacheServer((_, _) => answer);
        await using var client = await DistCacheClient.CreateAsync(server.Address, DistCacheClientFlags.None);
        Assert.Equal(expected, await client.AddAsync(Id, new byte[10], 1000));
        Assert.Equal(expected, await client.RemoveAsync(Id));
    }

    [Fact]
    public async Task UidsComeFromOneIncreasingProcessWideCounter()
    {
        using var server = new FakeDistCacheServer((_, _) => [0x01]);
        await using var a = await DistCacheClient.CreateAsync(server.Address, DistCacheClientFlags.Persistent);
        await using var b = await DistCacheClient.CreateAsync(server.Address, DistCacheClientFlags.None);
        await a.HaveAsync(Id);
        await b.HaveAsync(Id);
        await a.HaveAsync(Id);
        var uids = server.Uids;
        Assert.Equal(3, uids.Count);
        Assert.True(uids[0] >= 1 && uids[0] < uids[1] && uids[1] < uids[2], string.Join(",", uids));
    }

    [Fact]
    public async Task ResponseWithAnotherUidIsATransactionFailure()
    {
        // A server that answers with a wrong uid: the library must not accept it.
        using var server = new FakeDistCacheServer((_, _) => [0x00]) { ReplyUid = uid => uid + 1 };
        await using var client = await DistCacheClient.CreateAsync(server.Address, DistCacheClientFlags.Persistent);
        Assert.Equal(DistCacheTransactionStatus.Mismatch, await client.TransactAsync(DistCacheOperation.Have, Id));
        Assert.Equal(DistCacheHaveResult.Error, await client.HaveAsync(Id));
    }

    [Fact]
    public async Task PersistentCreationFailsWhenTheServerIsMissingButLateConnectDoesNot()
    {
        var missing = "UNIX:" + TestPaths.Socket("missing");
        await Assert.ThrowsAnyAsync<Exception>(async () => await DistCacheClient.CreateAsync(missing, DistCacheClientFlags.Persistent));

        await using var late = await DistCacheClient.CreateAsync(missing, DistCacheClientFlags.Persistent | DistCacheClientFlags.Late);
        Assert.Equal(DistCacheHaveResult.Error, await late.HaveAsync(Id));
        Assert.Equal(DistCacheTransactionStatus.NetworkError, late.LastStatus);

        await using var server = await InProcessCacheServer.StartAsync(listen: missing);
        Assert.Equal(DistCacheHaveResult.No, await late.HaveAsync(Id));
    }

    [Fact]
    public async Task RetryReconnectsOnceAndResendsAfterTheServerRestarted()
    {
        var address = "UNIX:" + TestPaths.Socket("retry");
        var server = await InProcessCacheServer.StartAsync(listen: address);
        await using var retrying = await DistCacheClient.CreateAsync(address, DistCacheClientFlags.Persistent | DistCacheClientFlags.Retry);
        await using var plain = await DistCacheClient.CreateAsync(address, DistCacheClientFlags.Persistent);
        Assert.Equal(DistCacheHaveResult.No, await retrying.HaveAsync(Id));
        Assert.Equal(DistCacheHaveResult.No, await plain.HaveAsync(Id));

        await server.DisposeAsync();
        await using var restarted = await InProcessCacheServer.StartAsync(listen: address);

        Assert.Equal(DistCacheHaveResult.No, await retrying.HaveAsync(Id)); // reconnected and resent
        Assert.Equal(DistCacheHaveResult.Error, await plain.HaveAsync(Id)); // the old connection is dead: one failure
        Assert.Equal(DistCacheHaveResult.No, await plain.HaveAsync(Id)); // then a new connection
    }

    [Fact]
    public async Task ConcurrentCallersOnOneContextAreSerialised()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        await using var client = await DistCacheClient.CreateAsync(server.Address, DistCacheClientFlags.Persistent);
        var tasks = Enumerable.Range(0, 8).Select(async worker =>
        {
            for (var i = 0; i < 200; i++)
            {
                var id = System.Text.Encoding.ASCII.GetBytes($"w{worker}-{i}");
                var data = System.Text.Encoding.ASCII.GetBytes($"data-of-w{worker}-{i}");
                Assert.True(await client.AddAsync(id, data, 60_000));
                var buffer = new byte[100];
                var get = await client.GetAsync(id, buffer);
                Assert.True(get.Success);
                Assert.Equal(data, buffer.AsSpan(0, get.Length).ToArray());
            }
        });
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task PipelinedConnectionKeepsSeveralRequestsOutstanding()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        using var connection = await DistCacheConnection.ConnectAsync(CacheHost.Transport.TransportAddress.Parse(server.Address));
        var uids = new List<uint>();
        for (var i = 0; i < 50; i++)
        {
            var uid = DistCacheUids.Next();
            uids.Add(uid);
            connection.AppendAdd(uid, System.Text.Encoding.ASCII.GetBytes($"pipe-{i}"), new byte[3000], 60_000);
        }

        await connection.SendAsync();
        foreach (var uid in uids)
        {
            var (got, op) = await connection.ReceiveAsync();
            Assert.Equal(uid, got);
            Assert.Equal(DistCacheOperation.Add, op);
            Assert.Equal(new byte[] { 0 }, connection.Payload.ToArray());
        }
    }

    [Fact]
    public async Task TheOperationTimeoutRunsOnTheInjectedClock()
    {
        // 30 s (OperationTimeout's default) that pass only when the test advances the context's clock; before, a
        // silent server could only be timed in real time.
        var clock = new FakeTimeProvider();
        using var server = new FakeDistCacheServer((op, _) => [0]) { Unanswered = op => op == DistCacheOperation.Have };
        await using var client = await DistCacheClient.CreateAsync(server.Address, DistCacheClientFlags.Persistent, transport: null, clock);
        var have = client.TransactAsync(DistCacheOperation.Have, Id).AsTask();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (server.Uids.Count == 0)
        {
            if (have.IsCompleted)
            {
                Assert.Fail($"the HAVE ended before reaching the server: {await have}");
            }

            Assert.True(DateTime.UtcNow < deadline, "the HAVE did not reach the server");
            await Task.Delay(10);
        }

        clock.Advance(TimeSpan.FromSeconds(29));
        Assert.False(have.IsCompleted);
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(DistCacheTransactionStatus.TimedOut, await have.WaitAsync(TimeSpan.FromSeconds(10)));
    }
}
