using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using Microsoft.Extensions.Time.Testing;
using Xunit;
using static CacheHost.CacheServer.Tests.HostilePeerTests;

namespace CacheHost.CacheServer.Tests;

/// <summary>
/// IdleTimeout and RequestTimeout (issue 21 item 2) over real sockets, on a fake clock: connections holding half a
/// request, or nothing, are closed once their timeout has passed, and not before; both are off by default.
/// </summary>
public sealed class ConnectionTimeoutTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task HalfARequestIsClosedAfterRequestTimeoutAndAnIdleClientAfterIdleTimeout()
    {
        var clock = new FakeTimeProvider();
        await using var server = await InProcessCacheServer.StartAsync(clock: clock, extra: new Dictionary<string, string?>
        {
            ["CacheHost:CacheServer:RequestTimeout"] = "00:00:10",
            ["CacheHost:CacheServer:IdleTimeout"] = "00:01:00",
        });
        using var half = server.Connect();
        using var idle = server.Connect();

        // A complete HAVE and the first 20 bytes of a GET in one write: the HAVE's answer shows the server holds the rest.
        half.Send([.. Request(1, DistCacheOperation.Have, "x"u8), .. Request(2, DistCacheOperation.Get, "some-session-id"u8)[..20]]);
        Assert.Equal(1u, ReadReply(half).Uid);
        AssertServes(idle, 3, "idle client, first request");

        clock.Advance(TimeSpan.FromSeconds(9));
        AssertServes(idle, 4, "idle client after 9 s");
        Assert.Equal(0, server.Service.Statistics.ConnectionsTimedOut.Value);

        // 10 s plus the check period (a quarter): the half request is closed, the idle client (60 s) is not.
        clock.Advance(TimeSpan.FromSeconds(4));
        DistCacheVectorReplayer.ExpectClosed(half, Wait, "half a request after RequestTimeout");
        AssertServes(idle, 5, "idle client after 13 s");

        clock.Advance(TimeSpan.FromSeconds(76));
        DistCacheVectorReplayer.ExpectClosed(idle, Wait, "idle client after IdleTimeout");
        Assert.Equal(2, server.Service.Statistics.ConnectionsTimedOut.Value);
        Assert.Contains(server.Service.Snapshot(), s => s.Name == "connections.timed_out" && s.Value == 2);

        using var fresh = server.Connect();
        AssertServes(fresh, 6, "a new client");
    }

    [Fact]
    public async Task ARequestSentByteByByteCountsFromItsFirstByte()
    {
        var clock = new FakeTimeProvider();
        await using var server = await InProcessCacheServer.StartAsync(clock: clock, extra: new Dictionary<string, string?>
        {
            ["CacheHost:CacheServer:RequestTimeout"] = "00:00:10",
        });
        using var trickle = server.Connect();
        using var witness = server.Connect();

        // The first byte of the GET arrives with a complete HAVE, whose answer shows the server holds it; then one
        // more byte every 2.5 s. Each byte is progress on the wire, but no request completes.
        var get = Request(7, DistCacheOperation.Get, "slowly"u8);
        trickle.Send([.. Request(6, DistCacheOperation.Have, "x"u8), get[0]]);
        Assert.Equal(6u, ReadReply(trickle).Uid);
        for (var i = 1; i <= 6; i++)
        {
            clock.Advance(TimeSpan.FromSeconds(2.5));
            if (i < 4)
            {
                trickle.Send(get.AsSpan(i, 1));
            }
        }

        DistCacheVectorReplayer.ExpectClosed(trickle, Wait, "a request trickled in over 15 s");
        AssertServes(witness, 30, "witness afterwards (IdleTimeout is off)");
    }

    [Fact]
    public async Task OffByDefault()
    {
        var clock = new FakeTimeProvider();
        await using var server = await InProcessCacheServer.StartAsync(clock: clock);
        using var half = server.Connect();
        using var idle = server.Connect();
        half.Send([.. Request(1, DistCacheOperation.Have, "x"u8), .. Request(2, DistCacheOperation.Get, "id"u8)[..5]]);
        Assert.Equal(1u, ReadReply(half).Uid);
        AssertServes(idle, 3, "before");

        clock.Advance(TimeSpan.FromDays(2));
        AssertServes(idle, 4, "idle for two days");
        half.Send(Request(2, DistCacheOperation.Get, "id"u8)[5..]);
        var (uid, payload) = ReadReply(half);
        Assert.Equal(2u, uid);
        Assert.Equal([1], payload);
        Assert.Equal(0, server.Service.Statistics.ConnectionsTimedOut.Value);
    }
}
