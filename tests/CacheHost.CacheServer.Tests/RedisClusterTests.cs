using System.Globalization;
using System.Text;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer.Storage;
using CacheHost.Testing;
using Microsoft.Extensions.Configuration;
using Xunit;

namespace CacheHost.CacheServer.Tests;

/// <summary>
/// Two stateless CacheServers on one real Redis Cluster (3 masters with a replica each, created by
/// <c>redis-cli --cluster create</c>): the client finds the cluster from one endpoint, sessions spread over every
/// master, and whichever server a client asks answers the same. The two servers run the deploy example's
/// configurations (deploy/redis-cluster/cachehost-a|b.appsettings.json) with this cluster's endpoint.
/// </summary>
public sealed class RedisClusterTests
{
    [RedisFact]
    public async Task TwoCacheServersOnOneClusterServeTheSameSessions()
    {
        using var cluster = RedisCluster.Start(masters: 3, replicas: 1);
        await using var first = await InProcessCacheServer.StartAsync(extra: FromDeployExample("cachehost-a.appsettings.json", cluster));
        await using var second = await InProcessCacheServer.StartAsync(extra: FromDeployExample("cachehost-b.appsettings.json", cluster));
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

    /// <summary>
    /// The example's CacheServer keys (every one must bind and validate), its listeners left to the test and its
    /// endpoints and password replaced by one node of <paramref name="cluster"/>: one node is enough, the client
    /// discovers the rest of the cluster from it. The example's other client settings (timeouts) stay.
    /// </summary>
    private static Dictionary<string, string?> FromDeployExample(string file, RedisCluster cluster)
    {
        var configuration = new Microsoft.Extensions.Configuration.ConfigurationBuilder()
            .AddJsonFile(Path.Combine(TestPaths.RepoRoot, "deploy", "redis-cluster", file))
            .Build();
        var settings = configuration.AsEnumerable()
            .Where(kv => kv.Value is not null && kv.Key.StartsWith("CacheHost:CacheServer:", StringComparison.Ordinal) && !kv.Key.StartsWith("CacheHost:CacheServer:Listen", StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.Equal("Redis", settings["CacheHost:CacheServer:Store"]);
        var kept = settings["CacheHost:CacheServer:Redis:Configuration"]!.Split(',')
            .Where(part => part.Contains('=', StringComparison.Ordinal) && !part.StartsWith("password=", StringComparison.Ordinal));
        settings["CacheHost:CacheServer:Redis:Configuration"] = string.Join(",", [cluster.Nodes[0].Endpoint, .. kept]);
        return settings;
    }

    private static byte[] Data(int i) => Encoding.ASCII.GetBytes($"session-{i}-" + new string('s', 100 + i));
}
