using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer.Storage;
using CacheHost.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Xunit;

namespace CacheHost.CacheServer.Tests;

/// <summary>One real redis-server shared by a test class (started on first use); tests keep apart by key prefix.</summary>
public sealed class RedisFixture : IDisposable
{
    private readonly Lazy<RedisServer> _server = new(() => RedisServer.Start("single"));
    private int _prefixes;

    /// <summary>The server.</summary>
    public RedisServer Server => _server.Value;

    /// <summary>A key prefix no other test of the run uses.</summary>
    public string NewPrefix(string tag) => $"t{Environment.ProcessId}-{Interlocked.Increment(ref _prefixes)}-{tag}:";

    /// <summary>Settings of a CacheServer with the Redis store on this server.</summary>
    public Dictionary<string, string?> Settings(string prefix, string? extraConfiguration = null) => new()
    {
        ["CacheHost:CacheServer:Store"] = "Redis",
        ["CacheHost:CacheServer:Redis:Configuration"] = Server.Endpoint + extraConfiguration,
        ["CacheHost:CacheServer:Redis:KeyPrefix"] = prefix,
    };

    /// <inheritdoc />
    public void Dispose()
    {
        if (_server.IsValueCreated)
        {
            _server.Value.Dispose();
        }
    }
}

/// <summary>
/// The Redis session store (issue 17) against a real redis-server on a loopback port: the distcache operations map
/// onto SET NX PX / GET / DEL / EXISTS of the prefixed key, answers are the memory store's byte for byte, expiry is
/// to the millisecond, and a Redis that goes away is answered 0x02 without hanging or closing the connection.
/// </summary>
public sealed class RedisStoreTests(RedisFixture redis) : IClassFixture<RedisFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [RedisFact]
    public async Task OperationsMapOntoPrefixedRedisKeys()
    {
        var prefix = redis.NewPrefix("map");
        await using var server = await InProcessCacheServer.StartAsync(extra: redis.Settings(prefix));
        Assert.Equal(SessionStoreKind.Redis, server.Service.ConfiguredStore.Kind);
        using var client = server.Connect();
        var data = Encoding.ASCII.GetBytes(new string('d', 3000));

        Assert.Equal([0x00], Exchange(client, 1, DistCacheOperation.Add, AddPayload("sess-1", data, 600_000)));
        Assert.Equal(new string('d', 3000), redis.Server.Cli("get", prefix + "sess-1").TrimEnd('\n'));
        var ttl = long.Parse(redis.Server.Cli("pttl", prefix + "sess-1"), CultureInfo.InvariantCulture);
        Assert.InRange(ttl, 1, 600_000); // PX: the ADD's milliseconds

        Assert.Equal([0x65], Exchange(client, 2, DistCacheOperation.Add, AddPayload("sess-1", [1, 2, 3, 4, 5], 1000))); // NX: never replaces
        Assert.Equal(data, Exchange(client, 3, DistCacheOperation.Get, "sess-1"u8.ToArray()));
        Assert.Equal([0x00], Exchange(client, 4, DistCacheOperation.Have, "sess-1"u8.ToArray()));
        Assert.Equal([0x00], Exchange(client, 5, DistCacheOperation.Remove, "sess-1"u8.ToArray()));
        Assert.Equal("0", redis.Server.Cli("exists", prefix + "sess-1").Trim());
        Assert.Equal([0x01], Exchange(client, 6, DistCacheOperation.Remove, "sess-1"u8.ToArray()));
        Assert.Equal([0x01], Exchange(client, 7, DistCacheOperation.Get, "sess-1"u8.ToArray()));
        Assert.Equal([0x01], Exchange(client, 8, DistCacheOperation.Have, "sess-1"u8.ToArray()));

        // Timeout 0 is legal and expired at once (distcache §5.1): OK, and nothing is stored.
        Assert.Equal([0x00], Exchange(client, 9, DistCacheOperation.Add, AddPayload("zero", data, 0)));
        Assert.Equal("0", redis.Server.Cli("exists", prefix + "zero").Trim());
        // ... but an unexpired duplicate still answers 0x65, as dc_server's check 5 comes first.
        Assert.Equal([0x00], Exchange(client, 10, DistCacheOperation.Add, AddPayload("zero", data, 60_000)));
        Assert.Equal([0x65], Exchange(client, 11, DistCacheOperation.Add, AddPayload("zero", data, 0)));
        // Rejections of ADD's checks 1-4 never reach Redis.
        Assert.Equal([0x66], Exchange(client, 12, DistCacheOperation.Add, AddPayload("long", data, DistCacheProtocol.MaxTimeoutMs + 1)));
        Assert.Equal("0", redis.Server.Cli("exists", prefix + "long").Trim());
        Assert.Equal(0, server.Service.Statistics.StoreErrors.Value);
    }

    [RedisFact]
    public async Task PipelinedMixAnswersByteForByteLikeTheMemoryStore()
    {
        // One write of 600 requests (more than MaxPipelined) with multi-frame sessions: replies in request order,
        // flushed as the memory store flushes them, identical bytes.
        var stream = RandomMix(seed: 17, requests: 600);
        await using var memory = await InProcessCacheServer.StartAsync(capacity: 10_000);
        await using var remote = await InProcessCacheServer.StartAsync(extra: redis.Settings(redis.NewPrefix("mix")));
        var expected = Replay(memory, stream.Bytes, stream.Count);
        var actual = Replay(remote, stream.Bytes, stream.Count);
        Assert.Equal(Hex.Of(expected), Hex.Of(actual));
        Assert.Equal(memory.Service.Statistics.Hits, remote.Service.Statistics.Hits);
    }

    [RedisFact]
    public async Task ExpiryIsToTheMillisecond()
    {
        var prefix = redis.NewPrefix("expiry");
        await using var server = await InProcessCacheServer.StartAsync(extra: redis.Settings(prefix));
        using var client = server.Connect();
        const int timeoutMs = 1234;
        var added = Stopwatch.StartNew();
        Assert.Equal([0x00], Exchange(client, 1, DistCacheOperation.Add, AddPayload("ms", [1, 2, 3, 4, 5, 6], timeoutMs)));
        // Not rounded to seconds: Redis holds the key for at most the ADD's 1234 ms.
        var ttl = long.Parse(redis.Server.Cli("pttl", prefix + "ms"), CultureInfo.InvariantCulture);
        Assert.InRange(ttl, -2, timeoutMs);

        var uid = 2u;
        while (Exchange(client, uid++, DistCacheOperation.Have, "ms"u8.ToArray())[0] == 0x00)
        {
            Assert.True(added.Elapsed < Timeout, "the session did not expire");
            Thread.Sleep(5);
        }

        // Gone, and not before its 1234 ms were up.
        Assert.True(added.ElapsedMilliseconds >= timeoutMs - 5, $"expired after {added.ElapsedMilliseconds} ms");
        Assert.Equal([0x01], Exchange(client, uid, DistCacheOperation.Get, "ms"u8.ToArray()));
    }

    [RedisFact]
    public async Task RedisGoneIsAnswered0x02AndServiceResumes()
    {
        using var own = RedisServer.Start("down");
        var port = own.Port;
        var settings = new Dictionary<string, string?>
        {
            ["CacheHost:CacheServer:Store"] = "Redis",
            // Short client timeouts: each request waits at most about a second for Redis.
            ["CacheHost:CacheServer:Redis:Configuration"] = own.Endpoint + ",connectTimeout=1000,asyncTimeout=1000,syncTimeout=1000",
        };
        await using var server = await InProcessCacheServer.StartAsync(extra: settings);
        using var client = server.Connect();
        Assert.Equal([0x00], Exchange(client, 1, DistCacheOperation.Add, AddPayload("a", [1, 2, 3, 4, 5], 60_000)));

        own.Kill();
        // Pipelined, in one write: every one answered 0x02, in order, on the same open connection.
        client.Send([.. HostilePeerTests.Request(2, DistCacheOperation.Get, "a"u8), .. HostilePeerTests.Request(3, DistCacheOperation.Have, "a"u8), .. HostilePeerTests.Request(4, DistCacheOperation.Add, AddPayload("b", [1, 2, 3, 4, 5], 60_000))]);
        for (var uid = 2u; uid <= 4; uid++)
        {
            var (replyUid, reply) = HostilePeerTests.ReadReply(client);
            Assert.Equal(uid, replyUid);
            Assert.Equal([0x02], reply);
        }

        Assert.True(server.Service.Statistics.StoreErrors.Value >= 3);

        // Redis back on its port (empty: persistence is off): the same connection is served again.
        using var back = RedisServer.Start("down-again", port: port);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        var next = 5u;
        byte[] answer;
        while ((answer = Exchange(client, next++, DistCacheOperation.Have, "a"u8.ToArray()))[0] == 0x02)
        {
            Assert.True(DateTime.UtcNow < deadline, "the Redis store did not reconnect");
            Thread.Sleep(50);
        }

        Assert.Equal([0x01], answer);
        Assert.Equal([0x00], Exchange(client, next, DistCacheOperation.Add, AddPayload("a", [1, 2, 3, 4, 5], 60_000)));
    }

    [Fact]
    public async Task RedisStoreWithoutConfigurationFailsAtStartNamingTheKey()
    {
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => InProcessCacheServer.StartAsync(extra: new Dictionary<string, string?> { ["CacheHost:CacheServer:Store"] = "Redis" }));
        Assert.Contains("CacheHost:CacheServer:Redis:Configuration", error.Message, StringComparison.Ordinal);

        error = await Assert.ThrowsAsync<OptionsValidationException>(() => InProcessCacheServer.StartAsync(extra: new Dictionary<string, string?>
        {
            ["CacheHost:CacheServer:Store"] = "Redis",
            ["CacheHost:CacheServer:Redis:Configuration"] = "127.0.0.1:1,nosuchoption=1",
            ["CacheHost:CacheServer:Redis:KeyPrefix"] = new string('p', 300),
        }));
        Assert.Contains("CacheHost:CacheServer:Redis:Configuration", error.Message, StringComparison.Ordinal);
        Assert.Contains("CacheHost:CacheServer:Redis:KeyPrefix", error.Message, StringComparison.Ordinal);
    }

    internal static byte[] Exchange(Socket client, uint uid, DistCacheOperation operation, byte[] payload)
    {
        client.Send(HostilePeerTests.Request(uid, operation, payload));
        var (replyUid, reply) = HostilePeerTests.ReadReply(client);
        Assert.Equal(uid, replyUid);
        return reply;
    }

    internal static byte[] AddPayload(string id, byte[] data, uint timeoutMs)
    {
        var idBytes = Encoding.ASCII.GetBytes(id);
        var payload = new byte[8 + idBytes.Length + data.Length];
        AddRequest.Write(payload, timeoutMs, idBytes, data);
        return payload;
    }

    /// <summary>Random ADD/GET/REMOVE/HAVE over 40 ids, sessions of 5 to 6000 bytes, long timeouts (no expiry, no eviction).</summary>
    internal static (byte[] Bytes, int Count) RandomMix(int seed, int requests)
    {
        var random = new Random(seed);
        var writer = new ArrayBufferWriter<byte>();
        for (var i = 0; i < requests; i++)
        {
            var id = Encoding.ASCII.GetBytes($"mix-{random.Next(40)}");
            var operation = (DistCacheOperation)random.Next(4);
            var payload = id;
            if (operation == DistCacheOperation.Add)
            {
                var data = new byte[5 + random.Next(6000)];
                random.NextBytes(data);
                payload = new byte[8 + id.Length + data.Length];
                AddRequest.Write(payload, 600_000, id, data);
            }

            DistCacheMessageWriter.Write(writer, false, (uint)i, operation, payload);
        }

        return (writer.WrittenSpan.ToArray(), requests);
    }

    /// <summary>Sends <paramref name="stream"/> in one write and returns the bytes of its <paramref name="count"/> replies.</summary>
    internal static byte[] Replay(InProcessCacheServer server, byte[] stream, int count)
    {
        using var client = server.Connect();
        var send = Task.Run(() => client.Send(stream));
        var replies = new List<byte>();
        var messages = 0;
        while (messages < count)
        {
            var header = DistCacheVectorReplayer.ReadExactly(client, 14, Timeout, $"reply {messages} header");
            replies.AddRange(header);
            var frame = FrameHeader.Read(header);
            replies.AddRange(frame.DataLength == 0 ? [] : DistCacheVectorReplayer.ReadExactly(client, frame.DataLength, Timeout, $"reply {messages} data"));
            if (frame.Complete == 1)
            {
                messages++;
            }
        }

        send.GetAwaiter().GetResult();
        DistCacheVectorReplayer.ExpectSilence(client, TimeSpan.FromMilliseconds(200), "after the last reply");
        return [.. replies];
    }
}

/// <summary>
/// Every captured dc_server case replayed with the Redis store, byte for byte, except the eviction cases: with
/// Redis, capacity and eviction are Redis's (maxmemory and maxmemory-policy), not dc_server's -sessions with
/// its capacity/30 batch (docs/session-stores.md).
/// </summary>
public sealed class RedisVectorReplayTests(RedisFixture redis) : IClassFixture<RedisFixture>
{
    public static IEnumerable<object[]> Cases => DistCacheVectors.ServerCases.Where(c => !c.Tags.Contains("eviction")).Select(c => new object[] { c.Name });

    [RedisTheory]
    [MemberData(nameof(Cases))]
    public async Task CapturedCaseReplaysByteForByteWithTheRedisStore(string name)
    {
        var vectorCase = DistCacheVectors.Server(name);
        await using var server = await InProcessCacheServer.StartAsync(vectorCase.Capacity, extra: redis.Settings(redis.NewPrefix("vec")));
        new DistCacheVectorReplayer(server.Connect).Replay(vectorCase);
    }
}

/// <summary>
/// The handler's pipelined path (the one every remote store takes) proven on the memory store: every captured case,
/// eviction included, gives the same bytes as the synchronous fast path. No Redis needed.
/// </summary>
public sealed class PipelinedPathVectorReplayTests
{
    [Theory]
    [MemberData(nameof(DistCacheVectors.ServerCaseNames), MemberType = typeof(DistCacheVectors))]
    public async Task CapturedCaseReplaysByteForByteThroughTheStoreInterface(string name)
    {
        var vectorCase = DistCacheVectors.Server(name);
        await using var server = await InProcessCacheServer.StartAsync(vectorCase.Capacity,
            services: s => s.AddSingleton<ISessionStore>(sp => new ThroughInterface(sp.GetRequiredService<SessionStore>())));
        new DistCacheVectorReplayer(server.Connect).Replay(vectorCase);
    }

    [Fact]
    public async Task PipelinedMixMatchesTheFastPath()
    {
        var stream = RedisStoreTests.RandomMix(seed: 5, requests: 1500);
        await using var fast = await InProcessCacheServer.StartAsync(capacity: 10_000);
        await using var pipelined = await InProcessCacheServer.StartAsync(capacity: 10_000,
            services: s => s.AddSingleton<ISessionStore>(sp => new ThroughInterface(sp.GetRequiredService<SessionStore>())));
        Assert.Equal(Hex.Of(RedisStoreTests.Replay(fast, stream.Bytes, stream.Count)), Hex.Of(RedisStoreTests.Replay(pipelined, stream.Bytes, stream.Count)));
    }

    /// <summary>The memory store seen only through <see cref="ISessionStore"/>, answering on the thread pool like a remote store.</summary>
    private sealed class ThroughInterface(ISessionStore inner) : ISessionStore
    {
        public SessionStoreKind Kind => inner.Kind;

        public Task<bool> AddAsync(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint timeoutMs) => Later(inner.AddAsync(id, data, timeoutMs));

        public Task<IMemoryOwner<byte>?> GetAsync(ReadOnlySpan<byte> id) => Later(inner.GetAsync(id));

        public Task<bool> RemoveAsync(ReadOnlySpan<byte> id) => Later(inner.RemoveAsync(id));

        public Task<bool> ContainsAsync(ReadOnlySpan<byte> id) => Later(inner.ContainsAsync(id));

        private static async Task<T> Later<T>(Task<T> result)
        {
            await Task.Yield();
            return await result.ConfigureAwait(false);
        }
    }
}
