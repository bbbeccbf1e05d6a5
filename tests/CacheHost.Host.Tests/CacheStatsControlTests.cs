using System.Net.Sockets;
using System.Text;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.Host.Tests;

/// <summary><c>cache.stats</c> on the daemon's control socket, against the real program.</summary>
public sealed class CacheStatsControlTests
{
    private static readonly TimeSpan Start = TimeSpan.FromSeconds(30);

    [Fact]
    public void CacheStatsReportsCountersThatMoveWithTraffic()
    {
        using var process = StartServer("stats", "--CacheHost:CacheServer:Capacity=64", out var socket, out var control);

        using (var client = InProcessCacheServer.ConnectTo("UNIX:" + socket))
        {
            Add(client, 1, 60_000, "id"u8, "abc"u8);
            Exchange(client, 2, DistCacheOperation.Get, "id"u8.ToArray(), 17);
            Exchange(client, 3, DistCacheOperation.Get, "nope"u8.ToArray(), 15);
            client.Send("GET / HTTP/1.0\r\n\r\n"u8.ToArray()); // a protocol error on another connection below
        }

        using (var bad = InProcessCacheServer.ConnectTo("UNIX:" + socket))
        {
            bad.Send("GET / HTTP/1.0\r\n\r\n"u8.ToArray());
            DistCacheVectorReplayer.ExpectClosed(bad, Start, "foreign protocol");
        }

        var lines = ControlExchange(control, "cache.stats", "cache.stats\textra", "echo\tdone");
        var stats = StatsOf(lines);
        Assert.Equal(1, stats["ops.add"]);
        Assert.Equal(2, stats["ops.get"]);
        Assert.Equal(3, stats["ops.total"]);
        Assert.Equal(1, stats["hits"]);
        Assert.Equal(1, stats["misses"]);
        Assert.Equal(1, stats["sessions"]);
        Assert.Equal(64, stats["capacity"]);
        Assert.Equal(3, stats["bytes.stored"]);
        Assert.Equal(1 << 20, stats["bytes.slabs"]); // one slab page holds the one session (issue 13)
        Assert.True(stats["gc.allocated_bytes"] > 0);
        Assert.True(stats.ContainsKey("gc.heap_bytes")); // 0 until the first collection
        Assert.True(stats["gc.gen0"] >= stats["gc.gen1"] && stats["gc.gen1"] >= stats["gc.gen2"], "gen-0 counts include older collections");
        Assert.Equal(stats["gc.gen0"] * 1_000_000 / 3, stats["gc.gen0.per_million_ops"]);
        Assert.True(stats["errors.protocolLevel"] >= 1);
        Assert.True(stats["connections.accepted"] >= 2);
        foreach (var key in new[] { "ops.remove", "ops.have", "evictions", "expirations", "bytes.in", "bytes.out", "connections.open", "connections.rejected", "errors.total", "add.rejected" })
        {
            Assert.True(stats.ContainsKey(key), key);
        }

        Assert.Equal("error\tcache.stats takes no arguments, for command \"cache.stats\textra\"", lines[stats.Count]);
        Assert.Equal("done", lines[^1]);
        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Start));
    }

    [Fact]
    public void CacheStatsCountsOnlySessionsThatHaveNotExpired()
    {
        // The background purge runs once an hour here, so only cache.stats itself can notice the expiry.
        using var process = StartServer("stats-expiry", "--CacheHost:CacheServer:StatsInterval=01:00:00", out var socket, out var control);

        using (var client = InProcessCacheServer.ConnectTo("UNIX:" + socket))
        {
            Add(client, 1, 300, "short"u8, "x"u8);
            Add(client, 2, 600_000, "long"u8, "y"u8);
        }

        // The real program's clock expires the short session 300 ms after its ADD: ask until cache.stats sees it
        // gone (each call purges what has expired), instead of sleeping a fixed second.
        var deadline = DateTime.UtcNow + Start;
        Dictionary<string, long> stats;
        while ((stats = StatsOf(ControlExchange(control, "cache.stats", "echo\tdone")))["sessions"] != 1)
        {
            Assert.True(DateTime.UtcNow < deadline, $"the short session has not expired: {stats["sessions"]} sessions");
            Thread.Sleep(50);
        }

        Assert.Equal(1, stats["expirations"]);
        Assert.Equal(1, stats["bytes.stored"]);
        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Start));
    }

    /// <summary>The real program with one CacheServer on a unix socket and a control socket, both in a fresh directory.</summary>
    internal static CacheHostProcess StartServer(string name, string setting, out string socket, out string control)
    {
        var dir = TestPaths.Directory(name);
        socket = Path.Combine(dir, "dc.sock");
        control = Path.Combine(dir, "control.sock");
        var process = CacheHostProcess.Start(
        [
            "--CacheHost:Roles:0=CacheServer",
            $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}",
            setting,
            $"--CacheHost:Control:Socket={control}",
        ]);
        try
        {
            process.WaitForLine($"Listening on UNIX:{socket}", Start);
            return process;
        }
        catch
        {
            process.Dispose();
            throw;
        }
    }

    /// <summary>The leading <c>cache.stats</c> lines of a control reply as name → value.</summary>
    internal static Dictionary<string, long> StatsOf(IEnumerable<string> lines) =>
        lines.TakeWhile(l => l.StartsWith("cache.stats\t", StringComparison.Ordinal))
            .Select(l => l.Split('\t'))
            .ToDictionary(f => f[1], f => long.Parse(f[2], System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>One ADD exchange (distcache §5.1 payload: 8-byte prefix, id, data); the reply is the 15-byte result.</summary>
    internal static void Add(Socket client, uint uid, uint timeoutMs, ReadOnlySpan<byte> id, ReadOnlySpan<byte> data)
    {
        var payload = new byte[8 + id.Length + data.Length];
        AddRequest.Write(payload, timeoutMs, id, data);
        Exchange(client, uid, DistCacheOperation.Add, payload, 15);
    }

    internal static void Exchange(Socket client, uint uid, DistCacheOperation op, byte[] payload, int replyLength)
    {
        var writer = new System.Buffers.ArrayBufferWriter<byte>();
        DistCacheMessageWriter.Write(writer, false, uid, op, payload);
        client.Send(writer.WrittenSpan);
        DistCacheVectorReplayer.ReadExactly(client, replyLength, Start, op.ToString());
    }

    internal static List<string> ControlExchange(string path, params string[] commands)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(path));
        socket.Send(Encoding.UTF8.GetBytes(string.Join("\n", commands) + "\n"));
        var received = new StringBuilder();
        var buffer = new byte[4096];
        var deadline = DateTime.UtcNow + Start;
        while (!received.ToString().EndsWith("done\n", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline && socket.Poll(TimeSpan.FromSeconds(5), SelectMode.SelectRead), $"no reply; got: {received}");
            var n = socket.Receive(buffer);
            Assert.True(n > 0, $"control socket closed; got: {received}");
            received.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }

        return received.ToString().TrimEnd('\n').Split('\n').ToList();
    }
}
