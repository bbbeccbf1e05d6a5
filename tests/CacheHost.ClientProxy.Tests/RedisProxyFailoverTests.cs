using System.Text;
using CacheHost.Client;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// Issue 17 item 5 over real sockets and processes: two real <c>cachehost server</c> processes with the Redis store
/// on one real redis-server, a ClientProxy with both in its server list, four clients under load, and the server in
/// use SIGKILLed. The proxy fails over, no client gets a wrong answer, and no session is lost: every session stored
/// before the kill is served byte for byte through the proxy afterwards. With the memory store the sessions would
/// have died with the killed process (the second server's GET answers 0x01), so the last check fails there.
/// </summary>
public sealed class RedisProxyFailoverTests
{
    private const int Clients = 4;
    private const int Sessions = 200;
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);

    [RedisFact]
    public async Task KillingOneOfTwoRedisBackedServersUnderLoadFailsOverWithoutLosingASession()
    {
        using var redis = RedisServer.Start("proxy-failover");
        var store = new Dictionary<string, string>
        {
            ["CacheHost__CacheServer__Store"] = "Redis",
            ["CacheHost__CacheServer__Redis__Configuration"] = redis.Endpoint,
        };
        var first = "UNIX:" + TestPaths.Socket("rfo-a");
        var second = "UNIX:" + TestPaths.Socket("rfo-b");
        var serverA = ChildProcess.StartServer(first, store);
        using var serverB = ChildProcess.StartServer(second, store);
        try
        {
            // RetryMs of a minute: within the test's bounds, only the failover can bring service back.
            await using var proxy = await RoleHost.StartProxyAsync(first, new Dictionary<string, string?>
            {
                ["CacheHost:ClientProxy:Servers:0"] = second,
                ["CacheHost:ClientProxy:RetryMs"] = "60000",
            });
            Assert.Equal(first, proxy.Proxy.CurrentServer);

            // N sessions stored through the proxy (so through the first server) before the kill.
            var sessions = Enumerable.Range(0, Sessions).Select(SessionOf).ToArray();
            await using (var writer = await DistCacheClient.CreateAsync(proxy.Address, DistCacheClientFlags.Persistent))
            {
                foreach (var (id, data) in sessions)
                {
                    Assert.True(await writer.AddAsync(id, data, 600_000), $"ADD {Encoding.ASCII.GetString(id)}");
                }
            }

            var tally = await ProxyLoad.KillUnderLoadAsync(proxy, serverA.Kill, second, Clients, Generous);
            // Only 0x02 (in flight at the kill) and empty replies (the moment without a link) in the window; never a
            // foreign or corrupt answer.
            Assert.Empty(tally.Violations);
            Assert.True(serverA.HasExited);
            Assert.Equal(second, proxy.Proxy.CurrentServer);
            Assert.Equal(1, proxy.Proxy.Stats.Failovers);

            // No session lost: each one stored before the kill comes back byte for byte from the second server.
            await using var reader = await DistCacheClient.CreateAsync(proxy.Address, DistCacheClientFlags.Persistent);
            var buffer = new byte[1024];
            var lost = new List<string>();
            foreach (var (id, data) in sessions)
            {
                var got = await reader.GetAsync(id, buffer);
                if (!got.Success || !buffer.AsSpan(0, got.Length).SequenceEqual(data))
                {
                    lost.Add($"{Encoding.ASCII.GetString(id)}: {got}");
                }
            }

            Assert.True(lost.Count == 0, $"{lost.Count} of {Sessions} sessions lost after the failover: {string.Join("; ", lost.Take(5))}");
        }
        finally
        {
            serverA.Dispose();
        }
    }

    /// <summary>A session id and data of varying length with every byte value, so that a copy must be exact.</summary>
    private static (byte[] Id, byte[] Data) SessionOf(int n)
    {
        var id = Encoding.ASCII.GetBytes($"redis-failover-session-{n}");
        var data = new byte[32 + (n * 3 % 500)];
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = (byte)((i * 31) + n);
        }

        return (id, data);
    }
}
