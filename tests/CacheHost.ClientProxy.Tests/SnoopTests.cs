using System.Net.Sockets;
using CacheHost.LoadTool;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>Snoop: frame-exact forwarding both ways, dc_snoop's log line per frame, bad frames close the pair, sustained load.</summary>
public sealed class SnoopTests
{
    private static byte[] Message(bool response, uint uid, DistCacheOperation op, byte[] payload)
    {
        var writer = new System.Buffers.ArrayBufferWriter<byte>();
        DistCacheMessageWriter.Write(writer, response, uid, op, payload);
        return writer.WrittenSpan.ToArray();
    }

    [Fact]
    public async Task MultiFrameMessagesPassUnchangedAndEveryFrameIsLogged()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        await using var snoop = await RoleHost.StartSnoopAsync(server.Address);
        var id = "snoop-multi"u8.ToArray();
        var data = new byte[5000];
        new Random(5).NextBytes(data);
        var add = new byte[8 + id.Length + data.Length];
        AddRequest.Write(add, 60_000, id, data);
        var addRequest = Message(false, 2882400001, DistCacheOperation.Add, add);
        var getRequest = Message(false, 2882400002, DistCacheOperation.Get, id);

        using var socket = InProcessCacheServer.ConnectTo(snoop.Address);
        socket.Send(addRequest);
        var addReply = DistCacheVectorReplayer.ReadExactly(socket, 15, TimeSpan.FromSeconds(5), "ADD reply");
        Assert.Equal(Hex.Of(Message(true, 2882400001, DistCacheOperation.Add, [0x00])), Hex.Of(addReply));
        socket.Send(getRequest);
        var expectedGet = Message(true, 2882400002, DistCacheOperation.Get, data);
        Assert.Equal(Hex.Of(expectedGet), Hex.Of(DistCacheVectorReplayer.ReadExactly(socket, expectedGet.Length, TimeSpan.FromSeconds(5), "GET reply")));

        var lines = snoop.Logs.Messages(6100).ToList();
        Assert.Equal(
        [
            "SNOOP_DBG_MSG: connection 0, client->server, message completed (request_uid = 2882400001), total_len=2062",
            "SNOOP_DBG_MSG: connection 0, client->server, message completed (request_uid = 2882400001), total_len=2062",
            $"SNOOP_DBG_MSG: connection 0, client->server, message completed (request_uid = 2882400001), total_len={14 + add.Length - 4096}",
            "SNOOP_DBG_MSG: connection 0, server->client, message completed (request_uid = 2882400001), total_len=15",
            "SNOOP_DBG_MSG: connection 0, client->server, message completed (request_uid = 2882400002), total_len=25",
            "SNOOP_DBG_MSG: connection 0, server->client, message completed (request_uid = 2882400002), total_len=2062",
            "SNOOP_DBG_MSG: connection 0, server->client, message completed (request_uid = 2882400002), total_len=2062",
            "SNOOP_DBG_MSG: connection 0, server->client, message completed (request_uid = 2882400002), total_len=918",
        ], lines);
    }

    [Fact]
    public async Task IllegalDataLengthIsLoggedAndClosesThePair()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        await using var snoop = await RoleHost.StartSnoopAsync(server.Address);
        using var first = InProcessCacheServer.ConnectTo(snoop.Address);
        using var socket = InProcessCacheServer.ConnectTo(snoop.Address);
        socket.Send(Hex.Bytes("0011000000000000090001010900"));
        DistCacheVectorReplayer.ExpectClosed(socket, TimeSpan.FromSeconds(3), "pair with a bad frame");
        await RoleHost.WaitUntilAsync(() => snoop.Logs.Messages(6102).Any(), TimeSpan.FromSeconds(5), "the error line");
        Assert.Contains("SNOOP_DBG_MSG: connection 1, client->server, message has illegal 'data_len' (2304)", snoop.Logs.Messages(6101));
        Assert.Contains("[TODO: change me] client->server error", snoop.Logs.Messages(6102));

        // Other pairs are unaffected.
        first.Send(Hex.Bytes("0011000000000000070003010003616263"));
        Assert.Equal("001100000100000007000301000101", Hex.Of(DistCacheVectorReplayer.ReadExactly(first, 15, TimeSpan.FromSeconds(5), "other pair")));
    }

    [Fact]
    public async Task UnreachableServerDropsTheClient()
    {
        await using var snoop = await RoleHost.StartSnoopAsync("UNIX:" + TestPaths.Socket("nowhere"));
        using var socket = InProcessCacheServer.ConnectTo(snoop.Address);
        DistCacheVectorReplayer.ExpectClosed(socket, TimeSpan.FromSeconds(5), "client without a server");
    }

    [Fact]
    public async Task KeepsUpWithSustainedConcurrentLoad()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        await using var snoop = await RoleHost.StartSnoopAsync(server.Address);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var exit = await Task.Run(() => LoadToolCommand.Run(["-connect", snoop.Address, "-sessions", "50", "-ops", "5000", "-clients", "4", "-persistent", "-datamax", "4096", "-quiet"], stdout, stderr))
            .WaitAsync(TimeSpan.FromSeconds(120));
        Assert.True(exit == 0, stderr.ToString());
        Assert.True(snoop.Logs.Messages(6100).Count() >= 40_000);
        Assert.Equal(4, snoop.Snoop.Accepted);
    }
}
