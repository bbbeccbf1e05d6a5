using System.Diagnostics;
using CacheHost.Client;
using CacheHost.Testing;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// Issue 17 item 3 over real sockets: a ClientProxy with two servers (real <c>cachehost server</c> processes with
/// memory stores) under load from four clients. Killing the server in use moves the link to the other one at once
/// (not after RetryMs), no client gets someone else's answer, service resumes and sessions written after the
/// failover are served; with FailbackAfter the link returns to the first server when it is back, without
/// answering a single in-flight request 0x02.
/// </summary>
public sealed class ProxyFailoverTests
{
    private const int Clients = 4;
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task KillingTheServerInUseFailsOverToTheNextWithoutWrongAnswers()
    {
        var first = "UNIX:" + TestPaths.Socket("fo-a");
        var second = "UNIX:" + TestPaths.Socket("fo-b");
        var serverA = ChildProcess.StartServer(first);
        using var serverB = ChildProcess.StartServer(second);
        try
        {
            // RetryMs of a minute: service can only resume within the test's bounds by moving to the second server.
            await using var proxy = await RoleHost.StartProxyAsync(first, new Dictionary<string, string?>
            {
                ["CacheHost:ClientProxy:Servers:0"] = second,
                ["CacheHost:ClientProxy:RetryMs"] = "60000",
            });
            Assert.Equal(first, proxy.Proxy.CurrentServer);

            using var stop = new CancellationTokenSource();
            var tally = new ProxyLoad.Tally();
            var clock = Stopwatch.StartNew();
            var workers = Enumerable.Range(0, Clients).Select(n => Task.Run(() => ProxyLoad.RunClientAsync(n, proxy.Address, tally, clock, stop.Token))).ToArray();
            try
            {
                await RoleHost.WaitUntilAsync(() => tally.Ok > 200, Generous, "steady traffic through the first server");
                serverA.Kill();
                var killed = clock.Elapsed;
                await RoleHost.WaitUntilAsync(() => tally.OkSince(killed + TimeSpan.FromMilliseconds(1)) && proxy.Proxy.CurrentServer == second, Generous, "traffic through the second server");
                var resumedAt = tally.Ok;
                await RoleHost.WaitUntilAsync(() => tally.Ok > resumedAt + 200, Generous, "steady traffic after the failover");
            }
            finally
            {
                stop.Cancel();
            }

            await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Empty(tally.Violations);
            Assert.Equal(second, proxy.Proxy.CurrentServer);
            Assert.Equal(1, proxy.Proxy.Stats.Failovers);
            Assert.Equal(1, proxy.Proxy.Stats.Losses);
            Assert.Contains(proxy.Logs.Entries, e => e.EventId == 6014 && e.Message.Contains(first, StringComparison.Ordinal) && e.Message.Contains(second, StringComparison.Ordinal));

            // Sessions written after the failover are served (from the second server's store).
            await using var client = await DistCacheClient.CreateAsync(proxy.Address, DistCacheClientFlags.Persistent);
            await AssertServedAsync(client, "after-failover");
        }
        finally
        {
            serverA.Dispose();
        }
    }

    [Fact]
    public async Task WithFailbackAfterTheLinkReturnsToTheFirstServerWithoutAnswering0x02()
    {
        var first = "UNIX:" + TestPaths.Socket("fb-a");
        var second = "UNIX:" + TestPaths.Socket("fb-b");
        var serverA = ChildProcess.StartServer(first);
        using var serverB = ChildProcess.StartServer(second);
        var fake = new FakeTimeProvider();
        try
        {
            await using var proxy = await RoleHost.StartProxyAsync(first, new Dictionary<string, string?>
            {
                ["CacheHost:ClientProxy:Servers:0"] = second,
                ["CacheHost:ClientProxy:FailbackAfter"] = "00:00:30",
            }, clock: fake);

            using var stop = new CancellationTokenSource();
            var tally = new ProxyLoad.Tally();
            var clock = Stopwatch.StartNew();
            var workers = Enumerable.Range(0, Clients).Select(n => Task.Run(() => ProxyLoad.RunClientAsync(n, proxy.Address, tally, clock, stop.Token))).ToArray();
            try
            {
                await RoleHost.WaitUntilAsync(() => tally.Ok > 200, Generous, "steady traffic through the first server");
                serverA.Kill();
                await RoleHost.WaitUntilAsync(() => proxy.Proxy.CurrentServer == second, Generous, "the failover");
                serverA.Dispose();
                serverA = ChildProcess.StartServer(first);

                // Not before FailbackAfter has passed on the proxy's clock.
                fake.Advance(TimeSpan.FromSeconds(29));
                var before = tally.Ok;
                await RoleHost.WaitUntilAsync(() => tally.Ok > before + 200, Generous, "traffic through the second server");
                Assert.Equal(second, proxy.Proxy.CurrentServer);
                Assert.Equal(0, proxy.Proxy.Stats.Failbacks);

                var disconnectedBefore = tally.Disconnected;
                var emptyBefore = tally.Empty;
                fake.Advance(TimeSpan.FromSeconds(1));
                await RoleHost.WaitUntilAsync(() => proxy.Proxy.CurrentServer == first, Generous, "the failback");
                before = tally.Ok;
                await RoleHost.WaitUntilAsync(() => tally.Ok > before + 200, Generous, "traffic through the first server again");

                // The move itself cost no request: the old link finished what it carried.
                Assert.Equal(disconnectedBefore, tally.Disconnected);
                Assert.Equal(emptyBefore, tally.Empty);
            }
            finally
            {
                stop.Cancel();
            }

            await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Empty(tally.Violations);
            Assert.Equal(1, proxy.Proxy.Stats.Failbacks);
            Assert.Equal(1, proxy.Proxy.Stats.Losses); // the kill; the retired link is not a loss
            Assert.Contains(proxy.Logs.Entries, e => e.EventId == 6015);
        }
        finally
        {
            serverA.Dispose();
        }
    }

    [Fact]
    public async Task WhenTheFirstServerIsDownAtStartTheSecondIsUsed()
    {
        var first = "UNIX:" + TestPaths.Socket("fo-none");
        var second = "UNIX:" + TestPaths.Socket("fo-up");
        using var serverB = ChildProcess.StartServer(second);
        await using var proxy = await RoleHost.StartProxyAsync(first, new Dictionary<string, string?>
        {
            ["CacheHost:ClientProxy:Servers:0"] = second,
            ["CacheHost:ClientProxy:RetryMs"] = "60000",
        });
        Assert.Equal(second, proxy.Proxy.CurrentServer);
        await using var client = await DistCacheClient.CreateAsync(proxy.Address, DistCacheClientFlags.Persistent);
        await AssertServedAsync(client, "while-the-first-is-down");
        Assert.Equal(1, proxy.Proxy.Stats.Failovers);
    }

    /// <summary>ADDs a session through the proxy and GETs it back byte for byte.</summary>
    private static async Task AssertServedAsync(DistCacheClient client, string id)
    {
        var key = System.Text.Encoding.ASCII.GetBytes(id);
        var data = System.Text.Encoding.ASCII.GetBytes($"session-data-of-{id}");
        Assert.True(await client.AddAsync(key, data, 60_000));
        var buffer = new byte[256];
        var got = await client.GetAsync(key, buffer);
        Assert.True(got.Success, $"GET {id}: {got}");
        Assert.Equal(data, buffer[..got.Length]);
    }
}
