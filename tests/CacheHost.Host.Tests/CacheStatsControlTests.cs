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
        var dir = TestPaths.Directory("stats");
        var socket = Path.Combine(dir, "dc.sock");
        var control = Path.Combine(dir, "control.sock");
        using var process = CacheHostProcess.Start(
        [
            "--CacheHost:Roles:0=CacheServer",
            $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}",
            "--CacheHost:CacheServer:Capacity=64",
            $"--CacheHost:Control:Socket={control}",
        ]);
        process.WaitForLine($"Listening on UNIX:{socket}", Start);

        using (var client = InProcessCacheServer.ConnectTo("UNIX:" + socket))
        {
            var payload = new byte[8 + 2 + 3];
            AddRequest.Write(payload, 60_000, "id"u8, "abc"u8);
            Exchange(client, 1, DistCacheOperation.Add, payload, 15);
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
        var stats = lines.TakeWhile(l => l.StartsWith("cache.stats\t", StringComparison.Ordinal))
            .Select(l => l.Split('\t'))
            .ToDictionary(f => f[1], f => long.Parse(f[2], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(1, stats["ops.add"]);
        Assert.Equal(2, stats["ops.get"]);
        Assert.Equal(3, stats["ops.total"]);
        Assert.Equal(1, stats["hits"]);
        Assert.Equal(1, stats["misses"]);
        Assert.Equal(1, stats["sessions"]);
        Assert.Equal(64, stats["capacity"]);
        Assert.Equal(3, stats["bytes.stored"]);
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
        var dir = TestPaths.Directory("stats-expiry");
        var socket = Path.Combine(dir, "dc.sock");
        var control = Path.Combine(dir, "control.sock");
        using var process = CacheHostProcess.Start(
        [
            "--CacheHost:Roles:0=CacheServer",
            $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}",
            "--CacheHost:CacheServer:StatsInterval=01:00:00",
            $"--CacheHost:Control:Socket={control}",
        ]);
        process.WaitForLine($"Listening on UNIX:{socket}", Start);

        using (var client = InProcessCacheServer.ConnectTo("UNIX:" + socket))
        {
            var shortLived = new byte[8 + 5 + 1];
            AddRequest.Write(shortLived, 300, "short"u8, "x"u8);
            Exchange(client, 1, DistCacheOperation.Add, shortLived, 15);
            var longLived = new byte[8 + 4 + 1];
            AddRequest.Write(longLived, 600_000, "long"u8, "y"u8);
            Exchange(client, 2, DistCacheOperation.Add, longLived, 15);
        }

        Thread.Sleep(1000);
        var stats = ControlExchange(control, "cache.stats", "echo\tdone")
            .TakeWhile(l => l.StartsWith("cache.stats\t", StringComparison.Ordinal))
            .Select(l => l.Split('\t'))
            .ToDictionary(f => f[1], f => long.Parse(f[2], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(1, stats["sessions"]);
        Assert.Equal(1, stats["expirations"]);
        Assert.Equal(1, stats["bytes.stored"]);
        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Start));
    }

    private static void Exchange(Socket client, uint uid, DistCacheOperation op, byte[] payload, int replyLength)
    {
        var writer = new System.Buffers.ArrayBufferWriter<byte>();
        DistCacheMessageWriter.Write(writer, false, uid, op, payload);
        client.Send(writer.WrittenSpan);
        DistCacheVectorReplayer.ReadExactly(client, replyLength, Start, op.ToString());
    }

    private static List<string> ControlExchange(string path, params string[] commands)
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
