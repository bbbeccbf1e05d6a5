using Xunit;

namespace CacheHost.Clacks.Tests;

/// <summary>Native equivalents of the upstream interclacks scenarios (clacks §12) plus trees and permissions.</summary>
public sealed class InterclacksTests
{
    private static Task<TestServer> StartSlave(TempDir dir, string name, string master, Dictionary<string, string?>? extra = null)
    {
        var settings = new Dictionary<string, string?> { ["Master:Socket"] = master };
        foreach (var (k, v) in extra ?? [])
        {
            settings[k] = v;
        }

        return TestServer.StartAsync(dir.File(name), settings);
    }

    /// <summary>Waits until a write on one node is visible on another (the link is up and synced).</summary>
    private static async Task WaitLinked(RawClient writer, RawClient reader, string probe)
    {
        await writer.SendAsync($"STORE {probe}=1\r\n");
        await RawClient.EventuallyAsync(async () => await reader.RetrieveAsync(probe) == "1", what: "link " + probe);
    }

    [Fact]
    public async Task Master_slave_connection_shows_a_link_on_both_sides()
    {
        using var dir = new TempDir();
        await using var master = await TestServer.StartAsync(dir.File("m.sock"));
        await using var slave = await StartSlave(dir, "s.sock", master.Socket);
        await using var m = await RawClient.LoginAsync(master.Socket);
        await using var s = await RawClient.LoginAsync(slave.Socket);
        await WaitLinked(s, m, "probe");
        await m.SendAsync("CLIENTLIST\r\n");
        var mList = await m.FlushAsync();
        Assert.Single(mList, l => l.Contains("INTERCLACKS=1;", StringComparison.Ordinal) && l.Contains("CLIENTINFO=PageCamel 36 in interclacks client mode;", StringComparison.Ordinal));
        await s.SendAsync("CLIENTLIST\r\n");
        var sList = await s.FlushAsync();
        Assert.Single(sList, l => l.StartsWith("CLIENT CID=unixdomainsocket:interclacksmaster;", StringComparison.Ordinal) && l.Contains("INTERCLACKS=1;", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Initial_keysync_exchanges_both_caches_newest_wins()
    {
        using var dir = new TempDir();
        await using var master = await TestServer.StartAsync(dir.File("m.sock"));
        await using var m = await RawClient.LoginAsync(master.Socket);
        await m.SendAsync("STORE onmaster=m\r\nSTORE both=old\r\nSTORE doomed=1\r\n");
        await m.FlushAsync();
        await Task.Delay(20);

        // The slave starts with a master that is not there yet, gets local data, then the link comes up.
        var slaveSettings = new Dictionary<string, string?> { ["Master:Socket"] = dir.File("late.sock"), ["InterclacksReconnectTimeout"] = "0.2" };
        await using var slave = await TestServer.StartAsync(dir.File("s.sock"), slaveSettings);
        await using var s = await RawClient.LoginAsync(slave.Socket);
        await s.SendAsync("STORE onslave=s\r\nSTORE both=new\r\nREMOVE doomed\r\n");
        await s.FlushAsync();
        await using var late = await TestServer.StartAsync(dir.File("late.sock"));
        await using var l = await RawClient.LoginAsync(late.Socket);
        await RawClient.EventuallyAsync(async () => await l.RetrieveAsync("onslave") == "s", what: "slave dump reached master");
        Assert.Equal("new", await l.RetrieveAsync("both"));

        // And the reverse: the pre-existing master (m) gets a slave whose cache is older.
        await using var slave2 = await StartSlave(dir, "s2.sock", master.Socket);
        await using var s2 = await RawClient.LoginAsync(slave2.Socket);
        await RawClient.EventuallyAsync(async () => await s2.RetrieveAsync("onmaster") == "m", what: "master dump reached slave");
        Assert.Equal("old", await s2.RetrieveAsync("both"));
        Assert.Equal("1", await s2.RetrieveAsync("doomed"));
    }

    [Fact]
    public async Task Set_and_notify_are_forwarded_both_ways_in_real_time()
    {
        using var dir = new TempDir();
        await using var master = await TestServer.StartAsync(dir.File("m.sock"));
        await using var slave = await StartSlave(dir, "s.sock", master.Socket);
        await using var m = await RawClient.LoginAsync(master.Socket);
        await using var s = await RawClient.LoginAsync(slave.Socket);
        await WaitLinked(m, s, "probe");
        await m.SendAsync("LISTEN to::master\r\nLISTEN ev::master\r\n");
        await s.SendAsync("LISTEN to::slave\r\nLISTEN ev::slave\r\n");
        await m.FlushAsync();
        await s.FlushAsync();

        await m.SendAsync("SET to::slave=hello slave\r\nNOTIFY ev::slave\r\n");
        Assert.Equal("SET to::slave=hello slave", await s.WaitForAsync(x => x.StartsWith("SET ", StringComparison.Ordinal)));
        Assert.Equal("NOTIFY ev::slave", await s.WaitForAsync(x => x.StartsWith("NOTIFY ", StringComparison.Ordinal)));
        await s.SendAsync("SET to::master=hello master\r\nNOTIFY ev::master\r\nSETANDSTORE to::master=stored\r\n");
        Assert.Equal("SET to::master=hello master", await m.WaitForAsync(x => x.StartsWith("SET ", StringComparison.Ordinal)));
        Assert.Equal("NOTIFY ev::master", await m.WaitForAsync(x => x.StartsWith("NOTIFY ", StringComparison.Ordinal)));
        Assert.Equal("SET to::master=stored", await m.WaitForAsync(x => x.StartsWith("SET ", StringComparison.Ordinal)));
        Assert.Equal("stored", await m.RetrieveAsync("to::master"));
    }

    [Fact]
    public async Task Slave_to_master_store_increment_remove_and_clearcache()
    {
        using var dir = new TempDir();
        await using var master = await TestServer.StartAsync(dir.File("m.sock"));
        await using var slave = await StartSlave(dir, "s.sock", master.Socket);
        await using var m = await RawClient.LoginAsync(master.Socket);
        await using var s = await RawClient.LoginAsync(slave.Socket);
        await WaitLinked(s, m, "probe");
        await s.SendAsync("STORE fromslave=42\r\nINCREMENT cnt=5\r\nDECREMENT cnt\r\nSTORE gone=1\r\nREMOVE gone\r\n");
        await s.FlushAsync();
        await RawClient.EventuallyAsync(async () => await m.RetrieveAsync("cnt") == "4", what: "increments replicated");
        Assert.Equal("42", await m.RetrieveAsync("fromslave"));
        Assert.Null(await m.RetrieveAsync("gone"));
        await m.SendAsync("CLEARCACHE\r\n");
        await RawClient.EventuallyAsync(async () => await s.RetrieveAsync("fromslave") is null, what: "clearcache replicated");
    }

    [Fact]
    public async Task End_to_end_clients_on_different_servers_and_fifty_message_burst()
    {
        using var dir = new TempDir();
        await using var master = await TestServer.StartAsync(dir.File("m.sock"));
        await using var slaveA = await StartSlave(dir, "a.sock", master.Socket);
        await using var slaveB = await StartSlave(dir, "b.sock", master.Socket);
        await using var a = await RawClient.LoginAsync(slaveA.Socket);
        await using var b = await RawClient.LoginAsync(slaveB.Socket);
        await WaitLinked(a, b, "probe");
        await b.SendAsync("LISTEN burst\r\n");
        await b.FlushAsync();
        var burst = string.Concat(Enumerable.Range(0, 50).Select(i => $"SET burst={i}\r\n"));
        await a.SendAsync(burst);
        for (var i = 0; i < 50; i++)
        {
            Assert.Equal($"SET burst={i}", await b.WaitForAsync(x => x.StartsWith("SET burst=", StringComparison.Ordinal)));
        }
    }

    [Fact]
    public async Task Slave_reconnects_after_master_restart_and_resyncs()
    {
        using var dir = new TempDir();
        var masterSocket = dir.File("m.sock");
        var master = await TestServer.StartAsync(masterSocket);
        await using var slave = await StartSlave(dir, "s.sock", masterSocket);
        await using var s = await RawClient.LoginAsync(slave.Socket);
        await using (var m = await RawClient.LoginAsync(masterSocket))
        {
            await WaitLinked(s, m, "before");
        }

        await master.DisposeAsync();
        await s.SendAsync("STORE during=outage\r\n");
        await s.FlushAsync();
        await using var master2 = await TestServer.StartAsync(masterSocket);
        await using var m2 = await RawClient.LoginAsync(masterSocket);
        await RawClient.EventuallyAsync(async () => await m2.RetrieveAsync("during") == "outage", what: "resync after master restart");
        Assert.Equal("1", await m2.RetrieveAsync("before"));
        await m2.SendAsync("SET x=1\r\n");
        await s.SendAsync("LISTEN live\r\n");
        await s.FlushAsync();
        await m2.SendAsync("SET live=after-restart\r\n");
        Assert.Equal("SET live=after-restart", await s.WaitForAsync(x => x.StartsWith("SET live=", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Three_level_tree_converges_after_writes_at_every_level_and_a_link_outage()
    {
        using var dir = new TempDir();
        await using var top = await TestServer.StartAsync(dir.File("t.sock"));
        await using var mid = await StartSlave(dir, "m.sock", top.Socket, new() { ["InterclacksReconnectTimeout"] = "1.5" });
        await using var leaf = await StartSlave(dir, "l.sock", mid.Socket);
        await using var t = await RawClient.LoginAsync(top.Socket);
        await using var m = await RawClient.LoginAsync(mid.Socket);
        await using var l = await RawClient.LoginAsync(leaf.Socket);
        await WaitLinked(l, t, "probe1");
        await WaitLinked(t, l, "probe2");
        await t.SendAsync("STORE fromtop=t\r\n");
        await m.SendAsync("STORE frommid=m\r\n");
        await l.SendAsync("STORE fromleaf=l\r\nLISTEN msg\r\n");
        await l.FlushAsync();
        await t.SendAsync("SET msg=down the tree\r\n");
        Assert.Equal("SET msg=down the tree", await l.WaitForAsync(x => x.StartsWith("SET msg=", StringComparison.Ordinal)));
        foreach (var c in new[] { t, m, l })
        {
            foreach (var (k, v) in new[] { ("fromtop", "t"), ("frommid", "m"), ("fromleaf", "l") })
            {
                await RawClient.EventuallyAsync(async () => await c.RetrieveAsync(k) == v, what: k);
            }
        }

        // Outage: the top drops the mid node's link; writes happen on both sides while it is down.
        await t.SendAsync("CLIENTLIST\r\n");
        var link = (await t.FlushAsync()).Single(x => x.Contains("INTERCLACKS=1;", StringComparison.Ordinal));
        var cid = link["CLIENT CID=".Length..link.IndexOf(';')];
        await t.SendAsync($"CLIENTDISCONNECT {cid}\r\nSTORE topduring=1\r\nREMOVE fromleaf\r\n");
        await t.FlushAsync();
        await l.SendAsync("STORE leafduring=2\r\n");
        await l.FlushAsync();
        foreach (var c in new[] { t, m, l })
        {
            await RawClient.EventuallyAsync(async () => await c.RetrieveAsync("topduring") == "1", what: "topduring");
            await RawClient.EventuallyAsync(async () => await c.RetrieveAsync("leafduring") == "2", what: "leafduring");
            await RawClient.EventuallyAsync(async () => await c.RetrieveAsync("fromleaf") is null, what: "remove wins");
        }
    }

    [Fact]
    public async Task Read_only_users_writes_are_refused_and_not_replicated()
    {
        using var dir = new TempDir();
        await using var master = await TestServer.StartAsync(dir.File("m.sock"));
        await using var slave = await StartSlave(dir, "s.sock", master.Socket);
        await using var m = await RawClient.LoginAsync(master.Socket);
        await using var s = await RawClient.LoginAsync(slave.Socket);
        await WaitLinked(s, m, "probe");
        await m.SendAsync("LISTEN ro::chan\r\n");
        await m.FlushAsync();
        await using var ro = await RawClient.LoginAsync(slave.Socket, "ro", RawClient.RoToken);
        await ro.SendAsync("STORE ro::key=1\r\nSET ro::chan=1\r\nKEYSYNC 1 1 U ro::sync=1\r\nREMOVE probe\r\nOVERHEAD I 1\r\nRETRIEVE probe\r\n");
        var replies = await ro.FlushAsync();
        Assert.Equal(Enumerable.Repeat("OVERHEAD E permission_denied", 5).Append("RETRIEVED probe=1"), replies);
        await s.SendAsync("STORE marker=1\r\n"); // a later write proves the link delivered everything before it
        await RawClient.EventuallyAsync(async () => await m.RetrieveAsync("marker") == "1");
        Assert.Null(await m.RetrieveAsync("ro::key"));
        Assert.Null(await m.RetrieveAsync("ro::sync"));
        Assert.Equal("1", await m.RetrieveAsync("probe"));
        Assert.DoesNotContain("SET ro::chan=1", await m.FlushAsync());
    }
}
