using System.Text;
using System.Text.RegularExpressions;
using CacheHost.Core;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer.Storage;
using CacheHost.Testing;
using Microsoft.Extensions.Time.Testing;
using Xunit;
using static CacheHost.CacheServer.Tests.HostilePeerTests;

namespace CacheHost.CacheServer.Tests;

/// <summary>
/// Issue 17 item 4: the memory store's sessions survive a restart through CacheServer:SnapshotPath. The lifetime
/// arithmetic on a fake clock in-process; the round trip, a foreign file, a damaged file and a kill -9 in the
/// middle of a snapshot against the real program.
/// </summary>
public sealed class SnapshotTests
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);

    private static byte[] Id(string s) => Encoding.ASCII.GetBytes(s);

    [Fact]
    public void LifetimesCarryOverAndWhatExpiredWhileStoppedIsDropped()
    {
        var clock = new FakeTimeProvider();
        var path = Path.Combine(TestPaths.Directory("snap"), "sessions.snap");
        var biggest = Enumerable.Range(0, DistCacheProtocol.MaxPayload).Select(i => (byte)(i * 7)).ToArray();
        var longestId = Encoding.ASCII.GetBytes(new string('i', DistCacheProtocol.MaxIdLength));
        using (var store = new SessionStore(64, clock))
        {
            Assert.Equal(DistCacheResult.Ok, store.Add(Id("ten-seconds"), [1, 2, 3, 4, 5], 10_000, store.Now));
            Assert.Equal(DistCacheResult.Ok, store.Add(Id("one-minute"), [6, 7, 8, 9, 10], 60_000, store.Now));
            Assert.Equal(DistCacheResult.Ok, store.Add(longestId, biggest, 3_600_000, store.Now));
            Assert.Equal(DistCacheResult.Ok, store.Add(Id("gone-before-the-stop"), [1], 500, store.Now));
            clock.Advance(TimeSpan.FromSeconds(1));
            Assert.Equal(3, SessionSnapshot.Write(store, path, clock)); // the expired one is not written
        }

        clock.Advance(TimeSpan.FromSeconds(30)); // the server is down for 30 s
        using var restarted = new SessionStore(64, clock);
        var load = SessionSnapshot.Load(restarted, path, clock);
        Assert.Equal((2L, 1L), (load.Loaded, load.Expired));
        Assert.False(restarted.Contains(Id("ten-seconds"), restarted.Now));
        Assert.True(restarted.TryGet(longestId, restarted.Now, out var data));
        Assert.Equal(biggest, data);

        // "one-minute" had 59 s left at the stop and spent 30 s on disk: 29 s left.
        clock.Advance(TimeSpan.FromMilliseconds(28_999));
        Assert.True(restarted.TryGet(Id("one-minute"), restarted.Now, out data));
        Assert.Equal([6, 7, 8, 9, 10], data);
        clock.Advance(TimeSpan.FromMilliseconds(2));
        Assert.False(restarted.Contains(Id("one-minute"), restarted.Now));
    }

    [Theory]
    [InlineData("flip", "checksum mismatch|damaged")] // a flipped length byte is caught by the structure before the checksum
    [InlineData("truncate", "truncated")]
    [InlineData("append", "bytes after the end")]
    [InlineData("foreign", "not a CacheHost session snapshot")]
    [InlineData("empty", "not a CacheHost session snapshot")]
    public void AFileThatIsNotASoundSnapshotIsRejectedAsAWholeAndLoadsNothing(string damage, string reason)
    {
        var clock = new FakeTimeProvider();
        var path = Path.Combine(TestPaths.Directory("snap"), "sessions.snap");
        using (var store = new SessionStore(64, clock))
        {
            for (var i = 0; i < 20; i++)
            {
                store.Add(Id($"session-{i}"), new byte[100 + i], 60_000, store.Now);
            }

            SessionSnapshot.Write(store, path, clock);
        }

        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, damage switch
        {
            "flip" => Flip(bytes, bytes.Length / 2),
            "truncate" => bytes[..^5],
            "append" => [.. bytes, 0],
            "foreign" => Encoding.ASCII.GetBytes("{\"this\": \"is some other program's file\"}\n"),
            _ => [],
        });

        using var restarted = new SessionStore(64, clock);
        var error = Assert.Throws<InvalidDataException>(() => SessionSnapshot.Load(restarted, path, clock));
        Assert.Contains(reason.Split('|'), r => error.Message.Contains(r, StringComparison.Ordinal));
        Assert.Equal(0, restarted.Count); // checked before anything reached the store

        static byte[] Flip(byte[] bytes, int at)
        {
            bytes[at] ^= 0x20;
            return bytes;
        }
    }

    [Fact]
    public void SessionsSurviveACleanStopAndStartOfTheRealProgram()
    {
        var dir = TestPaths.Directory("snap");
        var snapshot = Path.Combine(dir, "sessions.snap");
        var big = Enumerable.Range(0, DistCacheProtocol.MaxPayload - DistCacheProtocol.AddPrefixSize - 3).Select(i => (byte)i).ToArray(); // the largest ADD of id "big"
        using (var server = StartServer(dir, snapshot))
        {
            using var socket = InProcessCacheServer.ConnectTo(server.Address);
            Add(socket, "alpha", Encoding.ASCII.GetBytes("alpha-session-data"), 1);
            Add(socket, "big", big, 2);
            Add(socket, "removed", [1, 2, 3, 4, 5], 3);
            socket.Send(Request(4, DistCacheOperation.Remove, "removed"u8));
            Assert.Equal([0], ReadReply(socket).Payload);
            server.Process.Signal(15);
            Assert.Equal(0, server.Process.WaitForExit(Generous));
            Assert.Matches("Wrote 2 sessions to snapshot", server.Process.Output);
        }

        Assert.False(File.Exists(DurableFile.TemporaryPathOf(snapshot)));
        using (var server = StartServer(dir, snapshot))
        {
            server.Process.WaitForLine("Loaded 2 sessions from snapshot .*sessions.snap \\(0 expired", Generous);
            using var socket = InProcessCacheServer.ConnectTo(server.Address);
            Assert.Equal(Encoding.ASCII.GetBytes("alpha-session-data"), Get(socket, "alpha", 1));
            Assert.Equal(big, Get(socket, "big", 2));
            Assert.Equal([1], Get(socket, "removed", 3)); // 0x01: not found
            server.Process.Signal(15);
            Assert.Equal(0, server.Process.WaitForExit(Generous));
        }
    }

    [Fact]
    public void AForeignFileGetsOneErrorLineAndTheServerStartsEmpty()
    {
        var dir = TestPaths.Directory("snap");
        var snapshot = Path.Combine(dir, "sessions.snap");
        File.WriteAllText(snapshot, "GIF89a: certainly not a snapshot\n");
        using var server = StartServer(dir, snapshot);
        using (var socket = InProcessCacheServer.ConnectTo(server.Address))
        {
            Assert.Equal([1], Get(socket, "anything", 1));
            Add(socket, "new", Encoding.ASCII.GetBytes("written-after-the-bad-start"), 2);
        }

        Assert.Single(Regex.Matches(server.Process.Output, "can't be loaded"));
        Assert.Matches("Snapshot .*sessions.snap can't be loaded \\(not a CacheHost session snapshot", server.Process.Output);
        server.Process.Signal(15);
        Assert.Equal(0, server.Process.WaitForExit(Generous));

        // The clean stop replaced it with a sound snapshot.
        using var store = new SessionStore(16);
        Assert.Equal(1, SessionSnapshot.Load(store, snapshot, TimeProvider.System).Loaded);
    }

    [Fact]
    public void WithSnapshotOnErrorRefuseADamagedFileStopsTheStartAndIsLeftAlone()
    {
        var dir = TestPaths.Directory("snap");
        var snapshot = Path.Combine(dir, "sessions.snap");
        using (var store = new SessionStore(16))
        {
            store.Add(Id("x"), [1, 2, 3, 4, 5], 60_000, store.Now);
            SessionSnapshot.Write(store, snapshot, TimeProvider.System);
        }

        var damaged = File.ReadAllBytes(snapshot)[..^1];
        File.WriteAllBytes(snapshot, damaged);
        var socket = TestPaths.Socket("snap");
        using var server = CacheHostProcess.Start(Arguments(socket, snapshot, "--CacheHost:CacheServer:SnapshotOnError=Refuse"));
        Assert.Equal(1, server.WaitForExit(Generous));
        Assert.Matches("CacheHost:CacheServer:SnapshotPath: '.*sessions.snap' can't be loaded \\(damaged: .*\\); not starting \\(SnapshotOnError=Refuse\\)", server.Output);
        Assert.Equal(damaged, File.ReadAllBytes(snapshot));
    }

    [Fact]
    public void AKillDuringASnapshotLeavesThePreviousOneWhole()
    {
        const int Sessions = 6000;
        const int Size = 4000;
        var dir = TestPaths.Directory("snap");
        var snapshot = Path.Combine(dir, "sessions.snap");
        var temp = DurableFile.TemporaryPathOf(snapshot);
        using var server = StartServer(dir, snapshot, "--CacheHost:CacheServer:SnapshotInterval=00:00:00.200", "--CacheHost:CacheServer:Capacity=10000");
        using (var socket = InProcessCacheServer.ConnectTo(server.Address))
        {
            var data = new byte[Size];
            for (var i = 0; i < Sessions; i++)
            {
                data[0] = (byte)i;
                Add(socket, $"session-{i}", data, (uint)i + 1);
            }
        }

        // A snapshot of all of them is on disk (about 24 MB, rewritten every 200 ms)...
        var deadline = DateTime.UtcNow + Generous;
        while (!HoldsAll(snapshot, Sessions))
        {
            Assert.True(DateTime.UtcNow < deadline, "no complete periodic snapshot appeared");
            Thread.Sleep(50);
        }

        // ... then catch the server in the middle of writing the next one: stop it while the temporary file exists
        // (the rename has not happened), and kill it there.
        var caught = false;
        for (var attempt = 0; attempt < 200 && !caught; attempt++)
        {
            while (!File.Exists(temp))
            {
                Assert.True(DateTime.UtcNow < deadline, "no snapshot in progress was seen");
                Thread.Sleep(1);
            }

            server.Process.Signal(19); // SIGSTOP
            caught = File.Exists(temp);
            if (caught)
            {
                server.Process.Signal(9);
            }
            else
            {
                server.Process.Signal(18); // SIGCONT: it finished meanwhile; try the next one
            }
        }

        Assert.True(caught, "never caught a snapshot in progress");
        server.Process.WaitForExit(Generous);
        Assert.True(HoldsAll(snapshot, Sessions), "the previous snapshot must still load whole");

        // And the program starts from it, ignoring the leftover temporary file.
        using var restarted = StartServer(dir, snapshot);
        restarted.Process.WaitForLine($"Loaded {Sessions} sessions from snapshot", Generous);
        using var check = InProcessCacheServer.ConnectTo(restarted.Address);
        var reply = Get(check, "session-77", 1);
        Assert.Equal((Size, (byte)77), (reply.Length, reply[0]));
    }

    private static bool HoldsAll(string snapshot, int sessions)
    {
        try
        {
            using var store = new SessionStore(sessions + 10);
            return SessionSnapshot.Load(store, snapshot, TimeProvider.System).Loaded == sessions;
        }
        catch (Exception ex) when (ex is IOException or InvalidDataException)
        {
            return false; // not there yet
        }
    }

    private static string[] Arguments(string socket, string snapshot, params string[] extra) =>
    [
        "--CacheHost:Roles:0=CacheServer", $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}", $"--CacheHost:CacheServer:SnapshotPath={snapshot}", .. extra,
    ];

    private static RunningServer StartServer(string dir, string snapshot, params string[] extra)
    {
        _ = dir;
        var socket = TestPaths.Socket("snap");
        var process = CacheHostProcess.Start(Arguments(socket, snapshot, extra));
        process.WaitForLine("Listening on UNIX:" + Regex.Escape(socket), Generous);
        return new RunningServer(process, "UNIX:" + socket);
    }

    private sealed record RunningServer(CacheHostProcess Process, string Address) : IDisposable
    {
        public void Dispose() => Process.Dispose();
    }
}
