using System.Diagnostics;
using CacheHost.Client;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// Four concurrent clients hammer the proxy while its server (a real cachehost process) is stopped, killed and
/// restarted twice. The proxy must survive, answer in-flight requests with 0x02 and requests without a server
/// with the empty reply, resume within retry + 1 s, and never hand a client someone else's answer.
/// </summary>
public sealed class ProxyFaultTests
{
    private const int Clients = 4;
    private const int RetryMs = 1000;

    [Fact]
    public async Task ProxySurvivesServerKillsAndNeverMixesUpAnswers()
    {
        var serverAddress = "UNIX:" + TestPaths.Socket("fault");
        var server = ChildProcess.StartServer(serverAddress);
        try
        {
            await using var proxy = await RoleHost.StartProxyAsync(serverAddress, new Dictionary<string, string?> { ["CacheHost:ClientProxy:RetryMs"] = RetryMs.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            using var stop = new CancellationTokenSource();
            var tally = new ProxyLoad.Tally();
            var clock = Stopwatch.StartNew();
            var workers = Enumerable.Range(0, Clients).Select(n => Task.Run(() => ProxyLoad.RunClientAsync(n, proxy.Address, tally, clock, stop.Token))).ToArray();

            try
            {
                for (var round = 0; round < 2; round++)
                {
                    // Steady traffic first (up to 10 s: the clients and the proxy's link start while other test classes
                    // start too, on two cores).
                    var steady = clock.Elapsed + TimeSpan.FromSeconds(10);
                    while (!tally.OkSince(clock.Elapsed - TimeSpan.FromMilliseconds(500)) && clock.Elapsed < steady)
                    {
                        await Task.Delay(100);
                    }

                    Assert.True(tally.OkSince(clock.Elapsed - TimeSpan.FromMilliseconds(500)), $"round {round}: no traffic before the kill");

                    server.Pause();                 // requests pile up in flight
                    await RoleHost.WaitUntilAsync(() => proxy.Proxy.Link.InFlight > 0, TimeSpan.FromSeconds(10), $"round {round}: requests in flight");
                    var empty = tally.Empty;
                    server.Kill();                  // ... and are answered 0x02 when the link drops
                    await RoleHost.WaitUntilAsync(() => tally.Empty > empty, TimeSpan.FromSeconds(10), $"round {round}: empty replies without a server");
                    server.Dispose();
                    server = ChildProcess.StartServer(serverAddress);
                    var ready = clock.Elapsed;
                    var deadline = ready + TimeSpan.FromMilliseconds(RetryMs + 1000);
                    while (!tally.OkSince(ready) && clock.Elapsed < deadline + TimeSpan.FromSeconds(5))
                    {
                        await Task.Delay(20);
                    }

                    var resumed = tally.FirstOkAfter(ready);
                    Assert.True(resumed is not null && resumed <= deadline,
                        $"round {round}: traffic resumed at {resumed?.TotalMilliseconds} ms, server ready at {ready.TotalMilliseconds} ms (retry {RetryMs} ms)");
                }

                var ok = tally.Ok;
                await RoleHost.WaitUntilAsync(() => tally.Ok > ok + 50, TimeSpan.FromSeconds(10), "traffic after the last restart");
            }
            finally
            {
                // Also when an assertion failed: clients left running would hammer the disposed proxy for the rest
                // of the test run (one CI run lost three more tests and the allocation check to that load).
                stop.Cancel();
            }

            await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(30));

            Assert.Empty(tally.Violations);
            Assert.True(tally.Disconnected >= 2, $"0x02 answers: {tally.Disconnected}");
            Assert.True(tally.Empty > 0, $"empty replies: {tally.Empty}");
            Assert.True(tally.Ok > 100, $"ok answers: {tally.Ok}");
            Assert.True(proxy.Proxy.IsServerConnected);
            Assert.True(proxy.Proxy.DisconnectedAnswers >= 2);

            // Still serving new clients.
            await using var fresh = await DistCacheClient.CreateAsync(proxy.Address, DistCacheClientFlags.Persistent);
            Assert.NotEqual(DistCacheHaveResult.Error, await fresh.HaveAsync("after-the-storm"u8.ToArray()));
        }
        finally
        {
            server.Dispose();
        }
    }
}
