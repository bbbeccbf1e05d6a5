using System.Net.Sockets;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.CacheServer.Tests;

/// <summary>
/// Hostile and broken peers over real sockets: each gets its connection closed, nothing crashes, and a
/// well-behaved client on the same server keeps working (fix of distcache §13.2).
/// </summary>
public sealed class HostilePeerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    public static IEnumerable<object[]> BadInputs() =>
    [
        ["wrong protocol level", Hex.Bytes("00100000 00 00000001 00 03 01 0001 61")],
        ["http request", "GET / HTTP/1.0\r\n\r\n"u8.ToArray()],
        ["data_len over 2048", Hex.Bytes("00110000 00 00000001 00 01 01 0801")],
        ["short non-final frame", Hex.Bytes("00110000 00 00000001 00 00 00 0010" + new string('0', 32))],
        ["is_response from a client", Hex.Bytes("00110000 01 00000001 00 03 01 0001 61")],
        ["class not 0", Hex.Bytes("00110000 00 00000001 07 03 01 0001 61")],
        ["unknown operation", Hex.Bytes("00110000 00 00000001 00 09 01 0001 61")],
        ["ADD shorter than 8 bytes", Hex.Bytes("00110000 00 00000001 00 00 01 0003 000000")],
    ];

    [Theory]
    [MemberData(nameof(BadInputs))]
    public async Task BadInputClosesOnlyThatConnection(string what, byte[] input)
    {
        await using var server = await InProcessCacheServer.StartAsync();
        using var good = server.Connect();
        AssertServes(good, 1, what);

        using (var bad = server.Connect())
        {
            bad.Send(input);
            DistCacheVectorReplayer.ExpectClosed(bad, Timeout, what);
        }

        AssertServes(good, 2, what);
        using var fresh = server.Connect();
        AssertServes(fresh, 3, what);
        Assert.True(server.Service.Statistics.TotalProtocolErrors >= 1);
    }

    [Fact]
    public async Task DisconnectMidFrameLosesNothingForOthers()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        using var good = server.Connect();
        Add(good, "keep", new byte[100], 1);
        using (var quitter = server.Connect())
        {
            // Header announcing 2000 bytes, then only 10 of them, then gone.
            quitter.Send([.. Hex.Bytes("00110000 00 00000009 00 00 01 07d0"), .. new byte[10]]);
            quitter.Shutdown(SocketShutdown.Both);
        }

        // And one that vanishes inside the header.
        using (var quitter = server.Connect())
        {
            quitter.Send(Hex.Bytes("001100"));
        }

        Assert.Equal(new byte[100], Get(good, "keep", 2));
        Assert.Equal(1, server.Service.Store.Count);
    }

    [Fact]
    public async Task TenMegabytesOfGarbageAreRefusedAtTheFirstHeader()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        using var good = server.Connect();
        using var flooder = server.Connect();
        var garbage = new byte[10 * 1024 * 1024];
        new Random(42).NextBytes(garbage);
        garbage[0] = 0x47; // guarantees a foreign protocol level in the first header

        var sent = 0L;
        try
        {
            flooder.SendTimeout = 5000;
            while (sent < garbage.Length)
            {
                sent += flooder.Send(garbage, (int)sent, Math.Min(65536, garbage.Length - (int)sent), SocketFlags.None);
            }
        }
        catch (SocketException)
        {
            // Expected: the server closed the connection while we were still sending.
        }

        Assert.True(sent < garbage.Length || IsClosed(flooder), "the server kept reading garbage");
        AssertServes(good, 7, "after garbage");
    }

    [Fact]
    public async Task PipelinedRequestsBehindLargeRepliesAreAllAnswered()
    {
        // distcache §13.4: the reference drops the connection here; every reply must arrive, in order.
        await using var server = await InProcessCacheServer.StartAsync();
        using var client = server.Connect();
        var data = Enumerable.Range(0, 20000).Select(i => (byte)i).ToArray();
        Add(client, "big", data, 1);

        var batch = new List<byte>();
        for (uint uid = 10; uid < 40; uid++)
        {
            batch.AddRange(Request(uid, uid % 3 == 0 ? DistCacheOperation.Have : DistCacheOperation.Get, "big"u8));
        }

        client.Send(batch.ToArray());
        for (uint uid = 10; uid < 40; uid++)
        {
            var (replyUid, payload) = ReadReply(client);
            Assert.Equal(uid, replyUid);
            Assert.Equal(uid % 3 == 0 ? [0] : data, payload);
        }
    }

    [Fact]
    public async Task ManyConcurrentClientsEachGetTheirOwnAnswers()
    {
        await using var server = await InProcessCacheServer.StartAsync(capacity: 100_000);
        // Dedicated threads: blocking test sockets on pool threads would starve the server's own I/O.
        var tasks = Enumerable.Range(0, 16).Select(client => Task.Factory.StartNew(() =>
        {
            using var socket = server.Connect();
            for (var i = 0; i < 200; i++)
            {
                var id = $"c{client}-s{i}";
                var value = System.Text.Encoding.ASCII.GetBytes($"value of {id} " + new string('x', i));
                Add(socket, id, value, (uint)i);
                Assert.Equal(value, Get(socket, id, (uint)(i + 100000)));
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(16 * 200, server.Service.Store.Count);
    }

    internal static void AssertServes(Socket socket, uint uid, string context)
    {
        socket.Send(Request(uid, DistCacheOperation.Have, "liveness"u8));
        var reply = DistCacheVectorReplayer.ReadExactly(socket, 15, Timeout, context);
        Assert.Equal(uid, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(5)));
        Assert.Equal(1, reply[14]);
    }

    internal static byte[] Request(uint uid, DistCacheOperation op, ReadOnlySpan<byte> payload)
    {
        var writer = new System.Buffers.ArrayBufferWriter<byte>();
        DistCacheMessageWriter.Write(writer, false, uid, op, payload);
        return writer.WrittenSpan.ToArray();
    }

    internal static void Add(Socket socket, string id, byte[] data, uint uid, uint timeoutMs = 600_000)
    {
        var idBytes = System.Text.Encoding.ASCII.GetBytes(id);
        var payload = new byte[8 + idBytes.Length + data.Length];
        AddRequest.Write(payload, timeoutMs, idBytes, data);
        socket.Send(Request(uid, DistCacheOperation.Add, payload));
        var (replyUid, reply) = ReadReply(socket);
        Assert.Equal(uid, replyUid);
        Assert.Equal([0], reply);
    }

    internal static byte[] Get(Socket socket, string id, uint uid)
    {
        socket.Send(Request(uid, DistCacheOperation.Get, System.Text.Encoding.ASCII.GetBytes(id)));
        var (replyUid, reply) = ReadReply(socket);
        Assert.Equal(uid, replyUid);
        return reply;
    }

    internal static (uint Uid, byte[] Payload) ReadReply(Socket socket)
    {
        var payload = new List<byte>();
        uint uid;
        while (true)
        {
            var header = FrameHeader.Read(DistCacheVectorReplayer.ReadExactly(socket, 14, Timeout, "reply header"));
            uid = header.Uid;
            payload.AddRange(header.DataLength == 0 ? [] : DistCacheVectorReplayer.ReadExactly(socket, header.DataLength, Timeout, "reply data"));
            if (header.Complete == 1)
            {
                return (uid, payload.ToArray());
            }
        }
    }

    private static bool IsClosed(Socket socket)
    {
        try
        {
            return socket.Poll(TimeSpan.FromSeconds(2), SelectMode.SelectRead) && socket.Receive(new byte[1]) == 0;
        }
        catch (SocketException)
        {
            return true;
        }
    }
}
