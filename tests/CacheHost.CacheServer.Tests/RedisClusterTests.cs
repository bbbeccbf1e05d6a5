using System.Globalization;
using System.Text;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer.Storage;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.CacheServer.Tests;

/// <summary>
/// Two stateless CacheServers on one real Redis Cluster (3 masters with a replica each, created by
/// <c>redis-cli --cluster create</c>): the client finds the cluster from one endpoint, sessions spread over every
/// master, and whichever server a client asks answers the same.
/// </summary>
public sealed class RedisClusterTests
{
    [RedisFact]
    public async Task TwoCacheServersOnOneClusterServeTheSameSessions()
    {
        using var cluster = RedisCluster.Start(masters: 3, replicas: 1);
        var settings = new Dictionary<string, string?>
        {
            ["CacheHost:CacheServer:Store"] = "Redis",
            // One node is enough: StackExchange.Redis discovers the rest of the cluster from it.
            ["CacheHost:CacheServer:Redis:Configuration"] = cluster.Nodes[0].Endpoint,
        };
        await using var first = await InProcessCacheServer.StartAsync(extra: settings);
        await using var second = await InProcessCacheServer.StartAsync(extra: settings);
        Assert.True(((RedisSessionStore)first.Service.ConfiguredStore).IsCluster);
        using var a = first.Connect();
        using var b = second.Connect();

        for (var i = 0; i < 300; i++)
        {
            Assert.Equal([0x00], RedisStoreTests.Exchange(a, (uint)i, DistCacheOperation.Add, RedisStoreTests.AddPayload($"c-{i}", Data(i), 600_000)));
        }

        for (var i = 0; i < 300; i++)
        {
            Assert.Equal(Data(i), RedisStoreTests.Exchange(b, (uint)i, DistCacheOperation.Get, Encoding.ASCII.GetBytes($"c-{i}")));
        }

        Assert.Equal([0x65], RedisStoreTests.Exchange(b, 1000, DistCacheOperation.Add, RedisStoreTests.AddPayload("c-7", Data(7), 600_000)));
        Assert.Equal([0x00], RedisStoreTests.Exchange(b, 1001, DistCacheOperation.Remove, "c-7"u8.ToArray()));
        Assert.Equal([0x01], RedisStoreTests.Exchange(a, 1002, DistCacheOperation.Have, "c-7"u8.ToArray()));

        // Spread over the cluster: every master holds some of them.
        foreach (var master in cluster.Masters())
        {
            Assert.True(long.Parse(master.Cli("dbsize"), CultureInfo.InvariantCulture) > 0, $"master {master.Endpoint} holds no session");
        }

        Assert.Equal(0, first.Service.Statistics.StoreErrors.Value + second.Service.Statistics.StoreErrors.Value);
    }

    private static byte[] Data(int i) => Encoding.ASCII.GetBytes($"session-{i}-" + new string('s', 100 + i));
}
