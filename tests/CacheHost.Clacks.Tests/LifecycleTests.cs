using System.Net.Sockets;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace CacheHost.Clacks.Tests;

/// <summary>Sync lock, link liveness, housekeeping, close-all cascade and OVERHEAD S shutdown.</summary>
public sealed class LifecycleTests
{
    [Fact]
    public async Task Slave_holds_other_clients_during_the_sync_lock_and_times_out_a_silent_master_then_redials()
    {
        using var dir = new TempDir();
        var masterPath = dir.File("m.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(masterPath));
        listener.Listen();
        await using var slave = await TestServer.StartAsync(dir.File("s.sock"), new() { ["Master:Socket"] = masterPath, ["InterclacksPingTimeout"] = "5" });
        await using var local = await RawClient.LoginAsync(slave.Socket, "local");

        using (var accepted = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10)))
        {
            var m = new SocketLines(accepted);
            Assert.Equal("CLACKS PageCamel 36 in interclacks client mode", await m.ReadLineAsync());
            await m.SendAsync("OVERHEAD A YWRtaW4=:YWRtaW5wYXNz\r\nOVERHEAD L 1\r\n");
            await Task.Delay(200);
            await local.SendAsync("STORE waiting=1\r\nFLUSH held\r\n");
            await Assert.ThrowsAsync<TimeoutException>(() => local.ReadLineAsync(TimeSpan.FromMilliseconds(700)));
            await m.SendAsync("OVERHEAD L 0\r\n");
            Assert.Equal("FLUSHED held", await local.ReadLineAsync());

            // The fake master stops answering PINGs: the slave sends PING every second, then TIMEOUT and closes.
            var lines = new List<string>();
            while (await m.ReadLineAsync() is { } line)
            {
                lines.Add(line);
            }

            Assert.Contains("PING", lines);
            Assert.Equal(["", "TIMEOUT"], lines.TakeLast(2));
        }

        // ... and re-dials with a fresh handshake.
        using var again = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("CLACKS PageCamel 36 in interclacks client mode", await new SocketLines(again).ReadLineAsync());
    }

    [Fact]
    public async Task Housekeeping_drops_old_tombstones_and_stale_entries_and_tells_monitors()
    {
        // Ages and the clean interval are on the role's clock (one clock, issue 16): a minute and ten minutes that
        // pass only while the test advances the clock (10 s per step), so no real time limit is involved.
        using var dir = new TempDir();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await TestServer.StartAsync(dir.File("s.sock"), new()
        {
            ["DeletedCacheTime"] = "60", ["StaleCacheTime"] = "600", ["CacheCleanInterval"] = "30",
            ["PingTimeout"] = "100000", // the raw client answers no PING
        }, clock);
        await using var mon = await RawClient.LoginAsync(server.Socket, "mon");
        await mon.SendAsync("MONITOR\r\nSTORE stale=1\r\nSTORE gone=1\r\nREMOVE gone\r\n");
        await mon.FlushAsync();
        using var stop = new CancellationTokenSource();
        var ticking = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                clock.Advance(TimeSpan.FromSeconds(10));
                await Task.Delay(5);
            }
        });
        try
        {
            await mon.WaitForAsync(l => l == "DEBUG SERVERCACHE=CLEANDELETED=gone", TimeSpan.FromSeconds(30));
            Assert.True((clock.GetUtcNow() - clock.Start).TotalSeconds >= 60);
            await mon.WaitForAsync(l => l == "DEBUG SERVERCACHE=CLEANSTALE=stale", TimeSpan.FromSeconds(30));
            Assert.True((clock.GetUtcNow() - clock.Start).TotalSeconds >= 600);
        }
        finally
        {
            await stop.CancelAsync();
            await ticking;
        }

        await mon.SendAsync("KEYLIST\r\n");
        Assert.Equal(["KEYLISTSTART", "KEYLISTEND"], (await mon.FlushAsync()).Where(l => !l.StartsWith("DEBUG", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Close_all_with_g_cascades_over_links()
    {
        using var dir = new TempDir();
        await using var master = await TestServer.StartAsync(dir.File("m.sock"));
        await using var slave = await TestServer.StartAsync(dir.File("s.sock"), new() { ["Master:Socket"] = dir.File("m.sock"), ["InterclacksReconnectTimeout"] = "30" });
        await using var m = await RawClient.LoginAsync(master.Socket);
        await using var s = await RawClient.LoginAsync(slave.Socket);
        await s.SendAsync("STORE probe=1\r\n");
        await RawClient.EventuallyAsync(async () => await m.RetrieveAsync("probe") == "1");
        await m.SendAsync("OVERHEAD GC 1\r\n");
        Assert.Equal("\r\nQUIT\r\n", await m.ReadToEndAsync());
        Assert.Equal("\r\nQUIT\r\n", await s.ReadToEndAsync()); // the slave got OVERHEAD GC 1 and closed its clients too
    }

    [Fact]
    public async Task Overhead_s_shuts_the_real_program_down_after_the_delay_and_saves()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("c.xml"), $"<clacks><socket>{dir.File("s.sock")}</socket><username>admin</username><password>adminpass</password><persistancefile>{dir.File("p.dat")}</persistancefile><persistanceinterval>3600</persistanceinterval></clacks>");
        using var program = ProgramProcess.Start(dir.Path, "clacks", "c.xml");
        await program.WaitForSocketAsync(dir.File("s.sock"));
        await using var c = await RawClient.LoginAsync(dir.File("s.sock"));
        await c.SendAsync("STORE saved=on shutdown\r\nOVERHEAD S 1\r\nPING\r\n");
        Assert.Equal("\r\nQUIT\r\n", await c.ReadToEndAsync(TimeSpan.FromSeconds(15)));
        await RawClient.EventuallyAsync(() => Task.FromResult(program.HasExited), what: "exit");
        Assert.True(CacheHost.Protocols.Clacks.PersistenceFormat.TryRead(File.ReadAllBytes(dir.File("p.dat")), out var entries, out _));
        Assert.Equal("on shutdown", entries["saved"].Data);
    }
}

/// <summary>Clock skew compensation through OVERHEAD T (clacks §12.4 step 2).</summary>
public sealed class ClockSkewTests
{
    [Fact]
    public async Task Keysync_times_are_corrected_by_the_peer_clock_offset()
    {
        using var dir = new TempDir();
        // The master's clock is 1000 s behind. Its write happens after the slave's (real time), so it must win
        // on both sides although its raw timestamps are far older.
        await using var master = await TestServer.StartAsync(dir.File("m.sock"), new() { ["SimulatedTimeOffset"] = "-1000" });
        var realNow = (DateTime.UtcNow - DateTime.UnixEpoch).TotalSeconds;
        File.WriteAllBytes(dir.File("slave.dat"), CacheHost.Protocols.Clacks.PersistenceFormat.Write(
            [new("k", new CacheHost.Protocols.Clacks.CacheEntry("slave", realNow - 0.5, realNow - 0.5, false))]));
        await using var m = await RawClient.LoginAsync(master.Socket);
        await m.SendAsync("STORE k=master\r\n");
        await m.FlushAsync();
        await using var slave = await TestServer.StartAsync(dir.File("s.sock"), new() { ["Master:Socket"] = master.Socket, ["PersistanceFile"] = dir.File("slave.dat") });
        await using var s = await RawClient.LoginAsync(slave.Socket);
        await s.SendAsync("STORE probe=1\r\n");
        await RawClient.EventuallyAsync(async () => await m.RetrieveAsync("probe") == "1");
        Assert.Equal("master", await s.RetrieveAsync("k"));
        Assert.Equal("master", await m.RetrieveAsync("k"));
    }
}
