using System.Text;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.CacheServer.Tests;

/// <summary>
/// The Redis store on a replicated pair (issue 17 item 2): two real redis-servers, the second made a replica of the
/// first with <c>REPLICAOF</c>, and a CacheServer whose configuration names both with the replica first. The
/// client finds the master by itself (it asks every endpoint its role), writes go there and reach the replica by
/// replication; without Sentinel a dead master needs a manual <c>REPLICAOF NO ONE</c>, which the client follows.
/// </summary>
public sealed class RedisReplicatedPairTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [RedisFact]
    public async Task ReplicaListedFirstAnswersLikeTheMemoryStoreAndWritesGoToTheMaster()
    {
        using var master = RedisServer.Start("pair-master");
        using var replica = StartReplicaOf(master, "pair-replica");
        await using var memory = await InProcessCacheServer.StartAsync(capacity: 10_000);
        await using var pair = await InProcessCacheServer.StartAsync(extra: Settings(replica, master));
        using var m = memory.Connect();
        using var p = pair.Connect();
        var data = Encoding.ASCII.GetBytes("session-" + new string('r', 2000));
        (DistCacheOperation Operation, byte[] Payload, byte[] Expected)[] steps =
        [
            (DistCacheOperation.Add, RedisStoreTests.AddPayload("s1", data, 600_000), [0x00]),
            (DistCacheOperation.Add, RedisStoreTests.AddPayload("s1", [1, 2, 3, 4, 5], 600_000), [0x65]),
            (DistCacheOperation.Get, "s1"u8.ToArray(), data),
            (DistCacheOperation.Have, "s1"u8.ToArray(), [0x00]),
            (DistCacheOperation.Add, RedisStoreTests.AddPayload("s2", data, 600_000), [0x00]),
            (DistCacheOperation.Remove, "s2"u8.ToArray(), [0x00]),
            (DistCacheOperation.Remove, "s2"u8.ToArray(), [0x01]),
            (DistCacheOperation.Get, "s2"u8.ToArray(), [0x01]),
            (DistCacheOperation.Have, "s2"u8.ToArray(), [0x01]),
        ];
        var uid = 1u;
        foreach (var (operation, payload, expected) in steps)
        {
            var fromMemory = RedisStoreTests.Exchange(m, uid, operation, payload);
            var fromPair = RedisStoreTests.Exchange(p, uid++, operation, payload);
            Assert.Equal(expected, fromMemory);
            Assert.Equal(Hex.Of(fromMemory), Hex.Of(fromPair));
        }

        // The writes went to the master (a replica refuses writes: READONLY) and reached the replica by replication.
        Assert.Equal(Encoding.ASCII.GetString(data), master.Cli("get", "pair:s1").TrimEnd('\n'));
        WaitFor(() => replica.Cli("get", "pair:s1").TrimEnd('\n') == Encoding.ASCII.GetString(data), "s1 did not replicate to the replica");
        WaitFor(() => replica.Cli("exists", "pair:s2").Trim() == "0", "the REMOVE of s2 did not replicate to the replica");
        Assert.Contains("role:slave", replica.Cli("info", "replication"), StringComparison.Ordinal);
        Assert.Equal(0, pair.Service.Statistics.StoreErrors.Value);
    }

    [RedisFact]
    public async Task DeadMasterIsAnswered0x02UntilTheReplicaIsPromotedThenServedWithoutRestart()
    {
        using var master = RedisServer.Start("fail-master");
        using var replica = StartReplicaOf(master, "fail-replica");
        // Short client timeouts: a request waits at most about a second for a master that is not there. configCheckSeconds:
        // how often the client re-asks every endpoint its role (default 60 s): how soon it follows a manual promotion.
        await using var server = await InProcessCacheServer.StartAsync(extra: Settings(replica, master, ",connectTimeout=1000,asyncTimeout=1000,syncTimeout=1000,configCheckSeconds=2"));
        using var client = server.Connect();
        var data = Encoding.ASCII.GetBytes("before-" + new string('f', 500));
        Assert.Equal([0x00], RedisStoreTests.Exchange(client, 1, DistCacheOperation.Add, RedisStoreTests.AddPayload("before", data, 600_000)));
        WaitFor(() => replica.Cli("exists", "pair:before").Trim() == "1", "the session did not replicate");

        // The master dies; nobody has promoted the replica yet: there is no master to write to, so ADD is 0x02.
        master.Kill();
        var uid = 2u;
        Assert.Equal([0x02], RedisStoreTests.Exchange(client, uid++, DistCacheOperation.Add, RedisStoreTests.AddPayload("during", data, 600_000)));
        Assert.True(server.Service.Statistics.StoreErrors.Value >= 1);

        // The operator promotes the replica; the same CacheServer, same connection, writes to it once the client
        // has noticed (every answer meanwhile is 0x02, never anything else).
        replica.Cli("replicaof", "no", "one");
        var deadline = DateTime.UtcNow + Patience;
        byte[] answer;
        while ((answer = RedisStoreTests.Exchange(client, uid++, DistCacheOperation.Add, RedisStoreTests.AddPayload("after", data, 600_000)))[0] == 0x02)
        {
            Assert.True(DateTime.UtcNow < deadline, "the Redis store did not follow the promoted replica");
            Thread.Sleep(50);
        }

        Assert.Equal([0x00], answer);
        Assert.Equal(Encoding.ASCII.GetString(data), replica.Cli("get", "pair:after").TrimEnd('\n'));
        Assert.Equal(data, RedisStoreTests.Exchange(client, uid++, DistCacheOperation.Get, "before"u8.ToArray()));
        Assert.Equal(data, RedisStoreTests.Exchange(client, uid++, DistCacheOperation.Get, "after"u8.ToArray()));
        Assert.Equal([0x01], RedisStoreTests.Exchange(client, uid++, DistCacheOperation.Have, "during"u8.ToArray()));
        Assert.Equal([0x00], RedisStoreTests.Exchange(client, uid, DistCacheOperation.Remove, "after"u8.ToArray()));
    }

    /// <summary>The CacheServer settings: both endpoints, the replica first, so the client must find the master itself.</summary>
    private static Dictionary<string, string?> Settings(RedisServer replica, RedisServer master, string extra = "") => new()
    {
        ["CacheHost:CacheServer:Store"] = "Redis",
        ["CacheHost:CacheServer:Redis:Configuration"] = $"{replica.Endpoint},{master.Endpoint}{extra}",
        ["CacheHost:CacheServer:Redis:KeyPrefix"] = "pair:",
    };

    /// <summary>Starts a server and makes it a replica of <paramref name="master"/>; returns once the link is up.</summary>
    private static RedisServer StartReplicaOf(RedisServer master, string tag)
    {
        var replica = RedisServer.Start(tag);
        try
        {
            replica.Cli("replicaof", "127.0.0.1", master.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
            WaitFor(() => replica.Cli("info", "replication").Contains("master_link_status:up", StringComparison.Ordinal), "the replica's link to its master did not come up");
            return replica;
        }
        catch
        {
            replica.Dispose();
            throw;
        }
    }

    private static void WaitFor(Func<bool> condition, string failure)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, failure);
            Thread.Sleep(50);
        }
    }
}
